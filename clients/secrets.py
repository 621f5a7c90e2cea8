"""Secrets obtained at run time (access tokens, JWTs, rotating refresh tokens).

Clients `remember()` every token they receive; the log formatter (app.py) redacts every remembered
value, as it does the configured ones, from each line and traceback at every level."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_known: set[str] = set()
_version = 0


def remember(value: str | None) -> None:
    """Never log this value. Short values are ignored (they would redact ordinary words)."""
    global _version
    if value and len(value) >= 6 and value not in _known:
        with _lock:
            _known.add(value)
            _version += 1


def known() -> tuple[int, frozenset[str]]:
    """(version, the remembered values); the version changes whenever a value is added."""
    with _lock:
        return _version, frozenset(_known)
