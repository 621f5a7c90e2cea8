"""The demo page's Workflow button and link unfurls (issue 23's stand-in), driven in Debian's headless
Chromium against the Slack stand-in and a scripted app (no bot): the app completes the step with the
run's own token and unfurls ticket links; the page shows both.

Skipped when /usr/bin/chromium or the playwright package is missing, like test_demo_browser.py."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from sandbox import slack as slack_sandbox
from sandbox._server import start_app
from sandbox.slack_ui import SlackUI

# The same skips (no playwright, no /usr/bin/chromium) and Chromium flags as the demo's browser tests.
from tests.e2e.test_demo_browser import CHROMIUM, CHROMIUM_ARGS, expect, playwright

SECRET = "page-workflow-secret"
TICKET_URL = "https://app.serval.com/tickets/9b2e7c1d-0000-4000-8000-000000000001"


class Stack(threading.Thread):
    """The stand-in and a scripted app, on their own event loop in a thread (Playwright's API is sync)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ready = threading.Event()
        self.url = ""
        self.events: list[dict] = []

    def run(self) -> None:
        asyncio.run(self.main())

    async def main(self) -> None:
        self.loop, self.stopped = asyncio.get_running_loop(), asyncio.Event()
        self.state = state = slack_sandbox.SlackState()
        tasks: set[asyncio.Task] = set()

        async def handle(request: web.Request) -> web.Response:
            body = json.loads(await request.text())
            self.events.append(body["event"])
            task = asyncio.create_task(self.act(body["event"]))  # ack first, then call Slack, as Bolt does
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return web.Response()

        app = web.Application()
        app.router.add_post("/slack/events", handle)
        app_runner, app_url = await start_app(app)
        ui = SlackUI(state, request_url=app_url + "/slack/events", signing_secret=SECRET, app_name="Tickets",
                     events=["message.channels", "link_shared", "entity_details_requested"],
                     people=["U111", "U222"], unfurl_domains=["app.serval.com"])
        slack_app = slack_sandbox.create_app(state)
        ui.install(slack_app)
        runner, self.url = await start_app(slack_app)
        self.api = self.url + "/api/"
        self.ready.set()
        await self.stopped.wait()
        await runner.cleanup()
        await app_runner.cleanup()

    async def act(self, event: dict) -> None:
        bot = AsyncWebClient(token=self.state.token, base_url=self.api)
        if event["type"] == "function_executed":
            step = AsyncWebClient(token=event["bot_access_token"], base_url=self.api)
            if event["inputs"].get("title", "").startswith("!"):
                await step.functions_completeError(function_execution_id=event["function_execution_id"],
                                                   error="The title must not start with '!' (input: title).")
            else:
                await step.functions_completeSuccess(function_execution_id=event["function_execution_id"],
                                                     outputs={"ticket_id": "IT-7", "ticket_url": TICKET_URL})
        elif event["type"] == "link_shared":
            card = [{"type": "section", "text": {"type": "mrkdwn", "text": "*IT-7* VPN drops every hour · Open"}},
                    {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
                                                                                  "text": "View in Serval"},
                                                      "url": TICKET_URL, "action_id": "view"}]}]
            entity = {"entity_type": "slack#/entities/task", "url": TICKET_URL, "app_unfurl_url": TICKET_URL,
                      "external_ref": {"id": "IT-7"}, "entity_payload": {"attributes": {"title": {"text": "VPN"}}}}
            await bot.chat_unfurl(unfurl_id=event["unfurl_id"], source=event["source"],
                                  unfurls={link["url"]: {"blocks": card} for link in event["links"]},
                                  metadata={"entities": [entity]})
        elif event["type"] == "entity_details_requested":
            await bot.api_call("entity.presentDetails", json={"trigger_id": event["trigger_id"],
                                                              "metadata": {"entity_type": "slack#/entities/task"}})

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.join(10)


@pytest.fixture(scope="module")
def stack():
    stack = Stack()
    stack.start()
    assert stack.ready.wait(10)
    yield stack
    stack.stop()


@pytest.fixture
def page(stack):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list = []
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(stack.url + "/")
        expect(page.locator("#channels li")).not_to_have_count(0)
        page.select_option("#me", "U111")
        page.click("#sidebar li[data-channel=C111] a")
        yield page
        browser.close()
        assert not errors, errors


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return result


def test_the_workflow_button_runs_the_step_and_shows_its_outputs_or_error(page, stack):
    page.click("#workflow-button")
    form = page.locator("#workflow-overlay")
    expect(form.locator("#workflow-title")).to_have_text("Create a ticket")
    page.click("#workflow-run")  # the title is required: the browser refuses first
    expect(form).to_be_visible()
    form.locator("[name=title]").fill("VPN drops every hour")
    form.locator("[name=description]").fill("Since Monday.")
    expect(form.locator("[name=requester]")).to_have_value("U111")
    expect(form.locator("[name=channel]")).to_have_value("C111")
    page.click("#workflow-run")
    expect(form).to_be_hidden()
    expect(page.locator("#runs li.completed")).to_have_text(f"create_ticket: ticket_id IT-7 · ticket_url {TICKET_URL}")
    event = next(e for e in stack.events if e["type"] == "function_executed")
    assert event["inputs"] == {"title": "VPN drops every hour", "description": "Since Monday.",
                               "requester": "U111", "channel": "C111"}

    page.click("#workflow-button")
    form.locator("[name=title]").fill("!broken")
    page.click("#workflow-run")
    expect(page.locator("#runs li.failed")).to_have_text(
        "create_ticket failed: The title must not start with '!' (input: title).")


def test_a_ticket_link_unfurls_under_the_message_and_details_reach_the_app(page, stack):
    page.locator("#composer-text").fill(f"Any news on {TICKET_URL} ?")
    page.locator("#composer-text").press("Enter")
    message = page.locator("#messages .message", has_text="Any news on")
    unfurl = message.locator(f".unfurl[data-url='{TICKET_URL}']")
    expect(unfurl).to_contain_text("IT-7 VPN drops every hour · Open")
    expect(unfurl.locator("button", has_text="View in Serval")).to_be_visible()
    unfurl.locator("button.entity-details").click()
    wait_for(lambda: stack.state.entity_details)
    assert stack.state.entity_details[0]["metadata"] == {"entity_type": "slack#/entities/task"}
