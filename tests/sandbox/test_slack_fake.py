"""The Slack Web API stand-in, driven by the real slack_sdk AsyncWebClient (so slack_sdk parses its answers)."""
import asyncio
import copy
import json

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackState, start

FIXTURE_TRIGGER = "13345224609.738474920.8088930838d88f008e0"  # from Slack's slash command docs


@pytest.fixture
async def slack():
    state = SlackState()
    runner, base_url = await start(state)
    client = AsyncWebClient(token="xoxb-test", base_url=base_url)
    yield state, client
    await runner.cleanup()


async def api_error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


def modal(**over) -> dict:
    view = {
        "type": "modal", "callback_id": "ticket", "private_metadata": '{"channel":"C111"}',
        "title": {"type": "plain_text", "text": "Create ticket"},
        "submit": {"type": "plain_text", "text": "Create"},
        "blocks": [
            {"type": "input", "block_id": "title", "label": {"type": "plain_text", "text": "Title"},
             "element": {"type": "plain_text_input", "action_id": "v", "max_length": 200, "initial_value": "hi"}},
            {"type": "input", "block_id": "prio", "label": {"type": "plain_text", "text": "Priority"},
             "element": {"type": "static_select", "action_id": "v",
                         "options": [{"text": {"type": "plain_text", "text": "High"}, "value": "high"}],
                         "initial_option": {"text": {"type": "plain_text", "text": "High"}, "value": "high"}}},
            {"type": "input", "block_id": "due", "optional": True, "label": {"type": "plain_text", "text": "Due"},
             "element": {"type": "datepicker", "action_id": "v", "initial_date": "2024-02-29"}},
        ],
    }
    view.update(over)
    return view


async def test_auth_test_and_bad_tokens(slack):
    state, client = slack
    resp = await client.auth_test()
    assert resp["user_id"] == "UBOT" and resp["team_id"] == "T111" and resp["bot_id"]
    bad = await api_error(AsyncWebClient(token="xoxb-wrong", base_url=client.base_url).auth_test())
    assert bad.response["error"] == "invalid_auth"
    missing = await api_error(AsyncWebClient(base_url=client.base_url).auth_test())
    assert missing.response["error"] == "not_authed"
    assert [c["method"] for c in state.calls] == ["auth.test"] * 3


async def test_views_open_returns_a_slack_view(slack):
    state, client = slack
    resp = await client.views_open(trigger_id=FIXTURE_TRIGGER, view=modal())
    view = resp["view"]
    assert view["id"].startswith("V") and view["hash"] and view["state"] == {"values": {}}
    assert view["callback_id"] == "ticket" and view["private_metadata"] == '{"channel":"C111"}'
    assert state.views[view["id"]]["title"]["text"] == "Create ticket"
    assert state.calls_to("views.open")[0]["args"]["view"]["callback_id"] == "ticket"


def _set(path, value):
    def mutate(view):
        *parents, last = path
        target = view
        for key in parents:
            target = target[key]
        target[last] = value
        return view
    return mutate


def _opt(text="x", value="x"):
    return {"text": {"type": "plain_text", "text": text}, "value": value}


BAD_VIEWS = {
    "title_too_long": (_set(["title", "text"], "x" * 25), "/view/title/text"),
    "submit_too_long": (_set(["submit", "text"], "x" * 25), "/view/submit/text"),
    "too_many_blocks": (_set(["blocks"], [{"type": "divider"}] * 101), "/view/blocks"),
    "private_metadata": (_set(["private_metadata"], "x" * 3001), "/view/private_metadata"),
    "callback_id": (_set(["callback_id"], "x" * 256), "/view/callback_id"),
    "max_length": (_set(["blocks", 0, "element", "max_length"], 3001), "/view/blocks/0/element/max_length"),
    "initial_value": (_set(["blocks", 0, "element", "initial_value"], "x" * 201),
                      "/view/blocks/0/element/initial_value"),
    "option_text": (_set(["blocks", 1, "element", "options"], [_opt(text="x" * 76)]),
                    "/view/blocks/1/element/options/0/text/text"),
    "option_value": (_set(["blocks", 1, "element", "options"], [_opt(value="x" * 151)]),
                     "/view/blocks/1/element/options/0/value"),
    "too_many_options": (_set(["blocks", 1, "element", "options"], [_opt(value=str(i)) for i in range(101)]),
                         "/view/blocks/1/element/options"),
    "initial_option_unknown": (_set(["blocks", 1, "element", "initial_option"], _opt("Low", "low")),
                               "/view/blocks/1/element/initial_option"),
    "duplicate_block_id": (_set(["blocks", 1, "block_id"], "title"), "/view/blocks/1/block_id"),
    "input_without_label": (_set(["blocks", 0, "label"], None), "/view/blocks/0/label"),
    "input_without_element": (_set(["blocks", 0, "element"], None), "/view/blocks/0"),
    "bad_date": (_set(["blocks", 2, "element", "initial_date"], "2024-02-30"), "/view/blocks/2/element/initial_date"),
    "input_without_submit": (_set(["submit"], None), "/view"),
    "not_a_modal": (_set(["type"], "home"), "/view/type"),
}


@pytest.mark.parametrize("case", sorted(BAD_VIEWS))
async def test_views_open_rejects_what_slack_rejects(slack, case):
    state, client = slack
    mutate, pointer = BAD_VIEWS[case]
    err = await api_error(client.views_open(trigger_id=FIXTURE_TRIGGER, view=mutate(copy.deepcopy(modal()))))
    assert err.response["error"] == "invalid_arguments"
    messages = err.response["response_metadata"]["messages"]
    assert any(m.startswith("[ERROR]") and m.endswith(f"[json-pointer:{pointer}]") for m in messages), messages
    assert state.views == {}


async def test_trigger_ids_strict(slack):
    state, client = slack
    state.strict_triggers = True
    err = await api_error(client.views_open(trigger_id=FIXTURE_TRIGGER, view=modal()))
    assert err.response["error"] == "invalid_trigger_id"
    trigger = state.issue_trigger_id()
    assert (await client.views_open(trigger_id=trigger, view=modal()))["ok"]
    err = await api_error(client.views_open(trigger_id=trigger, view=modal()))
    assert err.response["error"] == "exchanged_trigger_id"
    state.trigger_ttl = 0.05
    late = state.issue_trigger_id()
    await asyncio.sleep(0.1)
    err = await api_error(client.views_open(trigger_id=late, view=modal()))
    assert err.response["error"] == "expired_trigger_id"
    assert len(state.views) == 1


async def test_views_update_hash_and_publish(slack):
    state, client = slack
    opened = (await client.views_open(trigger_id=FIXTURE_TRIGGER, view=modal()))["view"]
    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"],
                                         view=modal(callback_id="step2")))["view"]
    assert updated["id"] == opened["id"] and state.views[opened["id"]]["callback_id"] == "step2"
    err = await api_error(client.views_update(view_id=opened["id"], hash="1.stale", view=modal()))
    assert err.response["error"] == "hash_conflict"
    err = await api_error(client.views_update(view_id="VNOPE", view=modal()))
    assert err.response["error"] == "not_found"
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]}
    await client.views_publish(user_id="U111", view=home)
    assert state.home_views["U111"]["blocks"][0]["text"]["text"] == "*hi*"


async def test_post_message_in_channel_and_thread(slack):
    state, client = slack
    root = await client.chat_postMessage(channel="C111", text="root")
    assert root["channel"] == "C111" and root["message"]["text"] == "root" and root["message"]["bot_id"]
    reply = await client.chat_postMessage(channel="C111", thread_ts=root["ts"], text="reply",
                                          blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*r*"}}])
    assert float(reply["ts"]) > float(root["ts"])
    stored = state.messages["C111"]
    assert [m["text"] for m in stored] == ["root", "reply"]
    assert stored[1]["thread_ts"] == root["ts"] and stored[1]["blocks"][0]["type"] == "section"
    assert stored[0]["reply_count"] == 1
    replies = await client.conversations_replies(channel="C111", ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["root", "reply"]


async def test_form_encoded_blocks_are_decoded(slack):
    state, client = slack
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "form"}}]
    await client.api_call("chat.postMessage", data={"channel": "C123", "text": "t", "blocks": json.dumps(blocks)})
    assert state.messages["C123"][0]["blocks"] == blocks


async def test_post_with_user_id_opens_dm(slack):
    state, client = slack
    resp = await client.chat_postMessage(channel="U111", text="psst")
    assert resp["channel"] == "DU111" and state.channels["DU111"]["is_im"]
    assert state.messages["DU111"][0]["text"] == "psst"
    known_im = await client.chat_postMessage(channel="U0D15K92L", text="hello")
    assert known_im["channel"] == "D0LFFBKLZ"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_post_message_errors(slack):
    state, client = slack
    state.add_channel("C999", "secret", bot_is_member=False)
    assert (await api_error(client.chat_postMessage(channel="C999", text="x"))).response["error"] == "not_in_channel"
    err = await api_error(client.chat_postMessage(channel="nope", text="x"))
    assert err.response["error"] == "channel_not_found"
    assert (await api_error(client.chat_postMessage(channel="C111"))).response["error"] == "no_text"
    err = await api_error(client.chat_postMessage(channel="C111", text="x" * 40001))
    assert err.response["error"] == "msg_too_long"
    err = await api_error(client.chat_postEphemeral(channel="C999", user="U111", text="x"))
    assert err.response["error"] == "not_in_channel"
    assert not state.messages.get("C999") and not state.messages.get("C111")


async def test_post_ephemeral(slack):
    state, client = slack
    resp = await client.chat_postEphemeral(channel="C111", user="U111", text="only you")
    assert resp["message_ts"] and state.ephemeral[0]["user"] == "U111" and not state.messages.get("C111")
    err = await api_error(client.chat_postEphemeral(channel="C111", user="UNOBODY", text="x"))
    assert err.response["error"] == "user_not_in_channel"


async def test_get_permalink_formats(slack):
    state, client = slack
    root = state.post_user_message("C111", "U111", "help")
    reply = state.post_user_message("C111", "U222", "me too", thread_ts=root["ts"])
    link = (await client.chat_getPermalink(channel="C111", message_ts=root["ts"]))["permalink"]
    assert link == f"https://example.slack.com/archives/C111/p{root['ts'].replace('.', '')}"
    link = (await client.chat_getPermalink(channel="C111", message_ts=reply["ts"]))["permalink"]
    assert link == (f"https://example.slack.com/archives/C111/p{reply['ts'].replace('.', '')}"
                    f"?thread_ts={root['ts']}&cid=C111")


async def test_users_info(slack):
    state, client = slack
    alice = (await client.users_info(user="U111"))["user"]
    assert alice["profile"]["email"] == "alice@example.com" and alice["name"] == "alice"
    assert (await api_error(client.users_info(user="UNOPE"))).response["error"] == "user_not_found"
    assert "email" not in (await client.users_info(user="UNOEMAIL"))["user"]["profile"]
    state.add_user("UHIDDEN", email="hidden@example.com", email_visible=False)
    assert "email" not in (await client.users_info(user="UHIDDEN"))["user"]["profile"]
    assert (await client.users_lookupByEmail(email="bob@example.com"))["user"]["id"] == "U222"


async def test_rate_limit_429_and_retry_handler(slack):
    state, client = slack
    state.rate_limit("chat.postMessage", times=1, retry_after=3)
    err = await api_error(client.chat_postMessage(channel="C111", text="x"))
    assert err.response.status_code == 429 and err.response["error"] == "ratelimited"
    assert err.response.headers["Retry-After"] == "3"

    state.rate_limit("chat.postMessage", times=1, retry_after=0)
    retrying = AsyncWebClient(token="xoxb-test", base_url=client.base_url,
                              retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    resp = await retrying.chat_postMessage(channel="C111", text="after retry")
    assert resp["ok"] and [c["status"] for c in state.calls_to("chat.postMessage")] == [429, 429, 200]
    assert [m["text"] for m in state.messages["C111"]] == ["after retry"]


async def test_fail_once(slack):
    state, client = slack
    state.fail("users.info", "fatal_error")
    assert (await api_error(client.users_info(user="U111"))).response["error"] == "fatal_error"
    assert (await client.users_info(user="U111"))["ok"]


async def test_delay_per_method_is_drawn_from_the_seeded_rng(slack):
    state, client = slack
    state.delay("users.info", 0.2, up_to=0.3)
    started = asyncio.get_running_loop().time()
    assert (await client.users_info(user="U111"))["ok"]
    assert asyncio.get_running_loop().time() - started >= 0.2
    draws = [state.latency("users.info") for _ in range(50)]
    assert all(0.2 <= d <= 0.3 for d in draws) and len(set(draws)) == 50
    again = SlackState(seed=state.seed)
    again.delay("users.info", 0.2, up_to=0.3)
    assert [again.latency("users.info") for _ in range(51)][1:] == draws  # the first went to the call above
    assert state.latency("auth.test") == 0.0
    state.delay("users.info", 0)
    assert state.latency("users.info") == 0.0


async def test_wait_for(slack):
    state, client = slack

    async def later():
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel="C111", text="later")

    task = asyncio.create_task(later())
    calls = await state.wait_for("chat.postMessage", timeout=2)
    assert calls[0]["args"]["text"] == "later"
    await task
    with pytest.raises(TimeoutError):
        await state.wait_for("chat.postMessage", count=2, timeout=0.05)


async def test_unknown_method_and_control_endpoints(slack):
    state, client = slack
    err = await api_error(client.api_call("chat.nope"))
    assert err.response.status_code == 404 and err.response["error"] == "unknown_method"
    await client.chat_postMessage(channel="C111", text="x")
    root = client.base_url[: -len("api/")]
    async with aiohttp.ClientSession() as http:
        async with http.get(root + "_sandbox/state") as r:
            dump = await r.json()
        assert [c["method"] for c in dump["calls"]] == ["chat.nope", "chat.postMessage"]
        assert dump["messages"]["C111"][0]["text"] == "x"
        async with http.post(root + "_sandbox/reset") as r:
            assert (await r.json())["ok"]
    assert state.calls == [] and not state.messages and "U111" in state.users


async def test_a_delay_for_the_next_calls_only(slack):
    state, client = slack
    state.delay("users.info", 0.3, times=1)
    started = asyncio.get_running_loop().time()
    assert (await client.users_info(user="U111"))["ok"]
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert state.latency("users.info") == 0.0  # only the next call was slow
