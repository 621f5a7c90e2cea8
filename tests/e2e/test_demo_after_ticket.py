"""After the ticket in `make demo`, in a browser: a ticket shared in #dev is a live card; the Serval
sandbox's agent panel changes the ticket and the card follows (the demo polls every 5 s); *Close
ticket* on the card closes it in Serval."""

from __future__ import annotations

import re

from tests.e2e.test_demo_browser import be, browser, demo, expect, open_channel, page, send  # noqa: F401

FOLLOW = 20_000  # ms: a poll (5 s in the demo) and the page's long poll, with room to spare


def test_the_agent_panel_changes_the_card_and_close_ticket_closes_it(page, browser):  # noqa: F811
    be(page, "U111")
    open_channel(page, "C111")
    send(page.locator("#composer-text"), "/ticket Monitor flickers")
    modal = page.locator("#modal-overlay")
    expect(modal.locator("[data-block=title] input")).to_have_value("Monitor flickers")
    modal.locator("[data-block=share] input[type=checkbox]").check()
    page.click("#modal-submit")
    expect(modal).to_contain_text(re.compile(r"Ticket IT-\d+ created"))
    ticket = re.search(r"IT-\d+", modal.inner_text()).group(0)
    page.click("#modal-close")

    card = page.locator("#messages .message", has_text=f"opened ticket {ticket}")
    expect(card).to_contain_text("Status: Open")
    expect(card.locator("button", has_text="Close ticket")).to_be_visible()
    expect(card.locator("button", has_text="Add a comment")).to_be_visible()

    agent = browser.new_context().new_page()
    agent.goto(page.locator("#panel-link").get_attribute("href"))
    row = agent.locator(f"tr[data-ticket='{ticket}']")
    expect(row).to_contain_text("Monitor flickers")
    row.locator("select[data-field=assignedToUserId]").select_option(label="Bob Baker")
    row.locator("select[data-field=statusId]").select_option(label="In Progress")
    expect(card).to_contain_text("Status: In Progress", timeout=FOLLOW)
    expect(card).to_contain_text("Assignee: Bob Baker", timeout=FOLLOW)

    card.locator("button", has_text="Close ticket").click()
    expect(card).to_contain_text("Status: Done", timeout=FOLLOW)
    expect(card.locator("button", has_text="Reopen")).to_be_visible()
    agent.reload()
    expect(agent.locator(f"tr[data-ticket='{ticket}'] select[data-field=statusId] option:checked")).to_have_text("Done")
    agent.context.close()
