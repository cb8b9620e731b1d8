"""The transport named by ``Settings.transport``."""

from __future__ import annotations

from sipflows.settings import Settings
from sipflows.transports.base import SecretLoader, Transport
from sipflows.transports.mime import sender_address


def make_transport(settings: Settings, secret_loader: SecretLoader | None = None) -> Transport:
    """Outbox (default; nothing leaves the machine), SMTP, Exchange or Graph (imported only when chosen).

    ``secret_loader`` reads the credentials blocks that Exchange and Graph may be configured with; the
    entry points (flows, CLI) pass the Prefect one.
    """
    if settings.transport == "outbox":
        from sipflows.transports.outbox import OutboxTransport

        return OutboxTransport(
            settings.outbox_dir, sender_address(settings.sender_address, settings.sender_name)
        )
    if settings.transport == "smtp":
        from sipflows.transports.smtp import SmtpTransport

        return SmtpTransport(settings)
    if settings.transport == "exchange":
        # exchangelib is heavy to import; only Exchange installations pay for it
        from sipflows.transports.exchange import ExchangeTransport

        return ExchangeTransport(settings, secret_loader)
    if settings.transport == "graph":
        # msal and httpx are only loaded where Microsoft Graph is used
        from sipflows.transports.graph import GraphTransport

        return GraphTransport(settings, secret_loader=secret_loader)
    raise ValueError(f"unknown transport {settings.transport!r}; choose outbox, smtp, exchange or graph")
