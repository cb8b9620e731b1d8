"""Settings from the environment (prefix ``SIPFLOWS_``) or a ``.env`` file.

Credentials are ``SecretStr`` so that they never print in logs, reprs or exceptions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIPFLOWS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Folder for the embedded SQLite database.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file under data_dir."
    )
    policy_file: Path | None = Field(default=None, description="TOML file with deadline overrides.")
    policy_variable: str = Field(
        default="sipflows-policy", description="Prefect Variable holding policy overrides (JSON)."
    )
    template_dir: Path | None = Field(default=None, description="Folder whose templates override built-ins.")
    timezone: str = "Europe/Stockholm"
    reports_dir: Path = Field(default=Path("reports"), description="Where the weekly report folders go.")
    report_language: Literal["sv", "en"] = "sv"

    # dispatch
    transport: Literal["outbox", "smtp", "exchange"] = "outbox"
    outbox_dir: Path = Path("outbox")
    sender_address: str = "sip-noreply@example.se"
    sender_name: str = "SIP-påminnelser"
    mail_domain: str = "sipflows.local"
    batch_size: int = Field(default=200, ge=1)
    # A notice that keeps failing is tried after 1, 2, 4, ... 128 minutes, then every 3 hours: its 16th
    # and last try comes 25 h 15 min after the first (README: "Dispatch"). An outage of the transport
    # itself costs no attempts at all.
    max_attempts: int = Field(default=16, ge=1)
    backoff_base_seconds: float = Field(default=60.0, gt=0)
    backoff_max_seconds: float = Field(default=3 * 3600.0, gt=0)
    claim_lease_seconds: int = Field(default=600, ge=10)

    # SMTP
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = 30.0

    # Exchange (EWS through exchangelib)
    exchange_server: str | None = None
    exchange_service_endpoint: str | None = None
    exchange_primary_smtp_address: str | None = None
    exchange_auth: Literal["oauth2", "ntlm", "basic"] = "oauth2"
    exchange_username: str | None = None
    exchange_password: SecretStr | None = None
    exchange_client_id: str | None = None
    exchange_client_secret: SecretStr | None = None
    exchange_tenant_id: str | None = None
    exchange_credentials_block: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding the Exchange password/secret."
    )
    exchange_max_wait_seconds: int = 300

    # replies
    imap_host: str | None = None
    imap_port: int = 993
    imap_ssl: bool = True
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    replies_dir: Path | None = None

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sipflows.sqlite').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
