"""The *Create a ticket* workflow step (`function_executed`, a custom step of Workflow Builder).

Like every event, the execution is journaled before Bolt acknowledges it (a listener middleware:
see `handlers/events.py`), under its `function_execution_id`, so a redelivery to this or another
replica is the same execution. The service checks the inputs, creates the ticket and ends the
execution with `functions.completeSuccess` or `functions.completeError`, from the journal
([slack-native.md](../docs/slack-native.md)). When the journal cannot be written, Slack gets a 500
and delivers the event again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse

from bot.core import Bot
from bot.pipeline.workflow import CALLBACK_ID

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    async def journal_execution(event: dict[str, Any], context: AsyncBoltContext,
                                next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        execution_id = event.get("function_execution_id")
        inputs = event.get("inputs") if isinstance(event.get("inputs"), dict) else {}
        if not execution_id:
            log.warning("a %s step without a function_execution_id was ignored", CALLBACK_ID)
            return BoltResponse(status=200, body="")
        token = context.function_bot_access_token or event.get("bot_access_token")
        if not token:  # Slack always sends one; without it the bot's own token is the best try
            log.warning("workflow step %s came without its own token; the bot's token ends it", execution_id)
            token = context.bot_token or bot.settings.slack_bot_token.get_secret_value()
        try:
            sub = await bot.tickets.submit_function(execution_id=execution_id, token=token, inputs=inputs)
        except Exception:
            log.exception("could not record the workflow step %s; Slack will deliver it again", execution_id)
            return BoltResponse(status=500, body="")
        log.info("workflow step %s: submission %s", execution_id, sub.id)
        await next()
        return None

    async def executed() -> None:
        """After the ack: nothing; the journal carries the execution to its end."""

    app.function(CALLBACK_ID, middleware=[journal_execution])(executed)
