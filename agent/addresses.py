"""SSH target addresses, parsed the same way by the configuration and the SSH worker."""

from __future__ import annotations


def split_address(text: str) -> tuple[str | None, str, int | None]:
    """'host', 'host:port', '[v6]:port' or 'user@host:port' -> (user, host, port)."""
    user, at, rest = text.rpartition("@")
    port_text = ""
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port_text = tail[1:]
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host = rest  # a name, an IPv4 address or a bare IPv6 address
    if (at and not user) or not host or any(c.isspace() for c in text):
        raise ValueError(f"expected host, host:port or user@host:port, got {text!r}")
    if port_text and not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"invalid port in {text!r}")
    return (user or None), host, (int(port_text) if port_text else None)
