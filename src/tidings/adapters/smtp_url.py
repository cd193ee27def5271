"""The SMTP server URL: `smtp://user:pass@host:port?starttls=true`, `smtps://` for implicit TLS.

Query options: `starttls=true|false|auto` (smtp:// only; `auto`, the default, upgrades when the
server offers it), `timeout=<seconds>` (connect and per command), `verify=false` (skip
certificate checks, for test relays), `cafile=<path>` (a private CA), `helo=<name>` (the name
we greet with). The password never appears in `str()` or `repr()`, so the URL can be logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tidings.errors import ConfigError

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_SUBMISSION_PORT = 587  # where STARTTLS submission lives when the URL names no port
_OPTIONS = {"starttls", "timeout", "verify", "cafile", "helo"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class TlsMode(StrEnum):
    """How the connection is secured."""

    implicit = "implicit"  # smtps://: TLS from the first byte
    starttls = "starttls"  # upgrade with STARTTLS, fail if the server cannot
    opportunistic = "auto"  # upgrade with STARTTLS when the server offers it
    none = "none"  # never upgrade


@dataclass(frozen=True)
class SmtpUrl:
    """A parsed SMTP server URL. The password is kept out of `repr` and `str`."""

    host: str
    port: int
    tls: TlsMode = TlsMode.opportunistic
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float | None = None
    verify: bool = True
    cafile: str | None = None
    helo: str | None = None

    def __str__(self) -> str:
        return self.redacted()

    def redacted(self) -> str:
        """The URL with the password replaced by `***`, safe for logs and errors."""
        scheme = "smtps" if self.tls is TlsMode.implicit else "smtp"
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="")
            user += ":***@" if self.password is not None else "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        options = []
        if self.tls is TlsMode.starttls:
            options.append("starttls=true")
        elif self.tls is TlsMode.none:
            options.append("starttls=false")
        if self.timeout_s is not None:
            options.append(f"timeout={self.timeout_s:g}")
        if not self.verify:
            options.append("verify=false")
        if self.cafile:
            options.append(f"cafile={quote(self.cafile)}")
        if self.helo:
            options.append(f"helo={quote(self.helo)}")
        query = "?" + "&".join(options) if options else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"


def parse_smtp_url(url: str) -> SmtpUrl:
    """Parse an smtp:// or smtps:// URL; a ConfigError names what is wrong (never the password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"SMTP URL: {_scrub(str(exc), url)}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"SMTP URL: scheme must be smtp:// or smtps://, not {scheme!r}")
    if not parts.hostname:
        raise ConfigError("SMTP URL: no host")
    if parts.path not in ("", "/"):
        raise ConfigError(f"SMTP URL: unexpected path {parts.path!r}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigError(f"SMTP URL: unknown option(s) {', '.join(unknown)}")
    tls = _tls_mode(scheme, options.get("starttls"))
    if port is None:
        port = _SUBMISSION_PORT if tls is TlsMode.starttls else _DEFAULT_PORTS[scheme]
    return SmtpUrl(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout_s=_timeout(options.get("timeout")),
        verify=_flag("verify", options.get("verify"), default=True),
        cafile=options.get("cafile") or None,
        helo=options.get("helo") or None,
    )


def _tls_mode(scheme: str, starttls: str | None) -> TlsMode:
    """The TLS mode from the scheme and the `starttls` option."""
    if scheme == "smtps":
        if starttls is not None:
            raise ConfigError("SMTP URL: smtps:// is already TLS; drop the starttls option")
        return TlsMode.implicit
    if starttls is None or starttls.lower() == "auto":
        return TlsMode.opportunistic
    return TlsMode.starttls if _flag("starttls", starttls, default=False) else TlsMode.none


def _flag(name: str, value: str | None, *, default: bool) -> bool:
    """A boolean query option."""
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"SMTP URL: {name} must be true or false, not {value!r}")


def _timeout(value: str | None) -> float | None:
    """The `timeout` option in seconds, positive and finite."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"SMTP URL: timeout must be a positive number of seconds, not {value!r}")
    return seconds


def _scrub(text: str, url: str) -> str:
    """An error text with the URL's password taken out, in case the parser quoted it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
