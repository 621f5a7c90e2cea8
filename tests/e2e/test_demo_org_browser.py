"""`make demo ARGS=--org` in a browser: Add to Slack through the stand-in's authorize page (Bolt's state
cookie kept by Chromium on a loopback address), then a ticket from the org's second workspace."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.test_demo_browser import ROOT, browser, expect, send  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def org_demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo-org")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.demo", "--org", "--data-dir", str(data)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and not re.search(r"/healthz", "".join(output)) and proc.poll() is None:
        time.sleep(0.1)
    try:
        url = re.search(r"^\s+(http://\S+/)$", "".join(output), re.M)
        if url is None:
            pytest.fail("the demo did not print its URL:\n" + "".join(output))
        yield url.group(1), "".join(output)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_add_to_slack_then_a_ticket_from_the_second_workspace(browser, org_demo):  # noqa: F811
    url, printed = org_demo
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    errors: list = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(url)
    link = page.locator("#install-link")
    expect(link).to_be_visible()
    install_url = link.get_attribute("href")
    assert install_url and install_url.endswith("/slack/install") and install_url in printed

    # Add to Slack: the bot's page, Slack's authorize page (the whole org), Allow, back to the bot.
    install = context.new_page()
    install.goto(install_url)
    install.locator("a[href*='oauth/v2/authorize']").first.click()
    expect(install.locator("h1")).to_contain_text("the whole Sandbox Org organisation")
    install.click("#allow")
    # Bolt's success page leads on to the org's page for the app (the stand-in's), which leads back.
    expect(install.locator("h1")).to_have_text("The app is installed in the whole Sandbox Org organisation")
    expect(install.locator("li")).to_have_text(["Sandbox", "Sandbox West"])
    install.close()

    # The second workspace: its own channels and people; /ticket there opens the form.
    page.select_option("#workspace", "T0WEST")
    expect(page.locator("body")).to_have_attribute("data-me", "U0CAROL")
    expect(page.locator("#team-name")).to_have_text("Sandbox West")
    expect(page.locator("#sidebar li[data-channel=C111]")).to_have_count(0)
    page.click("#sidebar li[data-channel=C0WESTHELP] a")
    send(page.locator("#composer-text"), "/ticket Monitor flickers")
    expect(page.locator("#modal-overlay #modal-title")).to_have_text("New ticket")
    context.close()
    assert not errors, errors
