"""Settings from the environment (prefix ``SIPFLOWS_``) or a ``.env`` file.

Credentials are ``SecretStr`` so that they never print in logs, reprs or exceptions. A wrong value is
reported by :func:`load_settings` as ``SettingsError`` naming the environment variable a person sets
(``SIPFLOWS_SMTP_PORT``), never the Python field (``smtp_port``), and never a secret's value.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sipflows.addresses import check_address


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
    transport: Literal["outbox", "smtp", "exchange", "graph"] = "outbox"
    outbox_dir: Path = Path("outbox")
    sender_address: str = "sip-noreply@example.se"
    sender_name: str = "SIP-påminnelser"
    organizer_address: str | None = Field(
        default=None,
        description="ORGANIZER of invitations sent by mail (SMTP, outbox): a mailbox sipflows reads "
        "answers from (SIPFLOWS_IMAP_*). Default: sender_address.",
    )
    mail_domain: str = "sipflows.local"
    batch_size: int = Field(default=200, ge=1)
    # A notice that keeps failing is tried after 1, 2, 4, ... 128 minutes, then every 3 hours: its 16th
    # and last try comes 25 h 15 min after the first (README: "Dispatch"). An outage of the transport
    # itself costs no attempts at all.
    max_attempts: int = Field(default=16, ge=1)
    backoff_base_seconds: float = Field(default=60.0, gt=0)
    backoff_max_seconds: float = Field(default=3 * 3600.0, gt=0)
    claim_lease_seconds: int = Field(default=600, ge=10)
    # SMTP dispatch commits outcomes in groups while the next messages travel; at most this many sent
    # notices may be unrecorded when the next one goes (resent after a crash). 0: one at a time.
    record_window: int = Field(default=100, ge=0)

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

    # Microsoft Graph (Exchange Online after EWS): app-only client credentials, one SIP mailbox
    graph_tenant_id: str | None = None
    graph_client_id: str | None = None
    graph_client_secret: SecretStr | None = None
    graph_certificate_path: Path | None = Field(
        default=None, description="PEM file with the app's private key and certificate (instead of a secret)."
    )
    graph_certificate_password: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted private key in graph_certificate_path."
    )
    graph_mailbox: str | None = Field(
        default=None, description="The SIP mailbox the events are organised in and the mail is sent from."
    )
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    graph_authority_url: str = "https://login.microsoftonline.com"
    graph_credentials_block: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding the Graph client secret."
    )
    graph_max_wait_seconds: float = Field(
        default=300.0, ge=0, description="Most time one batch waits out Graph throttling (Retry-After)."
    )
    graph_timeout_seconds: float = Field(default=30.0, gt=0)

    # replies
    imap_host: str | None = None
    imap_port: int = 993
    imap_ssl: bool = True
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_rejected_folder: str = Field(
        default="sipflows-rejected",
        description="IMAP folder that replies set aside are moved into (created when missing); "
        "empty: flag them \\Seen \\Flagged where they are.",
    )
    replies_dir: Path | None = None

    # alerts to operations staff: the Prefect notification block the sipflows automations send through
    alerts_webhook_url: SecretStr | None = Field(
        default=None, description="Where alerts go: a webhook URL (generic, or a Teams workflow URL)."
    )
    alerts_kind: Literal["webhook", "teams"] = Field(
        default="webhook", description="webhook: a generic JSON POST; teams: Microsoft Teams."
    )
    alerts_block: str | None = Field(
        default=None,
        description="Send through this existing Prefect notification block instead ('<type-slug>/<name>').",
    )

    @field_validator("organizer_address")
    @classmethod
    def _plain_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return check_address(value)
        except ValueError:
            raise ValueError("SIPFLOWS_ORGANIZER_ADDRESS must be a plain address: sip@kommun.se") from None

    def organizer(self) -> str:
        """The address calendar invitations sent by mail name as ORGANIZER: where answers go."""
        return (self.organizer_address or "").strip() or self.sender_address

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sipflows.sqlite').as_posix()}"


ENV_PREFIX = "SIPFLOWS_"
_SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
)


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the environment variable to fix."""


def env_name(field: str) -> str:
    """The environment variable of a settings field: ``smtp_port`` -> ``SIPFLOWS_SMTP_PORT``."""
    return f"{ENV_PREFIX}{field.upper()}"


def settings_error(exc: ValidationError) -> SettingsError:
    """pydantic's error, told in the names a person sets (values of secrets are never shown)."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = env_name(field) if field in Settings.model_fields else field or "settings"
        got = ""
        if field not in _SECRET_FIELDS and "input" in err and not isinstance(err["input"], dict):
            text = repr(err["input"])
            got = f" (got {text if len(text) <= 60 else text[:59] + '…'})"
        lines.append(f"{name}: {err['msg']}{got}")
    return SettingsError("invalid settings (from the environment or .env):\n" + "\n".join(lines))


def load_settings(**values: Any) -> Settings:
    """Settings from the environment and ``.env`` (and ``values``); ``SettingsError`` names what is wrong."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise settings_error(exc) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
