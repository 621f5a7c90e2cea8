"""The bot's words: escaping what people typed for mrkdwn, reading a Slack message (its text, its
app, a title from it), and the messages the bot posts (ticket created, failed, shared, followed up).
`views` builds the Block Kit screens around them."""

from __future__ import annotations

import re
from typing import Any

TITLE_PREFILL_LENGTH = 80
SLACK_TEXT_LIMIT = 3000  # plain_text_input max_length


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters. Use it exactly once,
    where text that is not the bot's own (what a person typed, what a ticket system answered)
    enters mrkdwn: nothing it contains can then mention anyone or make a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

# In a warning: the bot's own channel references stay; entities already escaped are not escaped again.
_BOT_MARKUP = re.compile(r"<#[CG][A-Z0-9]{2,}>|&(?:amp|lt|gt);")

def escape_warning(text: str) -> str:
    """A warning for mrkdwn. Warnings are written by the bot and may carry its channel references
    (`<#C111>`) and text it escaped already; anything else that could mention or link is
    escaped. Escaping twice changes nothing, so a warning is never shown as `&lt;#C111&gt;`."""
    out, last = [], 0
    for m in _BOT_MARKUP.finditer(text):
        out.append(escape(text[last:m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")

def plain(text: str) -> str:
    """Slack message markup to readable text: <@U1> → @U1, <url|label> → label, &amp; → &."""

    def repl(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if label:
            return ("#" if target.startswith("#C") else "") + label
        if target.startswith(("@", "#")):
            return target
        if target.startswith("!"):
            return "@" + target[1:].split("^")[0]
        return target

    return _LINK.sub(repl, text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary to at most `limit` characters, marking the cut with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut and cut.rfind(" ") > limit // 2:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:-") + "…"

def title_from_message(text: str) -> str:
    first = next((line for line in plain(text).splitlines() if line.strip()), "")
    return shorten(first, TITLE_PREFILL_LENGTH)

def _in_channel(channel_id: str | None, channel_name: str | None) -> str:
    return f" in #{channel_name}" if channel_name and channel_id and channel_id[0] in "CG" else ""

def message_from(name: str, channel_id: str | None, channel_name: str | None) -> str:
    """The line above a quoted message whose author is not the requester (ON_BEHALF_OF)."""
    return f"Message from {name}{_in_channel(channel_id, channel_name)}:"

def app_name(message: dict[str, Any]) -> str | None:
    """The app that posted a message (it has a `bot_id`, or `subtype: bot_message`), by the name
    Slack shows for it (`bot_profile.name`, else `username`); None for a person's message."""
    if not (message.get("bot_id") or message.get("subtype") == "bot_message"):
        return None
    profile = message.get("bot_profile") if isinstance(message.get("bot_profile"), dict) else {}
    return str(profile.get("name") or message.get("username") or "an app")

def message_text(message: dict[str, Any]) -> str:
    """A message's text; for one without (an app's alert often), what its attachments say
    (`pretext`, `title` and `text`, else `fallback`)."""
    text = message.get("text") or ""
    if text.strip():
        return text
    lines: list[str] = []
    for a in message.get("attachments") or []:
        if isinstance(a, dict):
            lines += [str(a[k]) for k in ("pretext", "title", "text") if a.get(k)] or (
                [str(a["fallback"])] if a.get("fallback") else [])
    return "\n".join(lines)

def alert_from(app: str, channel_id: str | None, channel_name: str | None) -> str:
    """The line above a quoted message an app posted (an alert): the ticket is filed for the person
    who asked, and names the app."""
    return f"Alert from {app}{_in_channel(channel_id, channel_name)}:"

def description_from_message(text: str, permalink: str | None, limit: int = SLACK_TEXT_LIMIT,
                             *, header: str | None = None) -> str:
    """The message as plain text, within `limit` characters; `header` (who wrote it) above and the
    link below are kept whole, the message is cut if needed."""
    top = f"{header}\n" if header else ""
    link = f"\n\nSlack message: {permalink}" if permalink else ""
    body = plain(text).strip()
    room = max(0, limit - len(top) - len(link))
    if len(body) > room:
        body = body[: max(0, room - 1)] + "…"
    return (top + body + link)[:limit]

def quoted(text: str) -> str:
    """A person's text as an mrkdwn quote, shown as typed and inert: every line is quoted (no line
    can leave the quote, whatever backticks or `>` it holds) and escaped (no mention, no link)."""
    return "\n".join("> " + escape(line) for line in text.strip().splitlines())

def typed_back(title: str, description: str) -> str:
    """What the person typed, shown back so nothing is lost."""
    text = f"*Title:* {escape(title)}"
    if description.strip():
        text += f"\n*Description:*\n{quoted(description)}"
    return text

def help_text(command: str, emoji: str = "ticket") -> str:
    return (
        f"*{command}* opens a form to create a help-desk ticket.\n"
        f"• `{command}` — empty form\n"
        f"• `{command} Printer on floor 3 is jammed` — form with the title filled in\n"
        "• On any message: *More actions* (⋮) → *Create ticket* to file it and link its thread.\n"
        f"• React to a message with :{emoji}:, or mention me in a thread, to file it without a form.\n"
        f"• `{command} config` — (admins) where tickets from this channel go\n"
        "Replies in a linked thread are synced with the ticket. Your tickets are in my *Home* tab."
    )

def ticket_ref(display_id: str, url: str | None = None) -> str:
    """How a message names a ticket: *IT-42*, or a link to the ticket's page when one is known
    (SERVAL_TICKET_URL, REZOLVE_TICKET_URL, Socialboards' inbox), which stands out as a link."""
    if url and url.startswith(("https://", "http://")) and not any(c in url for c in "<>| \n"):
        return f"<{url}|{escape(display_id)}>"
    return f"*{escape(display_id)}*"

def thread_reply_text(display_id: str, title: str, user_id: str, url: str | None = None) -> str:
    return (
        f":ticket: <@{user_id}> created ticket {ticket_ref(display_id, url)}: {escape(title)}\n"
        "Replies in this thread are synced with the ticket."
    )

def shared_ticket_text(display_id: str, title: str, user_id: str, url: str | None = None) -> str:
    return (
        f":ticket: <@{user_id}> opened ticket {ticket_ref(display_id, url)}: {escape(title)}\n"
        "Reply in this thread to add to the ticket."
    )

def created_text(display_id: str, title: str, warnings: list[str], url: str | None = None) -> str:
    text = f":white_check_mark: Your ticket {ticket_ref(display_id, url)} was created: {escape(title)}"
    for w in warnings:
        text += f"\n:warning: {escape_warning(w)}"
    return text

def failed_text(reason: str, title: str, description: str) -> str:
    return (
        f":x: Your ticket could not be created: {escape_warning(reason)}\n"
        f"Here is what you typed, so nothing is lost:\n{typed_back(title, description)}"
    )

def not_member_warning(channel_id: str, app_name: str = "Tickets") -> str:
    return (f":warning: I am not a member of <#{channel_id}>, so Slack does not send me its messages or "
            f"reactions: add me with `/invite @{app_name}` there.")

def already_ticket_text(display_id: str | None) -> str:
    """To the person who reacted or mentioned the bot in a thread that has a ticket already."""
    if display_id:
        return f"This thread already has ticket *{escape(display_id)}*: replies here are synced with it."
    return "A ticket is already being created for this thread."

def followup_text(display_id: str, warnings: list[str], url: str | None = None) -> str:
    """What went wrong after the person was told their ticket id."""
    return f"About your ticket {ticket_ref(display_id, url)}:" + "".join(
        f"\n:warning: {escape_warning(w)}" for w in warnings)

def added_text(display_id: str, title: str, warnings: list[str], url: str | None = None) -> str:
    """The person chose "Add to this ticket instead"."""
    text = f":white_check_mark: Added to ticket {ticket_ref(display_id, url)}: {escape(title)}"
    for w in warnings:
        text += f"\n:warning: {escape_warning(w)}"
    return text

def linked_reply_text(display_id: str, user_id: str, url: str | None = None) -> str:
    return (
        f":link: <@{user_id}> added this thread to ticket {ticket_ref(display_id, url)}.\n"
        "Replies in this thread are synced with the ticket."
    )

def failed_from_message_text(reason: str, message_text: str) -> str:
    """A ticket from a conversation could not be created: the reason, and the message quoted."""
    return (
        f":x: The ticket could not be created: {escape_warning(reason)}\n"
        f"The message was:\n{typed_back(title_from_message(message_text), message_text)}"
    )
