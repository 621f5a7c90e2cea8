"""What the person reads: their own text shown back inert (no mention, no link, no broken quote),
and the bot's warnings escaped once."""

from __future__ import annotations

import json
import re

from bot.slack import views
from tests.conftest import eventually, submission
from tests.test_ticket_flow import filled, open_modal_with_command

NASTY = ("Run ```rm -rf /tmp/x``` then `ls`\n"
         "> not a quote of mine\n"
         "ping <@U222> and <!channel>, see <https://evil.example|your bank> & <#C123>\n"
         "```\nunclosed fence")


def typed_lines(text: str) -> list[str]:
    """The lines after "*Description:*" in a message or modal text."""
    return text.split("*Description:*\n", 1)[1].split("\n")


def assert_inert_quote(text: str) -> None:
    lines = typed_lines(text)
    assert len(lines) == len(NASTY.splitlines())
    assert all(line.startswith("> ") for line in lines), lines  # no line leaves the quote
    body = "\n".join(line[2:] for line in lines)
    assert "<" not in body and ">" not in body  # nothing Slack would read as a mention or link
    assert "&lt;@U222&gt;" in body and "&lt;!channel&gt;" in body and "&amp;" in body
    assert "```rm -rf /tmp/x```" in body  # shown as typed otherwise


async def test_what_you_typed_survives_backticks_and_stays_inert(tmp_path, slack, serval):
    from server.http import serve_http
    from tests.conftest import SlackSender, make_settings

    slack_state, slack_url = slack
    running = await serve_http(make_settings(tmp_path, slack_url, serval[1], serval_team_id="no-such-team"),
                               host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        view = await open_modal_with_command(sender, slack_state, "Laptop")
        await sender.interactive(submission(view, filled("Laptop <@U222>", description=NASTY)))
        message = (await slack_state.wait_for("chat.postEphemeral"))[0]["args"]["text"]
        modal = await eventually(lambda: [u["args"]["view"] for u in slack_state.calls_to("views.update")
                                          if "could not be created" in json.dumps(u["args"]["view"])])
    finally:
        await sender.aclose()
        await running.close()
    assert "could not be created" in message and "*Title:* Laptop &lt;@U222&gt;" in message
    assert "```" not in message.split("*Description:*")[0]
    assert_inert_quote(message)
    assert_inert_quote(modal[0]["blocks"][0]["text"]["text"])


async def test_a_warning_names_the_channel_as_a_link_not_as_escaped_markup(sender, slack, serval):
    """The bot could not share the ticket in a channel it is not in: the person reads `#private`
    (Slack renders <#C999>), not `&lt;#C999&gt;`."""
    slack_state, _ = slack
    slack_state.add_channel("C999", "private", bot_is_member=False)
    view = await open_modal_with_command(sender, slack_state, "", channel_id="C999", channel_name="private")
    await sender.interactive(submission(view, filled("Share me", share=True)))

    def warned() -> list[str]:
        return [c["args"]["text"] for c in slack_state.calls if not c.get("error")
                and c["method"] in ("chat.postMessage", "chat.postEphemeral") and "could not post in" in c["args"].get("text", "")]

    text = (await eventually(warned))[0]
    assert "<#C999>" in text and "&lt;" not in text and "&amp;" not in text


def test_warnings_are_escaped_exactly_once():
    bot_written = "I could not post in <#C111> (not_in_channel); invite me to the channel to share tickets there."
    already = f"Serval has no account for {views.escape('Bob <bob@x> & co')}'s e-mail address"
    raw = "Serval said: field <b> is bad & <!here> <@U1>"
    text = views.created_text("IT-1", "T", [bot_written, already, raw])
    assert "<#C111>" in text and "&lt;#C111&gt;" not in text
    assert "Bob &lt;bob@x&gt; &amp; co" in text and "&amp;lt;" not in text and "&amp;amp;" not in text
    assert "&lt;b&gt;" in text and "&lt;!here&gt;" in text and "&lt;@U1&gt;" in text and "<!here>" not in text
    assert views.escape_warning(views.escape_warning(raw)) == views.escape_warning(raw)
    follow = views.followup_text("IT-1", [bot_written, raw])
    assert "<#C111>" in follow and "&lt;!here&gt;" in follow


def test_failed_text_keeps_every_line_of_the_description_in_the_quote():
    text = views.failed_text("Serval refused", "T", "a\n\n```\nb ``` c\n> d")
    lines = typed_lines(text)
    assert lines == ["> a", "> ", "> ```", "> b ``` c", "> &gt; d"]
    assert re.search(r"^\*Title:\* T$", text, re.M)
