"""What every listener does after its ack: open a view or tell the person why not, and never fail
in silence.

A listener acknowledges first, then calls Slack and the ticket system. From then on nothing may
escape it: Bolt answers a listener that raised after its ack with nothing at all (Slack shows a
timeout), and the person would never learn what happened. `tell` reaches them with an ephemeral
message where they are, or a DM where the bot cannot post."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import background
from bot.pipeline.service import SLACK_NO_ACCESS, slack_error

log = logging.getLogger("handlers")

# chat.postEphemeral errors that mean "not there": a DM instead.
NOT_THERE = SLACK_NO_ACCESS
TRIGGER_GONE = {"expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id", "trigger_exchanged"}


async def tell(client: AsyncWebClient, user_id: str | None, channel_id: str | None, text: str) -> bool:
    """An ephemeral message in the channel the person is in; a DM where that is not possible.
    False when neither reached them (logged)."""
    if not user_id:
        log.error("cannot tell an unknown user: %s", text)
        return False
    if channel_id:
        try:
            await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
            return True
        except Exception as exc:
            if slack_error(exc) not in NOT_THERE:
                log.warning("chat.postEphemeral to %s in %s failed (%s); trying a DM", user_id, channel_id, slack_error(exc))
    try:
        await client.chat_postMessage(channel=user_id, text=text)
        return True
    except Exception as exc:
        log.error("could not tell %s (%s): %s", user_id, slack_error(exc), text)
        return False


def open_failed_text(exc: BaseException, what: str = "the ticket form") -> str:
    error = slack_error(exc)
    if error in TRIGGER_GONE:
        why = "Slack did not let me open it in time"
    elif error == "ratelimited" or (isinstance(exc, SlackApiError) and getattr(exc.response, "status_code", 0) == 429):
        why = "Slack is busy right now"
    else:
        why = f"Slack refused it (`{error}`)"
    return f":warning: I could not open {what}: {why}. Please try again in a moment."


async def open_view(client: AsyncWebClient, trigger_id: str, view: dict[str, Any], *, user_id: str | None,
                    channel_id: str | None, what: str = "the ticket form") -> dict[str, Any] | None:
    """views.open; the opened view, or None after telling the person that it did not open."""
    try:
        resp = await client.views_open(trigger_id=trigger_id, view=view)
        return resp.get("view") or {}
    except Exception as exc:
        log.warning("views.open for %s failed: %s", user_id, slack_error(exc))
        await tell(client, user_id, channel_id, open_failed_text(exc, what))
        return None


async def after_ack(work: Callable[[], Awaitable[None]], client: AsyncWebClient, *, user_id: str | None,
                    channel_id: str | None, what: str = "do that") -> None:
    """Run a listener's work after its ack; an unexpected error is logged and the person told.
    Someone waits for it: no background work starts meanwhile (`bot.background`)."""
    try:
        with background.foreground():
            await work()
    except Exception:
        log.exception("listener failed after its ack (user %s)", user_id)
        await tell(client, user_id, channel_id,
                   f":warning: Something went wrong and I could not {what}. Please try again in a minute.")
