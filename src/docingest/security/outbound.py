"""Outbound URL rule (HIPAA transmission security, CONTRACTS.md §4): TLS everywhere, plain
http only to a loopback host (tests, local fakes)."""

from __future__ import annotations

import ipaddress

import httpx


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tls_or_loopback(url: str, what: str) -> str:
    """`url` without a trailing slash, or ValueError naming only scheme and host (a URL may
    carry credentials)."""
    parsed = httpx.URL(url)
    if not parsed.host:
        raise ValueError(f"{what} has no host")
    if parsed.scheme == "https" or (parsed.scheme == "http" and is_loopback(parsed.host)):
        return str(parsed).rstrip("/")
    raise ValueError(
        f"refusing {what} {parsed.scheme}://{parsed.host}: use https "
        "(plain http is allowed only for loopback hosts)"
    )
