"""The live ticket card's buttons: *Close ticket*, *Reopen* (also on the "resolved" notice) and
*Add a comment* with its small form (docs/after-the-ticket.md). Each acks first; the ticket system
is asked afterwards, and a refusal is told to the person with its reason."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Bot
from bot.slack import cards, views

from .common import after_ack, open_view, tell

log = logging.getLogger(__name__)


def _where(body: dict[str, Any]) -> tuple[str, str | None]:
    user_id = (body.get("user") or {}).get("id", "")
    channel_id = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return user_id, channel_id


def _refusal(exc: Exception) -> str | None:
    """What to tell the person when the bot refused or the ticket system did; None: unexpected."""
    if isinstance(exc, PermissionError):
        return f":no_entry: Sorry, {exc}."
    message = getattr(exc, "message", None)
    if message is not None:  # clients.base.BackendError: the ticket system's reason
        return f":warning: That did not work: {views.escape(message)}"
    return None


def register(app: AsyncApp, bot: Bot) -> None:
    follower = bot.follower

    async def set_closed(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient,
                         closed: bool) -> None:
        await ack()
        user_id, channel_id = _where(body)
        target = cards.parse_key(action.get("value") or "")

        async def act() -> None:
            if target is None or follower is None:
                await tell(client, user_id, channel_id, ":warning: This button is out of date.")
                return
            try:
                display_id = await follower.set_closed(user_id, *target, closed)
            except Exception as exc:
                if (text := _refusal(exc)) is None:
                    raise
                await tell(client, user_id, channel_id, text)
                return
            log.debug("%s %s", display_id, "closed" if closed else "reopened")
            if not closed:
                await tell(client, user_id, channel_id, f":arrows_counterclockwise: Ticket *{views.escape(display_id)}* is open again.")

        await after_ack(act, client, user_id=user_id, channel_id=channel_id,
                        what="close the ticket" if closed else "reopen the ticket")

    @app.action(cards.CLOSE_ACTION)
    async def close_clicked(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await set_closed(ack, body, action, client, True)

    @app.action(cards.REOPEN_ACTION)
    async def reopen_clicked(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await set_closed(ack, body, action, client, False)

    @app.action(cards.COMMENT_ACTION)
    async def comment_clicked(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id, channel_id = _where(body)
        value = action.get("value") or ""
        target = cards.parse_key(value)

        async def open_form() -> None:
            if target is None:
                await tell(client, user_id, channel_id, ":warning: This button is out of date.")
                return
            await open_view(client, body["trigger_id"], cards.comment_modal(value), user_id=user_id,
                            channel_id=channel_id, what="the comment form")

        await after_ack(open_form, client, user_id=user_id, channel_id=channel_id, what="open the comment form")

    @app.view_submission(cards.COMMENT_CALLBACK_ID)
    async def comment_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        user_id = (body.get("user") or {}).get("id", "")
        state = (view.get("state") or {}).get("values") or {}
        text = (((state.get(cards.COMMENT_BLOCK) or {}).get("value") or {}).get("value") or "").strip()
        target = cards.parse_key(view.get("private_metadata") or "")
        if not text:
            await ack(response_action="errors", errors={cards.COMMENT_BLOCK: "Please write a comment."})
            return
        if target is None or follower is None:
            await ack(response_action="update", view=views.notice_modal("This form is out of date.", title="Add a comment"))
            return
        await ack(response_action="update", view=views.notice_modal(":hourglass_flowing_sand: Adding your comment…",
                                                                    title="Add a comment"))

        async def save() -> None:
            try:
                display_id = await follower.comment(user_id, *target, text)
                result = f":white_check_mark: Your comment was added to *{views.escape(display_id)}*."
            except Exception as exc:
                if (result := _refusal(exc)) is None:
                    raise
            try:
                await client.views_update(view_id=view["id"], view=views.notice_modal(result, title="Add a comment"))
            except Exception:  # the form was closed meanwhile
                await tell(client, user_id, None, result)

        await after_ack(save, client, user_id=user_id, channel_id=None, what="add your comment")
