"""`make demo` in a browser, driven as a person would: Debian's headless Chromium through Playwright
(never a downloaded browser), against `python -m sandbox.demo` started as a user starts it.

Skipped when /usr/bin/chromium or the playwright package is missing; `.ci/run` installs both.
`E2E_SCREENSHOT=docs/screenshot.png` writes the README's screenshot at the end of the thread test.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)", allow_module_level=True)

expect = playwright.expect
ROOT = Path(__file__).resolve().parents[2]
# Flags that keep Chromium offline and quiet in a container.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo as `make demo` runs it, in a fresh data directory: (page URL, data directory)."""
    data = tmp_path_factory.mktemp("demo-data")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.demo", "--data-dir", str(data)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, as a terminal job
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output, url, deadline = [], None, time.monotonic() + 45
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        output.append(line)
        found = re.search(r"http://\S+", line)
        url = found.group(0) if found else None
    try:
        if url is None:
            log = data / "bot.log"
            pytest.fail("the demo did not print its URL:\n" + "".join(output)
                        + (log.read_text(errors="replace")[-3000:] if log.exists() else ""))
        yield url, data
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C's effect; the demo stops the bot
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, "".join(output)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, demo):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(demo[0])
    expect(page.locator("#channels li")).not_to_have_count(0)
    yield page
    context.close()
    assert not errors, errors


def be(page, user_id: str) -> None:
    page.select_option("#me", user_id)
    expect(page.locator("body")).to_have_attribute("data-me", user_id)  # the page shows their view now


def open_channel(page, channel_id: str) -> None:
    page.click(f"#sidebar li[data-channel={channel_id}] a")
    expect(page.locator(f"#sidebar li[data-channel={channel_id}]")).to_have_class(re.compile("active"))


def send(composer, text: str) -> None:
    composer.fill(text)
    composer.press("Enter")


def test_ticket_from_slash_command(page, demo):
    be(page, "U111")
    open_channel(page, "C111")
    composer = page.locator("#composer-text")
    composer.fill("/tic")
    expect(page.locator("#command-hint")).to_contain_text("/ticket")
    send(composer, "/ticket Printer jammed")

    modal = page.locator("#modal-overlay")
    expect(modal.locator("#modal-title")).to_have_text("New ticket")
    title = modal.locator("[data-block=title] input")
    expect(title).to_have_value("Printer jammed")
    # Alice has an open printer ticket: the form offers it, its :bulb: drawn as Slack draws it.
    expect(modal).to_contain_text("💡 You may already have a ticket about this.")
    expect(modal.locator("[data-block='field:type'] select")).to_have_value("TICKET_TYPE_REQUEST")  # initial_option
    expect(modal.locator("[data-block=share]")).to_contain_text("Share in #dev and sync the thread")
    # the form reads top-down and fits a 1440×900 window: Share is visible without scrolling
    expect(modal.locator("[data-block=share]")).to_be_in_viewport()

    # Slack's own check first: a required field left empty never reaches the app.
    title.fill("")
    page.click("#modal-submit")
    expect(modal.locator("[data-block=title] .error")).to_have_text("Please complete this required field.")

    # The bot's check: response_action "errors" shows beside the field, what was typed stays.
    title.fill("Printer jammed")
    due = modal.locator("[data-block='field:due_date'] input")
    due.fill((dt.date.today() - dt.timedelta(days=3)).isoformat())
    page.click("#modal-submit")
    expect(modal.locator("[data-block='field:due_date'] .error")).to_contain_text("in the past")
    expect(modal.locator("[data-block=title] .error")).to_be_hidden()
    expect(title).to_have_value("Printer jammed")

    next_week = dt.date.today() + dt.timedelta(days=7)
    due.fill(next_week.isoformat())
    page.click("#modal-submit")
    expect(modal).to_contain_text(re.compile(r"Ticket IT-\d+ created"))  # views.update from the bot
    ticket = re.search(r"IT-\d+", modal.inner_text()).group(0)
    page.click("#modal-close")
    expect(modal).to_be_hidden()

    ephemeral = page.locator("#messages .message.ephemeral", has_text=ticket)
    expect(ephemeral).to_contain_text(f"Your ticket {ticket} was created: Printer jammed")
    expect(ephemeral).to_contain_text("Only visible to you")

    card = page.locator(f"#panel .ticket[data-ticket='{ticket}']")
    expect(card).to_contain_text("Printer jammed")
    expect(card).to_contain_text("alice@example.com")
    expect(card).to_contain_text(next_week.isoformat())
    expect(card.locator(".tag")).to_have_text(["slackDm → requestor"])

    # Serval's slackDm sync target: Serval DMs the requester.
    serval = page.locator("#dms li", has_text="Serval")
    expect(serval).to_have_class(re.compile("unread"))
    serval.locator("a").click()
    expect(page.locator("#messages")).to_contain_text(f"Your ticket {ticket} “Printer jammed” was created")

    # An ephemeral message is only for the person it was sent to.
    be(page, "U222")
    open_channel(page, "C111")
    expect(page.locator("#messages")).to_contain_text("The printer on floor 3 is jammed again")
    expect(page.locator("#messages")).not_to_contain_text(ticket)

    # The sandbox keeps its data in the demo's SQLite file.
    with sqlite3.connect(demo[1] / "serval.db") as db:
        saved = json.loads(db.execute("SELECT value FROM serval_state WHERE key = 'tickets'").fetchone()[0])
    assert "Printer jammed" in [t["name"] for t in saved.values()]


def test_ticket_from_a_message_in_a_thread(page, demo):
    be(page, "U222")
    open_channel(page, "C111")
    send(page.locator("#composer-text"), "Wifi keeps dropping in room 4")
    root = page.locator("#messages .message", has_text="Wifi keeps dropping in room 4")
    expect(root).to_be_visible()
    root_ts = root.get_attribute("data-ts")

    be(page, "U111")
    open_channel(page, "C111")
    root.hover()
    root.locator("button[title='Reply in thread']").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("Wifi keeps dropping in room 4")
    send(page.locator("#thread-text"), "Same on floor 2 since this morning")
    reply = thread.locator(".message", has_text="Same on floor 2")
    expect(reply).to_be_visible()
    expect(root.locator(".replies")).to_have_text("1 reply")

    reply.hover()
    reply.locator("button[title='More actions']").click()
    page.locator("#menu button", has_text="Create ticket").click()
    modal = page.locator("#modal-overlay")
    expect(modal.locator("[data-block=title] input")).to_have_value("Same on floor 2 since this morning")
    expect(modal.locator("[data-block=description] textarea")).to_have_value(re.compile("Same on floor 2"))
    page.click("#modal-submit")
    expect(modal).to_contain_text(re.compile(r"Ticket IT-\d+ created"))
    ticket = re.search(r"IT-\d+", modal.inner_text()).group(0)
    page.click("#modal-close")
    expect(modal).to_be_hidden()

    # The bot's reply in the thread, and the ticket connected to the thread (its root).
    bot_reply = thread.locator(".message", has_text=f"created ticket {ticket}")
    expect(bot_reply).to_contain_text(f"@Alice Anderson created ticket {ticket}: Same on floor 2 since this morning")
    expect(bot_reply.locator(".badge")).to_have_text("APP")
    card = page.locator(f"#panel .ticket[data-ticket='{ticket}']")
    expect(card.locator(".thread-link")).to_have_text([f"C111:{root_ts}"])
    expect(card.locator(".tag")).to_have_text(["slackDm → requestor"])

    # The same thread again: the bot says it is linked already.
    root.hover()
    root.locator("button[title='More actions']").click()
    page.locator("#menu button", has_text="Create ticket").click()
    expect(modal).to_contain_text(f"already linked to ticket {ticket}")
    page.click("#modal-x")
    expect(modal).to_be_hidden()

    # The panel's link opens the thread.
    page.click("#thread-close")
    expect(thread).to_be_hidden()
    card.locator(".thread-link").click()
    expect(thread).to_contain_text(f"created ticket {ticket}")

    if os.environ.get("E2E_SCREENSHOT"):
        page.mouse.move(0, 0)
        page.screenshot(path=str(ROOT / os.environ["E2E_SCREENSHOT"]))


def test_app_home_and_a_form_that_follows_the_team(page, demo):
    be(page, "U222")
    page.locator("#dms li", has_text="Tickets").locator("a").click()
    expect(page.locator("#composer")).to_be_visible()  # the manifest's Messages tab takes messages
    expect(page.locator("#composer-off")).to_be_hidden()
    page.locator("#tabs button", has_text="Home").click()  # app_home_opened → views.publish
    home = page.locator("#home")
    expect(home.locator(".block.header")).to_be_visible()
    home.locator("button", has_text="New ticket").click()  # block_actions → views.open

    modal = page.locator("#modal-overlay")
    expect(modal.locator("#modal-title")).to_have_text("New ticket")
    modal.locator("[data-block=title] input").fill("Lights out in room 4")
    priorities = modal.locator("[data-block='field:priority_id'] option")
    expect(priorities.nth(1)).to_have_attribute("value", re.compile("^pri-it-"))
    # A field with dispatch_action: block_actions → the bot updates the view (views.update with hash).
    modal.locator("[data-block='field:team_id'] select").select_option(label="Facilities")
    expect(priorities.nth(1)).to_have_attribute("value", re.compile("^pri-fac-"))
    expect(modal.locator("[data-block=title] input")).to_have_value("Lights out in room 4")  # kept, as Slack does
    modal.locator("[data-block='field:priority_id'] select").select_option(label="High")
    page.click("#modal-submit")
    expect(modal).to_contain_text(re.compile(r"Ticket FAC-\d+ created"))
    ticket = re.search(r"FAC-\d+", modal.inner_text()).group(0)
    page.click("#modal-x")

    card = page.locator(f"#panel .ticket[data-ticket='{ticket}']")
    expect(card).to_contain_text("Facilities")
    expect(card).to_contain_text("bob@example.com")
    page.locator("#tabs button", has_text="Messages").click()
    page.locator("#tabs button", has_text="Home").click()
    expect(home).to_contain_text(ticket)  # "My tickets" again, with the new one


# --- tickets from conversations (issue 14) --------------------------------------------------------


def post_as(page, user_id: str, channel_id: str, text: str):
    be(page, user_id)
    open_channel(page, channel_id)
    send(page.locator("#composer-text"), text)
    message = page.locator("#messages .message", has_text=text)
    expect(message).to_be_visible()
    return message


def bot_reply_in_thread(page, root) -> tuple[object, str]:
    """Opens the root's thread once the bot has replied there; (the reply, the ticket id)."""
    expect(root.locator(".replies")).to_be_visible()
    root.locator(".replies").click()
    reply = page.locator("#thread .message", has_text=re.compile(r"Ticket [A-Z]+-\d+ created"))
    expect(reply).to_be_visible()
    expect(reply.locator(".badge")).to_have_text("APP")
    return reply, re.search(r"[A-Z]+-\d+", reply.inner_text()).group(0)


def test_a_ticket_reaction_files_a_message_and_edit_details_changes_it(page, demo):
    root = post_as(page, "U222", "C111", "Projector in room 4 is blurry")
    be(page, "U111")
    open_channel(page, "C111")
    root.hover()
    root.locator("button[title='Add reaction']").click()
    page.locator("#menu [data-emoji=ticket]").click()
    expect(root.locator(".reaction[data-reaction=ticket]")).to_contain_text("1")
    reply, ticket = bot_reply_in_thread(page, root)
    card = page.locator(f"#panel .ticket[data-ticket='{ticket}']")
    expect(card).to_contain_text("Projector in room 4 is blurry")
    expect(card).to_contain_text("bob@example.com")  # the message's author is the requester
    expect(card.locator(".thread-link")).to_have_text([f"C111:{root.get_attribute('data-ts')}"])

    reply.locator("button", has_text="Edit details").click()
    modal = page.locator("#modal-overlay")
    expect(modal.locator("#modal-title")).to_have_text(f"Edit {ticket}")
    title = modal.locator("[data-block=edit_title] input")
    expect(title).to_have_value("Projector in room 4 is blurry")
    title.fill("Projector in room 4 is out of focus")
    modal.locator("[data-block=edit_priority] select").select_option(label="High")
    page.click("#modal-submit")
    expect(modal).to_contain_text(f"Ticket {ticket} updated")
    page.click("#modal-x")
    expect(card.locator(".ticket-title")).to_have_text("Projector in room 4 is out of focus")

    # Another reaction on the same message: "already" for that person only, no second ticket.
    be(page, "UADMIN")
    open_channel(page, "C111")
    root.hover()
    root.locator("button[title='Add reaction']").click()
    page.locator("#menu [data-emoji=ticket]").click()
    expect(root.locator(".reaction[data-reaction=ticket]")).to_contain_text("2")
    expect(page.locator("#messages .message.ephemeral", has_text=f"already has ticket {ticket}")).to_be_visible()
    expect(page.locator("#panel .ticket", has_text="Projector in room 4")).to_have_count(1)


def test_a_mention_in_a_thread_files_the_thread(page, demo):
    root = post_as(page, "U222", "C111", "Laptop will not boot")
    be(page, "U111")
    open_channel(page, "C111")
    root.hover()
    root.locator("button[title='Reply in thread']").click()
    send(page.locator("#thread-text"), "Tried the power button twice")
    send(page.locator("#thread-text"), "@Tickets Laptop dead since Monday")
    # the person's message (the bot's reply, which may already be there, quotes the title too)
    mention = page.locator("#thread .message", has_text="@Tickets Laptop dead since Monday")
    expect(mention.locator(".mention")).to_have_text("@Tickets")
    reply = page.locator("#thread .message", has_text=re.compile(r"Ticket IT-\d+ created"))
    expect(reply).to_be_visible()
    ticket = re.search(r"IT-\d+", reply.inner_text()).group(0)
    card = page.locator(f"#panel .ticket[data-ticket='{ticket}']")
    expect(card.locator(".ticket-title")).to_have_text("Laptop dead since Monday")
    expect(card.locator(".thread-link")).to_have_text([f"C111:{root.get_attribute('data-ts')}"])


def test_every_new_message_in_the_request_channel_becomes_a_ticket(page, demo):
    root = post_as(page, "U111", "C0HELP", "Need access to the finance share")
    expect(page.locator("#channel-title")).to_have_text("# help")
    reply, ticket = bot_reply_in_thread(page, root)
    expect(page.locator(f"#panel .ticket[data-ticket='{ticket}'] .ticket-title")).to_have_text(
        "Need access to the finance share")
    # A reply in its thread is no new request.
    send(page.locator("#thread-text"), "It is the Q3 folder")
    expect(page.locator("#thread .message", has_text="It is the Q3 folder")).to_be_visible()
    page.wait_for_timeout(1000)
    expect(page.locator("#panel .ticket", has_text="Q3 folder")).to_have_count(0)
    expect(root.locator(".replies")).to_have_text("2 replies")


def test_a_direct_message_gets_a_create_ticket_button(page, demo):
    be(page, "U222")
    page.locator("#dms li", has_text="Tickets").locator("a").click()
    send(page.locator("#composer-text"), "My badge does not open the garage")
    answer = page.locator("#messages .message", has_text="Want me to file this")
    answer.locator("button", has_text="Create ticket").click()
    modal = page.locator("#modal-overlay")
    expect(modal.locator("[data-block=title] input")).to_have_value("My badge does not open the garage")
    page.click("#modal-submit")
    expect(modal).to_contain_text(re.compile(r"Ticket IT-\d+ created"))
    ticket = re.search(r"IT-\d+", modal.inner_text()).group(0)
    page.click("#modal-x")
    expect(page.locator(f"#panel .ticket[data-ticket='{ticket}'] .ticket-title")).to_have_text(
        "My badge does not open the garage")


def test_the_serval_agent_panel_changes_a_ticket_and_the_slack_page_shows_it(page, browser):
    # The demo's panel links Serval's agent panel; a change there is the ticket's, as the API answers it.
    link = page.locator("#panel-link")
    expect(link).to_contain_text("Agent panel")
    agent = browser.new_context().new_page()
    errors: list = []
    agent.on("pageerror", lambda error: errors.append(error))
    agent.goto(link.get_attribute("href"))
    row = agent.locator("tr[data-ticket='IT-2']")  # seeded: "VPN drops every hour", In Progress
    expect(row).to_contain_text("VPN drops every hour")
    expect(row.locator("select[data-field=statusId] option:checked")).to_have_text("In Progress")
    row.locator("select[data-field=assignedToUserId]").select_option(label="Bob Baker")
    expect(row.locator("select[data-field=assignedToUserId] option:checked")).to_have_text("Bob Baker")
    row.locator("select[data-field=priorityId]").select_option(label="High")
    expect(row.locator("select[data-field=priorityId] option:checked")).to_have_text("High")
    # statuses come grouped as the spec's TicketStatusGroup: TODO, IN_PROGRESS, DONE, CANCELED
    groups = row.locator("select[data-field=statusId] optgroup")
    expect(groups).to_have_count(4)
    assert [groups.nth(i).get_attribute("label") for i in range(4)] == ["TODO", "IN_PROGRESS", "DONE", "CANCELED"]
    row.locator("select[data-field=statusId]").select_option(label="Done")
    expect(row).to_have_class(re.compile("done"))

    card = page.locator("#panel .ticket[data-ticket='IT-2']")
    expect(card).to_contain_text("StatusDone")
    expect(card).to_contain_text("Assigneebob@example.com")
    expect(card).to_contain_text("PriorityHigh")
    agent.context.close()
    assert not errors, errors


def test_the_workflow_step_files_a_ticket_whose_link_unfolds(page, demo):
    """Issue 23 in the demo: the channel's ⚡ Workflow button runs the app's *Create a ticket* step
    (the real bot, through the journal), its outputs name the ticket and its link, and that link
    posted in the channel unfolds into the ticket's card."""
    be(page, "U111")
    open_channel(page, "C111")
    page.click("#workflow-button")
    form = page.locator("#workflow-overlay")
    expect(form.locator("#workflow-title")).to_have_text("Create a ticket")
    form.locator("[name=title]").fill("Badge reader at the side door")
    form.locator("[name=priority]").fill("high")
    page.click("#workflow-run")
    expect(form).to_be_hidden()
    run = page.locator("#runs li.completed").last  # the run's outputs, once the bot ended it
    expect(run).to_contain_text(re.compile(r"ticket_id IT-\d+"), timeout=20_000)
    expect(run).to_contain_text("ticket_system Serval")
    link = re.search(r"https://\S+/tickets/[0-9a-f-]+", run.inner_text()).group(0)
    ticket = re.search(r"IT-\d+", run.inner_text()).group(0)

    send(page.locator("#composer-text"), f"Status of {link} please?")
    message = page.locator("#messages .message", has_text="Status of")
    unfurl = message.locator(f".unfurl[data-url='{link}']")
    expect(unfurl).to_contain_text(ticket, timeout=20_000)
    expect(unfurl).to_contain_text("Badge reader at the side door")
    expect(unfurl).to_contain_text("High")
    expect(unfurl.locator("button", has_text="View in Serval")).to_be_visible()


def test_add_to_ticket_puts_a_message_into_ones_ticket_and_connects_its_thread(page, demo):
    be(page, "U111")
    open_channel(page, "C111")
    page.click("#workflow-button")  # a ticket of Alice's to add to (made here: tests run in any order)
    form = page.locator("#workflow-overlay")
    form.locator("[name=title]").fill("Door alarm keeps beeping")
    page.click("#workflow-run")
    run = page.locator("#runs li.completed", has_text="ticket_id")
    expect(run.last).to_contain_text(re.compile(r"ticket_id IT-\d+"), timeout=20_000)
    ticket = re.search(r"ticket_id (IT-\d+)", run.last.inner_text()).group(1)

    be(page, "U222")
    open_channel(page, "C111")
    send(page.locator("#composer-text"), "The side door alarm is beeping again")
    message = page.locator("#messages .message", has_text="The side door alarm is beeping again")
    expect(message).to_be_visible()

    be(page, "U111")
    open_channel(page, "C111")
    message.hover()
    message.locator("button[title='More actions']").click()
    page.locator("#menu button", has_text="Add to ticket").click()
    modal = page.locator("#modal-overlay")
    expect(modal.locator("#modal-title")).to_have_text("Add to ticket")
    pick = modal.locator("[data-block=add_pick] select")
    expect(pick.locator("option", has_text=ticket)).to_have_count(1, timeout=20_000)  # her open tickets, once known
    pick.select_option(label=next(t for t in pick.locator("option").all_inner_texts() if t.startswith(ticket + " ")))
    page.click("#modal-submit")
    expect(modal).to_contain_text(f"Added to ticket {ticket}", timeout=20_000)
    page.click("#modal-close")
    # the message had no thread with a ticket: its thread is connected now, and the bot says so there
    message.locator(".replies").click()
    expect(page.locator("#thread")).to_contain_text(f"added this thread to ticket {ticket}")
