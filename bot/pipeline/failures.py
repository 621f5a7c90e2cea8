"""The failure rule's classification, shared by every ticket step: what a step raised → a Failure
that may pass (retried from the journal) or not. Only what cannot heal is permanent: a ticket
system's refusal (4xx other than 408, 409, 429) and Slack's own error answers; everything else,
unexpected errors included, is retried."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import aiohttp
from slack_sdk.errors import SlackApiError

from clients.base import BackendError

from ..installations import NotInstalled
from .worker import Failure

log = logging.getLogger(__name__)

SLACK_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# Errors that mean "the bot cannot post there"; the person is told in a DM instead.
SLACK_NO_ACCESS = {"not_in_channel", "channel_not_found", "is_archived", "user_not_in_channel", "restricted_action",
                   "cannot_dm_bot", "method_not_supported_for_channel_type"}


def failure(exc: BaseException) -> Failure:
    """The one classification of errors every step shares. Only what cannot heal is permanent:
    a ticket system's refusal (4xx other than 408, 409, 429) and Slack's own error answers;
    everything else, unexpected errors included, is retried."""
    if isinstance(exc, NotInstalled):  # uninstalled, or its tokens revoked: nothing to retry
        return Failure(str(exc), False)
    if isinstance(exc, BackendError):
        return Failure(exc.message, exc.transient, exc.retry_after, exc.field_errors or None)
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or "unknown Slack error")
        status = getattr(exc.response, "status_code", 200)
        retry_after = None
        if status == 429:
            try:
                retry_after = float((exc.response.headers or {}).get("Retry-After", 1))
            except (TypeError, ValueError):
                retry_after = 1.0
        transient = status == 429 or status >= 500 or error in SLACK_TRANSIENT
        return Failure(f"Slack: {error}", transient, retry_after)
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError, sqlite3.Error)):
        return Failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True)
    if type(exc).__module__.startswith("sqlalchemy"):  # the database: locked, unreachable, full
        return Failure(f"database: {type(exc).__name__}", True)
    log.error("unexpected error in a ticket step; it is retried", exc_info=exc)
    return Failure(f"unexpected error ({type(exc).__name__})", True)


def slack_error(exc: BaseException) -> str:
    """The Slack error code of a failed Web API call (e.g. `not_in_channel`), else the exception's type."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or "unknown_error")
    return type(exc).__name__
