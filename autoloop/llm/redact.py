"""Remove API keys from any text before it is recorded, logged or raised.

Why: error messages of HTTP clients can echo headers or URLs; records go to DuckDB, journals and git,
which outlive the key. We redact the known secret values (from the environment and the clients) and
anything shaped like a key.
"""
from __future__ import annotations

import os
import re

_KEY_SHAPES = [
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),
]
_PATTERNS = _KEY_SHAPES + [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=]{8,}"),
    re.compile(r"(?i)((?:x-api-key|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]
_extra: set[str] = set()
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


def register_secret(value: str | None) -> None:
    """Remember a secret this process uses so it is redacted even if it matches no pattern."""
    if value and len(value) >= 6:
        _extra.add(value)


def _secrets() -> list[str]:
    vals = set(_extra)
    for k, v in os.environ.items():
        if _SECRET_ENV.search(k) and v and len(v) >= 8:
            vals.add(v)
    return sorted(vals, key=len, reverse=True)


def redact(text: object) -> str:
    s = str(text)
    for secret in _secrets():
        s = s.replace(secret, "[REDACTED]")
    for pat in _PATTERNS:
        s = pat.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", s)
    return s


def redact_reply(text: object) -> str:
    """Redact a model's reply before it is cached or returned: known secret values and key-shaped
    tokens only. The header patterns of `redact` are left out: a reply may legitimately say
    "authorization: required" and must not be altered."""
    s = str(text)
    for secret in _secrets():
        s = s.replace(secret, "[REDACTED]")
    for pat in _KEY_SHAPES:
        s = pat.sub("[REDACTED]", s)
    return s
