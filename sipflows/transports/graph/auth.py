"""Who sipflows is to Microsoft and whom it trusts: TLS roots, client credentials, msal's HTTP."""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipflows.transports.graph.common import GraphConfigurationError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- trust (TLS)

_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def trusted_locations(environ: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """The CA files or folders the operator named in the standard variables (each must exist)."""
    env = os.environ if environ is None else environ
    found: list[tuple[str, Path]] = []
    for variable in _CA_VARIABLES:
        value = env.get(variable)
        if not value:
            continue
        path = Path(value)
        if not path.exists():
            raise GraphConfigurationError(f"{variable} names {value}, which does not exist")
        found.append((variable, path))
    return found


def ssl_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context for the token and the Graph calls: the named CAs (all of them), else
    certifi's (what httpx and requests both trust by default). Built once per set of files."""
    locations = trusted_locations(environ)
    key = tuple((variable, str(path), path.stat().st_mtime_ns) for variable, path in locations)
    return _context_for(key)


@functools.lru_cache(maxsize=8)
def _context_for(locations: tuple[tuple[str, str, int], ...]) -> ssl.SSLContext:
    if not locations:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    # as SSL_CERT_FILE means for OpenSSL: these CAs instead of the default store, not beside it
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for variable, name, _ in locations:
        path = Path(name)
        try:
            if path.is_dir():
                context.load_verify_locations(capath=name)
            else:
                context.load_verify_locations(cafile=name)
        except (ssl.SSLError, OSError) as exc:
            raise GraphConfigurationError(
                f"{variable} ({path}) holds no usable CA certificates: {exc}"
            ) from None
    return context


# ------------------------------------------------------------------------------------------ credentials


def _prefect_secret(block_name: str) -> str:
    """The client secret from a Prefect Secret block: a string, or an object with client_secret/secret."""
    from prefect.blocks.system import Secret  # lazily: the domain library works without Prefect

    block: Any = Secret.load(block_name)
    value = block.get()
    if isinstance(value, dict):
        for key in ("client_secret", "secret", "password"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
        raise GraphConfigurationError(
            f"Prefect Secret block {block_name!r} (SIPFLOWS_GRAPH_CREDENTIALS_BLOCK) holds an object "
            "without client_secret"
        )
    if not isinstance(value, str) or not value:
        raise GraphConfigurationError(
            f"Prefect Secret block {block_name!r} (SIPFLOWS_GRAPH_CREDENTIALS_BLOCK) holds no text secret"
        )
    return value


_PEM_KEY = re.compile(r"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def certificate_credential(path: Path, passphrase: str | None) -> dict[str, str]:
    """msal's certificate credential from one PEM file holding the private key and its certificate.

    Checked here, so a wrong file or passphrase is named before any request: the key must load and
    belong to the (first) certificate, whose SHA-256 thumbprint msal sends (PS256 client assertion).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    name = "SIPFLOWS_GRAPH_CERTIFICATE_PATH"
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise GraphConfigurationError(f"{name} ({path}) cannot be read: {exc.strerror}") from None
    key_match, certs = _PEM_KEY.search(text), _PEM_CERT.findall(text)
    if key_match is None:
        raise GraphConfigurationError(f"{name} ({path}) holds no PEM private key")
    if not certs:
        raise GraphConfigurationError(f"{name} ({path}) holds no PEM certificate")
    secret = passphrase.encode() if passphrase else None
    try:
        key = serialization.load_pem_private_key(key_match.group(0).encode(), password=secret)
    except (TypeError, ValueError):
        raise GraphConfigurationError(
            f"the private key in {name} ({path}) cannot be read: wrong or missing "
            "SIPFLOWS_GRAPH_CERTIFICATE_PASSWORD, or not a key"
        ) from None
    try:
        cert = x509.load_pem_x509_certificate(certs[0].encode())
    except ValueError:
        raise GraphConfigurationError(f"the certificate in {name} ({path}) cannot be read") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise GraphConfigurationError(
            f"the private key in {name} ({path}) does not belong to its certificate"
        )
    credential = {"private_key": key_match.group(0), "public_certificate": certs[0]}
    if passphrase:
        credential["passphrase"] = passphrase
    return credential
