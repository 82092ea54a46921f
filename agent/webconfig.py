"""The exporter-toolkit web configuration file (`--web.config.file`): TLS, basic auth, headers.

`load` reads and validates the file and every file it names into a frozen WebSettings. It blocks
(file reads, key checks, one bcrypt hash): the agent runs it in a thread. Problems come back as a
ConfigError, one line per problem naming the file and the key; never a secret or key material.
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.config import ConfigError, describe_error, read_yaml

VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# Headers and values the exporter-toolkit allows in http_server_config.headers (None: any value).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
# Keys the exporter-toolkit knows that hostagent does not implement: an error, never ignored.
UNSUPPORTED = {
    "rate_limit": "request rate limiting",
    "cert": "an inline certificate; use cert_file",
    "key": "an inline key; use key_file",
    "client_ca": "inline client CAs; use client_ca_file",
    "cipher_suites": "choosing cipher suites",
    "curve_preferences": "choosing curves",
    "client_allowed_sans": "matching client certificate SANs",
}
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")

# (st_mtime_ns, st_size, st_ino) per watched file; None where the file cannot be stat'ed.
Stamp = tuple[tuple[int, int, int] | None, ...]


def _unsupported(value: Any, info: ValidationInfo) -> Any:
    raise ValueError(f"not supported by hostagent yet ({UNSUPPORTED[info.field_name or '']})")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True,
                              defer_build=True)  # built only when a file is read

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True
    cert: Any = None
    key: Any = None
    client_ca: Any = None
    cipher_suites: Any = None
    curve_preferences: Any = None
    client_allowed_sans: Any = None

    _check_unsupported = field_validator(
        "cert", "key", "client_ca", "cipher_suites", "curve_preferences",
        "client_allowed_sans")(_unsupported)

    @field_validator("client_auth_type")
    @classmethod
    def _check_client_auth(cls, value: str) -> str:
        if value in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert"):
            raise ValueError(f"{value} is not supported by hostagent yet (client certificates "
                             "are always verified against client_ca_file)")
        if value not in CLIENT_AUTH:
            raise ValueError(f"must be one of {', '.join(CLIENT_AUTH)}")
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if value in ("TLS10", "TLS11"):
            raise ValueError(f"{value} is below TLS12, the oldest version hostagent serves")
        if value not in VERSIONS:
            raise ValueError("must be TLS12 or TLS13")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        if VERSIONS[self.min_version] > VERSIONS[self.max_version]:
            raise ValueError("min_version must not be above max_version")
        if self.client_auth_type == "NoClientCert" and self.client_ca_file is not None:
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert")
        if self.client_auth_type != "NoClientCert" and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        return self


class HTTPServerConfig(_Strict):
    http2: bool = False
    headers: dict[str, str] = {}

    @field_validator("http2")
    @classmethod
    def _check_http2(cls, value: bool) -> bool:
        if value:
            raise ValueError("HTTP/2 is not supported by hostagent yet (set false or remove it)")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name not in HEADERS:
                raise ValueError(f"{name!r} cannot be configured (allowed: {', '.join(HEADERS)})")
            allowed = HEADERS[name]
            if allowed is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
            if "\r" in value or "\n" in value:
                raise ValueError(f"{name}: a value cannot contain a line break")
        return headers


class WebConfigFile(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig.model_construct()
    basic_auth_users: dict[str, str] = {}
    rate_limit: Any = None

    _check_unsupported = field_validator("rate_limit")(_unsupported)

    @field_validator("basic_auth_users")
    @classmethod
    def _check_users(cls, users: dict[str, str]) -> dict[str, str]:
        for name, hashed in users.items():
            if not name or ":" in name:
                raise ValueError(f"user {name!r}: a user name must be non-empty, without ':'")
            if not _BCRYPT.match(hashed):  # the message never quotes the hash
                raise ValueError(f"user {name!r}: the password must be a bcrypt hash "
                                 "($2a$, $2b$ or $2y$, cost 04-31)")
        return users


@dataclass(frozen=True)
class WebSettings:
    """A loaded web configuration. The default (no file) is plain HTTP without auth."""

    path: Path | None = None
    context: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}),
                                       repr=False)
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # A bcrypt hash of a random password at the table's highest cost: unknown users are
    # checked against it, so they take as long as known ones.
    decoy: bytes = field(default=b"", repr=False)
    watched: tuple[Path, ...] = ()
    stamp: Stamp = ()

    @property
    def tls(self) -> bool:
        return self.context is not None


def fingerprint(paths: Iterable[Path]) -> Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(stamps)


def load(path: Path | None) -> WebSettings:
    if path is None:
        return WebSettings()
    stamp = fingerprint([path])  # before reading: a change during the read is seen next time
    try:
        parsed = WebConfigFile.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError([f"{path}: {describe_error(dict(e))}" for e in exc.errors()]) from None
    context, files = None, [path]
    if (tls := parsed.tls_server_config) is not None:
        named = [path.parent / tls.cert_file, path.parent / tls.key_file]
        if tls.client_ca_file is not None:
            named.append(path.parent / tls.client_ca_file)
        stamp += fingerprint(named)
        context = _context(path, tls, *named)
        files += named
    users = {name: hashed.encode() for name, hashed in parsed.basic_auth_users.items()}
    decoy = b""
    if users:
        import bcrypt  # only with basic auth configured

        cost = max(int(hashed[4:6]) for hashed in users.values())
        decoy = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(cost))
    return WebSettings(path, context, MappingProxyType(users),
                       MappingProxyType(dict(parsed.http_server_config.headers)), decoy,
                       tuple(files), stamp)


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey  # never prompt on a terminal for a key's passphrase


def _context(path: Path, tls: TLSServerConfig, cert: Path, key: Path,
             ca: Path | None = None) -> ssl.SSLContext:
    def problem(key_name: str, text: str) -> ConfigError:
        return ConfigError([f"{path}: tls_server_config.{key_name}: {text}"])

    for key_name, file, marker in (("cert_file", cert, b"-----BEGIN CERTIFICATE-----"),
                                   ("key_file", key, b"PRIVATE KEY-----"),
                                   ("client_ca_file", ca, b"-----BEGIN CERTIFICATE-----")):
        if file is None:
            continue
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise problem(key_name, f"cannot read {file}: {exc.strerror}") from None
        if marker not in content:
            kind = "private key" if key_name == "key_file" else "certificate"
            raise problem(key_name, f"no PEM {kind} in {file}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[tls.min_version]
    context.maximum_version = VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        raise problem("key_file", f"{key} is encrypted; hostagent needs an unencrypted key"
                      ) from None
    except ssl.SSLError as exc:
        reason = (exc.reason or "not a valid certificate and key").lower().replace("_", " ")
        raise problem("cert_file", f"cannot use {cert} with {key}: {reason}") from None
    except OSError as exc:  # replaced between the check above and the load
        raise problem("cert_file", f"cannot read {cert} or {key}: {exc.strerror}") from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            reason = (exc.reason or "not a valid certificate").lower().replace("_", " ")
            raise problem("client_ca_file", f"cannot use {ca}: {reason}") from None
        except OSError as exc:
            raise problem("client_ca_file", f"cannot read {ca}: {exc.strerror}") from None
    return context
