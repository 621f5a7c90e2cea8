"""Local stand-in for Slack's Web API, written from Slack's method documentation.

It answers ``POST /api/<method>`` (GET with a query string works too) the way slack.com does:
Slack-shaped JSON with ``ok`` and ``error``, form-encoded or JSON bodies, the token in
``Authorization: Bearer ...`` (or a ``token`` field). Every call is recorded in ``SlackState.calls``.

By hand::

    .venv/bin/python -m sandbox.slack --port 8082          # prints http://127.0.0.1:8082/api/
    curl -s -H 'Authorization: Bearer xoxb-test' -d channel=C111 -d text=hi \
         http://127.0.0.1:8082/api/chat.postMessage
    curl -s http://127.0.0.1:8082/_sandbox/state            # calls, messages, views (not Slack)
    curl -s -X POST http://127.0.0.1:8082/_sandbox/trigger  # a fresh trigger_id (3 s, single use)
    curl -s -X POST http://127.0.0.1:8082/_sandbox/reset

Events: ``SlackState.message_event`` / ``mention_event`` / ``reaction_event`` build the ``event``
Slack sends for a stored message or reaction, and ``event_callback`` wraps one in the Events API
envelope (``sandbox/slack_ui.py`` signs and sends them).

In tests::

    state = SlackState()
    runner, base_url = await start(state)
    client = AsyncWebClient(token="xoxb-test", base_url=base_url)
    ...
    await state.wait_for("chat.postMessage")
    await runner.cleanup()

Workflow steps (custom functions): ``state.function_executed_event(callback_id, inputs, user=...)`` starts an
execution and returns the ``function_executed`` event (with ``function_execution_id`` and a per-execution
``bot_access_token``, which this stand-in then accepts as a token; each call records ``execution`` = the
execution id whose token it used, else None); ``functions.completeSuccess`` / ``functions.completeError``
end it, recorded in ``state.executions[id]`` (``state``: running | completed | failed, ``outputs``, ``error``).
The function's definition comes from ``state.app_functions`` (the manifest's ``functions``; default: the
documented ``create_ticket`` of shared/slack/payloads). Unfurls: ``state.unfurl_domains`` (the manifest's
``features.unfurl_domains``); ``state.link_shared_event(channel, message)`` builds the ``link_shared`` event for a
message's links in those domains; ``chat.unfurl`` records ``state.unfurls["<channel>:<ts>"] = {url: unfurl}``
(and ``state.unfurl_metadata``). ``entity.presentDetails`` calls are recorded in ``state.entity_details``.

Installs by OAuth (https://docs.slack.dev/authentication/installing-with-oauth): the app's credentials are
``state.client_id`` / ``state.client_secret``; ``state.add_workspace(team_id, name, enterprise_id=...)`` adds a
workspace (``T111`` is the first); ``state.approve(team_id)`` is a person approving the install on Slack's
authorize page (``state.approve(enterprise_id=..., org=True)``: an org-wide install) and returns the ``code``
Slack redirects back with (or, in a browser: ``GET /oauth/v2/authorize`` shows that page, and *Allow* sends
the browser to ``state.redirect_uri`` with the code and the state; after an org-wide install Bolt's page
sends it on to ``<state.enterprise_url>manage/organization/apps/profile/<app>/workspaces/add``, served here
as a page listing the org's workspaces); ``oauth.v2.access`` exchanges it (once) for a bot token of that workspace (or org;
``team`` null and ``is_enterprise_install`` true), with a refresh token when ``state.token_rotation`` is set
(``grant_type=refresh_token`` then gives a new pair; the old token stops working at once, stricter than
Slack, where it lasts until it expires, so that a test sees the new one used). A token serves its own workspace (an org's: every
workspace of the org): a channel, a person or a trigger of another workspace known here is refused as
Slack does (``channel_not_found``, ``user_not_found``, ``invalid_trigger_id``); each call records ``team``,
the workspace (or org) of the token it used. ``state.uninstall(team_id)`` revokes that install's tokens and
returns the ``app_uninstalled`` event (``state.revoke_tokens(team_id)``: ``tokens_revoked``); ``auth.revoke``
revokes the token it is called with.

Misbehaviour per method: ``state.rate_limit(method)`` (HTTP 429), ``state.fail(method, error)`` (an
``ok: false`` answer), ``state.delay(method, 0.5, up_to=4.0)`` (each call answered after a time drawn
from ``random.Random(seed)``).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import html
import copy
import hashlib
import itertools
import json
import random
import re
import secrets
import time
import warnings
from collections import defaultdict
from datetime import date
from urllib.parse import urlparse

from aiohttp import web

JSON_ARGS = ("view", "blocks", "attachments", "metadata", "unfurls", "outputs")  # may arrive as JSON strings in form bodies
SELECTS = {"static_select", "multi_static_select", "radio_buttons", "checkboxes", "overflow"}
MAX_OPTIONS = {"radio_buttons": 10, "checkboxes": 10, "overflow": 5}  # everything else: 100
KNOWN_BLOCKS = {"actions", "context", "divider", "file", "header", "image", "input", "section",
                "rich_text", "video", "markdown"}


# The documented create_ticket step (shared/slack/payloads/function_executed.DERIVED.create_ticket.json), in
# the manifest's form; ``SlackState.app_functions`` holds the app's own (the demo reads manifest.yml).
DEFAULT_FUNCTIONS = {"create_ticket": {
    "title": "Create a ticket", "description": "File a help-desk ticket",
    "input_parameters": {"properties": {
        "title": {"type": "string", "title": "Title", "description": "What is wrong"},
        "description": {"type": "string", "title": "Description"},
        "requester": {"type": "slack#/types/user_id", "title": "Requester"},
        "channel": {"type": "slack#/types/channel_id", "title": "Channel"}}, "required": ["title", "requester"]},
    "output_parameters": {"properties": {
        "ticket_id": {"type": "string", "title": "Ticket id"},
        "ticket_url": {"type": "string", "title": "Ticket link"}}, "required": ["ticket_id"]}}}


class SlackError(Exception):
    """Raised inside a handler to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, messages: list[str] | None = None):
        super().__init__(error)
        self.error, self.messages = error, messages


def _err(ptr: str, msg: str) -> str:
    return f"[ERROR] {msg} [json-pointer:{ptr}]"


# ---------------------------------------------------------------- block kit validation
def _text(errs, obj, ptr, limit, *, plain=True, required=True):
    if obj is None:
        if required:
            errs.append(_err(ptr, f"missing required field: {ptr.rsplit('/', 1)[-1]}"))
        return
    kinds = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        errs.append(_err(f"{ptr}/type", f"must be one of {', '.join(kinds)}"))
    elif not isinstance(obj.get("text"), str) or not obj["text"]:
        errs.append(_err(f"{ptr}/text", "must be more than 0 characters"))
    elif len(obj["text"]) > limit:
        errs.append(_err(f"{ptr}/text", f"must be less than {limit + 1} characters"))


def _max_len(errs, value, ptr, limit):
    if value is not None and len(str(value)) > limit:
        errs.append(_err(ptr, f"must be less than {limit + 1} characters"))


def _option(errs, opt, ptr, plain):
    if not isinstance(opt, dict):
        errs.append(_err(ptr, "must be an option object"))
        return
    _text(errs, opt.get("text"), f"{ptr}/text", 75, plain=plain)
    if opt.get("value") is None:
        errs.append(_err(ptr, "missing required field: value"))
    _max_len(errs, opt.get("value"), f"{ptr}/value", 150)
    _text(errs, opt.get("description"), f"{ptr}/description", 75, plain=plain, required=False)


def _option_key(opt) -> tuple:
    return (opt.get("value"), (opt.get("text") or {}).get("text")) if isinstance(opt, dict) else (None, None)


def _element(errs, el, ptr):
    if not isinstance(el, dict) or not el.get("type"):
        errs.append(_err(ptr, "missing required field: type"))
        return
    kind = el["type"]
    _max_len(errs, el.get("action_id"), f"{ptr}/action_id", 255)
    _text(errs, el.get("placeholder"), f"{ptr}/placeholder", 150, required=False)
    if kind == "plain_text_input":
        for key in ("min_length", "max_length"):
            if el.get(key) is not None and (not isinstance(el[key], int) or not 0 <= el[key] <= 3000):
                errs.append(_err(f"{ptr}/{key}", "must be an integer between 0 and 3000"))
        max_length = el.get("max_length") if isinstance(el.get("max_length"), int) else 3000
        _max_len(errs, el.get("initial_value"), f"{ptr}/initial_value", min(max_length, 3000))
    elif kind in SELECTS:
        plain, groups = kind not in ("radio_buttons", "checkboxes"), el.get("option_groups") or []
        if el.get("options") is None and not groups:
            errs.append(_err(ptr, "missing required field: options"))
        if len(groups) > 100:
            errs.append(_err(f"{ptr}/option_groups", "must provide no more than 100 items"))
        lists = [(f"{ptr}/options", el.get("options") or [], MAX_OPTIONS.get(kind, 100))]
        lists += [(f"{ptr}/option_groups/{g}/options", grp.get("options") or [], 100) for g, grp in enumerate(groups)]
        known = set()
        for path, options, limit in lists:
            if len(options) > limit:
                errs.append(_err(path, f"must provide no more than {limit} items"))
            for i, opt in enumerate(options):
                _option(errs, opt, f"{path}/{i}", plain)
                known.add(_option_key(opt))
        key = "initial_option" if el.get("initial_option") else "initial_options"
        chosen = [el["initial_option"]] if key == "initial_option" else el.get("initial_options") or []
        if any(_option_key(opt) not in known for opt in chosen):
            errs.append(_err(f"{ptr}/{key}", "must match one of the provided options"))
    elif kind == "datepicker" and el.get("initial_date") is not None:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", el["initial_date"]):
                raise ValueError
            date.fromisoformat(el["initial_date"])
        except (TypeError, ValueError):
            errs.append(_err(f"{ptr}/initial_date", "must be a valid date in the format YYYY-MM-DD"))


def validate_blocks(blocks, ptr: str, max_blocks: int) -> list[str]:
    """Check a list of Block Kit blocks; return Slack-style ``[ERROR] ...`` messages."""
    errs: list[str] = []
    if not isinstance(blocks, list):
        return [_err(ptr, "must be an array")]
    if len(blocks) > max_blocks:
        errs.append(_err(ptr, f"must provide no more than {max_blocks} items"))
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        p = f"{ptr}/{i}"
        if not isinstance(block, dict) or block.get("type") not in KNOWN_BLOCKS:
            errs.append(_err(p, "failed to match all allowed schemas"))
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            _max_len(errs, block_id, f"{p}/block_id", 255)
            if block_id in seen:
                errs.append(_err(f"{p}/block_id", f"non-unique block_id: {block_id}"))
            seen.add(block_id)
        kind = block["type"]
        if kind == "input":
            _text(errs, block.get("label"), f"{p}/label", 2000)
            _text(errs, block.get("hint"), f"{p}/hint", 2000, required=False)
            if block.get("element") is None:
                errs.append(_err(p, "missing required field: element"))
            else:
                _element(errs, block["element"], f"{p}/element")
        elif kind == "section":
            if block.get("text") is None and not block.get("fields"):
                errs.append(_err(p, "must provide text or fields"))
            _text(errs, block.get("text"), f"{p}/text", 3000, plain=False, required=False)
            for f, field in enumerate(block.get("fields") or []):
                _text(errs, field, f"{p}/fields/{f}", 2000, plain=False)
            if block.get("accessory") is not None:
                _element(errs, block["accessory"], f"{p}/accessory")
        elif kind == "header":
            _text(errs, block.get("text"), f"{p}/text", 150)
        elif kind == "actions":
            for e, el in enumerate(block.get("elements") or []):
                _element(errs, el, f"{p}/elements/{e}")
        elif kind == "context" and len(block.get("elements") or []) > 10:
            errs.append(_err(f"{p}/elements", "must provide no more than 10 items"))
    return errs


def validate_view(view, types: tuple[str, ...] = ("modal",)) -> list[str]:
    """Check a view payload like views.open/update/push/publish do."""
    if not isinstance(view, dict):
        return [_err("/view", "failed to match all allowed schemas")]
    errs: list[str] = []
    if view.get("type") not in types:
        errs.append(_err("/view/type", f"must be one of {', '.join(types)}"))
    if view.get("type") == "modal":
        _text(errs, view.get("title"), "/view/title", 24)
        _text(errs, view.get("submit"), "/view/submit", 24, required=False)
        _text(errs, view.get("close"), "/view/close", 24, required=False)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and view.get("submit") is None:
            errs.append(_err("/view", "must provide a submit property when using input blocks"))
    if "blocks" not in view:
        errs.append(_err("/view", "missing required field: blocks"))
    else:
        errs += validate_blocks(view["blocks"], "/view/blocks", 100)
    _max_len(errs, view.get("private_metadata"), "/view/private_metadata", 3000)
    _max_len(errs, view.get("callback_id"), "/view/callback_id", 255)
    _max_len(errs, view.get("external_id"), "/view/external_id", 255)
    return errs


# ---------------------------------------------------------------- state
class SlackState:
    """Everything the stand-in knows; tests read and seed it directly."""

    def __init__(self, token: str = "xoxb-test", *, strict_triggers: bool = False,
                 strict_messages: bool = False, trigger_ttl: float = 3.0, seed: int = 0):
        self.token, self.strict_triggers, self.strict_messages = token, strict_triggers, strict_messages
        self.seed = seed  # latencies drawn by ``delay`` come from random.Random(seed)
        self.trigger_ttl = trigger_ttl
        self.team_id, self.team, self.domain = "T111", "Sandbox", "example"
        self.enterprise_id: str | None = None  # set: the workspace belongs to this Enterprise Grid org
        self.client_id, self.client_secret = "1111.2222", "sandbox-client-secret"  # the app's, for oauth.v2.access
        self.token_rotation = False  # oauth.v2.access gives refresh tokens and tokens that expire
        self.token_expires_in = 43200  # seconds, with token rotation
        self.redirect_uri = ""  # the app's Redirect URL (its OAuth settings): where the authorize page sends people back
        self.org_install_enterprise: str | None = None  # set: the authorize page installs in that whole org
        # The org's address (auth.test's `url` for an org token): Bolt's success page sends the browser to its
        # page for adding the app to the org's workspaces, which the stand-in serves when this is its own URL.
        self.enterprise_url = "https://sandbox-org.enterprise.slack.com/"
        self.bot_user_id, self.bot_id, self.app_id = "UBOT", "BBOT", "ASANDBOX"
        # What the app's manifest declares: its custom functions (workflow steps) and unfurl domains.
        self.app_functions: dict[str, dict] = copy.deepcopy(DEFAULT_FUNCTIONS)
        self.unfurl_domains: list[str] = []
        self.listeners: list = []  # called with each recorded call, as it happens (the demo's UI)
        self.reset()

    def reset(self) -> None:
        """Forget calls, messages, views and injected failures; seed the default workspace again."""
        self.users: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}
        self.messages: dict[str, list[dict]] = defaultdict(list)
        self.ephemeral: list[dict] = []
        self.views: dict[str, dict] = {}
        self.home_views: dict[str, dict] = {}
        self.calls: list[dict] = []
        # conversations.replies for a commercially distributed non-Marketplace app: at most this
        # many messages a page (Slack: 15 since 2025-05-29); None: Tier 3, as internal apps get.
        self.replies_max_limit: int | None = None
        self.triggers: dict[str, float | None] = {}  # trigger_id -> issued at (None once used)
        self.executions: dict[str, dict] = {}       # function_execution_id -> the run and its outcome
        self.execution_tokens: dict[str, str] = {}  # bot_access_token -> function_execution_id
        self.shared_links: dict[str, dict] = {}     # unfurl_id -> {channel, ts, links} (link_shared sent)
        self.unfurls: dict[str, dict] = {}          # "<channel>:<ts>" -> {url: unfurl}, as chat.unfurl set them
        self.unfurl_metadata: dict[str, dict] = {}  # "<channel>:<ts>" -> chat.unfurl's metadata (Work Objects)
        self.entity_details: list[dict] = []        # entity.presentDetails calls' arguments
        self._failures: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
        self._delays: dict[str, tuple[float, float, int | None]] = {}  # method -> (least, most, calls left)
        self.rng = random.Random(self.seed)
        self._seq = itertools.count(1)
        # Installs by OAuth: the workspaces this Slack knows, the codes approved, the tokens issued.
        self.workspaces: dict[str, dict] = {}
        self.codes: dict[str, dict] = {}          # code -> the install approved (single use)
        self.bot_tokens: dict[str, dict] = {}     # bot token -> {team_id, enterprise_id, is_enterprise_install, ...}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> the bot token it renews
        self.channel_teams: dict[str, str] = {}   # channel id -> its workspace (absent: the first one)
        self.add_workspace(self.team_id, self.team, domain=self.domain)
        for uid, name, email in [("U111", "alice", "alice@example.com"), ("W111", "alice", "alice@example.com"),
                                 ("U222", "bob", "bob@example.com"), ("W222", "bob", "bob@example.com"),
                                 ("U0D15K92L", "dr_maomao", "dr_maomao@example.com"),
                                 ("U0MJRG1AL", "u0mjrg1al", "u0mjrg1al@example.com"),
                                 ("U2147483697", "steve", "steve@example.com"),
                                 ("U2CERLKJA", "u2cerlkja", "u2cerlkja@example.com")]:
            self.add_user(uid, email=email, name=name)
        self.add_user("UADMIN", email="admin@example.com", name="admin", is_admin=True)
        self.add_user("UNOEMAIL", email=None, name="noemail")
        self.add_user("UDELETED", email="former@example.com", name="former", deleted=True)
        self.add_user(self.bot_user_id, email=None, name="sandbox-bot", is_bot=True)
        self.add_channel("C111", "dev")
        self.add_channel("C123", "general")
        self.add_channel("D0LFFBKLZ", "D0LFFBKLZ", is_im=True, user="U0D15K92L")

    # seeding -----------------------------------------------------------------
    def add_user(self, id: str, *, email: str | None = None, name: str | None = None, is_admin: bool = False,
                 deleted: bool = False, email_visible: bool = True, is_bot: bool = False,
                 real_name: str | None = None, team_id: str | None = None, enterprise_id: str | None = None,
                 is_org_admin: bool = False) -> dict:
        """``team_id``: the person's own workspace (another one for a Slack Connect guest, whose
        ``is_admin`` is about that workspace); ``enterprise_id``: their Enterprise Grid org, with
        ``is_org_admin`` for its admins (users.info's ``enterprise_user``)."""
        name = name or id.lower()
        real_name = real_name or name.replace(".", " ").title()
        team_id = team_id or self.team_id
        profile = {"real_name": real_name, "display_name": name, "image_72": f"https://example.com/{id}_72.png",
                   "team": team_id}
        if email and email_visible:
            profile["email"] = email
        user = {"id": id, "team_id": team_id, "name": name, "real_name": real_name, "deleted": deleted,
                "is_admin": is_admin, "is_owner": False, "is_bot": is_bot, "tz": "America/Los_Angeles",
                "tz_label": "Pacific Standard Time", "tz_offset": -28800, "profile": profile}
        if enterprise_id:
            user["enterprise_user"] = {"id": id, "enterprise_id": enterprise_id, "enterprise_name": "Sandbox Org",
                                       "is_admin": is_org_admin, "is_owner": False, "teams": [team_id]}
        self.users[id] = user
        return user

    def add_workspace(self, team_id: str, name: str, *, enterprise_id: str | None = None,
                      domain: str | None = None) -> dict:
        """A workspace where the app can be installed (``enterprise_id``: of that Enterprise Grid org)."""
        self.workspaces[team_id] = {"id": team_id, "name": name, "domain": domain or name.lower().replace(" ", "-"),
                                    "enterprise_id": enterprise_id}
        return self.workspaces[team_id]

    def approve(self, team_id: str | None = None, *, enterprise_id: str | None = None, org: bool = False,
                scopes: str = "commands,chat:write", user: str = "U111") -> str:
        """A person approves the install on Slack's authorize page: the ``code`` Slack redirects back with."""
        if not org and team_id not in self.workspaces:
            raise KeyError(team_id)
        code = f"{next(self._seq)}.{secrets.token_hex(8)}"
        self.codes[code] = {"team_id": None if org else team_id, "is_enterprise_install": org, "scope": scopes,
                            "enterprise_id": enterprise_id if org else self.workspaces[team_id]["enterprise_id"],
                            "user": user}
        return code

    def token_info(self, token: str | None) -> dict | None:
        """Where a bot token works (None: no such token, or revoked)."""
        if token == self.token or token in self.execution_tokens:
            return {"team_id": self.team_id, "enterprise_id": self.enterprise_id, "is_enterprise_install": False}
        return self.bot_tokens.get(token or "")

    def serves(self, info: dict, team_id: str | None) -> bool:
        """Whether a token of ``info`` may act in workspace ``team_id``. Someone of a workspace not known
        here (another organisation, through Slack Connect) is the token's own workspace's business."""
        if not team_id or team_id not in self.workspaces:
            return True
        if info.get("is_enterprise_install"):
            return self.workspaces[team_id]["enterprise_id"] == info.get("enterprise_id")
        return team_id == info.get("team_id")

    def uninstall(self, team_id: str | None = None, *, enterprise_id: str | None = None) -> dict:
        """The app removed from a workspace (or, with ``enterprise_id`` alone, an org-wide install):
        its tokens stop working; returns the ``app_uninstalled`` event callback Slack then sends."""
        for token, info in list(self.bot_tokens.items()):
            if (team_id and info["team_id"] == team_id) or (not team_id and info["enterprise_id"] == enterprise_id
                                                              and info["is_enterprise_install"]):
                del self.bot_tokens[token]
        envelope = self.event_callback({"type": "app_uninstalled", "event_ts": self.next_ts()}, team_id=team_id,
                                       enterprise_id=enterprise_id)
        envelope["authorizations"][0]["is_enterprise_install"] = team_id is None
        envelope["is_enterprise_install"] = team_id is None
        return envelope

    def revoke_tokens(self, team_id: str) -> dict:
        """The workspace's bot token revoked (an admin did it, or ``auth.revoke``): it stops working;
        returns the ``tokens_revoked`` event callback Slack then sends."""
        for token, info in list(self.bot_tokens.items()):
            if info["team_id"] == team_id:
                del self.bot_tokens[token]
        return self.event_callback({"type": "tokens_revoked", "tokens": {"bot": [self.bot_user_id]},
                                    "event_ts": self.next_ts()}, team_id=team_id)

    def add_channel(self, id: str, name: str, *, is_im: bool = False, user: str | None = None,
                    bot_is_member: bool = True, team_id: str | None = None, ext_shared: bool = False) -> dict:
        """``ext_shared``: a Slack Connect channel, shared with another organisation (``is_ext_shared``)."""
        channel = {"id": id, "name": name, "is_im": is_im, "is_channel": not is_im,
                   "is_private": is_im or id.startswith("G"), "user": user, "bot_is_member": bot_is_member,
                   "is_ext_shared": ext_shared, "is_shared": ext_shared}
        self.channels[id] = channel
        if team_id:
            self.channel_teams[id] = team_id
        return channel

    def next_ts(self) -> str:
        value = 1_700_000_000_000_000 + 100 * next(self._seq)
        return f"{value // 1_000_000}.{value % 1_000_000:06d}"

    def post_user_message(self, channel: str, user: str, text: str, thread_ts: str | None = None,
                          ts: str | None = None) -> dict:
        """Seed a message written by a person (``ts`` lets a test reuse a documented payload's ts)."""
        return self._store(channel, {"type": "message", "user": user, "text": text, "team": self.team_id},
                           thread_ts, ts)

    def add_reaction(self, channel: str, ts: str, user: str, name: str) -> dict:
        """``user`` reacts with ``name`` (reactions.add's rules: once per person and emoji)."""
        message = self.find_message(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        if not re.fullmatch(r"[^\s:]+(::skin-tone-[2-6])?", name or ""):
            raise SlackError("invalid_name")
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if user in reaction["users"]:
            raise SlackError("already_reacted")
        reaction["users"].append(user)
        reaction["count"] = len(reaction["users"])
        return message

    def remove_reaction(self, channel: str, ts: str, user: str, name: str) -> dict:
        message = self.find_message(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        reaction = next((r for r in message.get("reactions") or [] if r["name"] == name), None)
        if reaction is None or user not in reaction["users"]:
            raise SlackError("no_reaction")
        reaction["users"].remove(user)
        reaction["count"] = len(reaction["users"])
        if not reaction["users"]:
            message["reactions"].remove(reaction)
        if not message["reactions"]:
            del message["reactions"]
        return message

    # events (the Events API) ----------------------------------------------------
    def channel_type(self, channel: str) -> str:
        ch = self.channels.get(channel) or {}
        return "im" if ch.get("is_im") else "group" if ch.get("is_private") else "channel"

    def message_event(self, channel: str, message: dict) -> dict:
        """The ``message`` event for a stored message (message.channels / .groups / .im)."""
        event = {k: copy.deepcopy(v) for k, v in message.items() if k not in ("reactions", "reply_count", "reply_users",
                                                                            "reply_users_count", "latest_reply")}
        if event.get("thread_ts") == event.get("ts"):
            del event["thread_ts"]  # the root as it was posted
        event.update(channel=channel, event_ts=message["ts"], channel_type=self.channel_type(channel))
        return event

    def mention_event(self, channel: str, message: dict) -> dict:
        """The ``app_mention`` event for a stored message that mentions the app's bot user."""
        event = {"type": "app_mention", "user": message.get("user"), "text": message.get("text", ""),
                 "ts": message["ts"], "team": self.team_id, "channel": channel, "event_ts": message["ts"]}
        if message.get("thread_ts") and message["thread_ts"] != message["ts"]:
            event["thread_ts"] = message["thread_ts"]
        if message.get("bot_id"):
            event["bot_id"] = message["bot_id"]
        return event

    def reaction_event(self, channel: str, ts: str, user: str, name: str, *, removed: bool = False) -> dict:
        message = self.find_message(channel, ts) or {}
        return {"type": "reaction_removed" if removed else "reaction_added", "user": user,
                "item": {"type": "message", "channel": channel, "ts": ts}, "reaction": name,
                "item_user": message.get("user"), "event_ts": self.next_ts()}

    def event_callback(self, event: dict, event_id: str | None = None, *, team_id: str | None = None,
                       enterprise_id: str | None = None) -> dict:
        """The Events API envelope Slack posts to the request URL (or sends over Socket Mode); ``team_id``:
        of another workspace than the first (``enterprise_id`` alone: an org-wide install's)."""
        if team_id is None and enterprise_id is None:
            team_id = self.team_id
        if team_id is not None and enterprise_id is None:
            enterprise_id = (self.workspaces.get(team_id) or {}).get("enterprise_id") or \
                (self.enterprise_id if team_id == self.team_id else None)
        return {"token": "sandbox-verification-token", "team_id": team_id, "api_app_id": self.app_id,
                "event": event, "type": "event_callback", "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
                "event_time": int(time.time()), "is_ext_shared_channel": False,
                "event_context": f"4-{event['type']}-{team_id}-{event.get('channel') or (event.get('item') or {}).get('channel', '')}",
                "authorizations": [{"enterprise_id": enterprise_id, "team_id": team_id,
                                    "user_id": self.bot_user_id, "is_bot": True, "is_enterprise_install": False}],
                "context_team_id": team_id, "context_enterprise_id": enterprise_id}

    def issue_trigger_id(self, team_id: str | None = None) -> str:
        """A trigger of a person's action in ``team_id`` (the first workspace unless said)."""
        trigger_id = f"{next(self._seq)}.{(team_id or self.team_id)[1:]}.{secrets.token_hex(16)}"
        self.triggers[trigger_id] = time.monotonic()
        return trigger_id

    # workflow steps and unfurls ---------------------------------------------------
    def function_definition(self, callback_id: str) -> dict:
        """The ``function`` object of a ``function_executed`` event, from the manifest's entry."""
        spec = self.app_functions.get(callback_id)
        if spec is None:
            raise KeyError(f"the app declares no function {callback_id!r}")
        return {"id": "Fn" + hashlib.sha1(callback_id.encode()).hexdigest()[:9].upper(), "callback_id": callback_id,
                "title": spec.get("title", callback_id), "description": spec.get("description", ""), "type": "app",
                "app_id": self.app_id, "date_updated": 1764860000,
                "input_parameters": _parameters(spec.get("input_parameters")),
                "output_parameters": _parameters(spec.get("output_parameters"))}

    def function_executed_event(self, callback_id: str, inputs: dict, *, user: str | None = None) -> dict:
        """Start a run of the app's function (Workflow Builder ran its step): the ``function_executed``
        event, with a per-execution ``bot_access_token`` this stand-in accepts until the end of the run."""
        function = self.function_definition(callback_id)
        execution_id = "Fx" + secrets.token_hex(5).upper()
        token = "xwfp-" + secrets.token_hex(16)
        event = {"type": "function_executed", "function": function, "inputs": copy.deepcopy(inputs),
                 "function_execution_id": execution_id, "workflow_execution_id": "Wx" + secrets.token_hex(5).upper(),
                 "event_ts": self.next_ts(), "bot_access_token": token}
        self.execution_tokens[token] = execution_id
        self.executions[execution_id] = {
            "function_execution_id": execution_id, "callback_id": callback_id, "inputs": copy.deepcopy(inputs),
            "user": user, "bot_access_token": token, "state": "running", "outputs": None, "error": None,
            "started_at": time.time(), "completed_at": None, "output_parameters": function["output_parameters"]}
        return event

    def unfurlable_links(self, text: str) -> list[dict]:
        """The links of a message that Slack would offer the app: URLs in its unfurl domains (or their
        subdomains), each once, as ``[{domain, url}]``."""
        links, seen = [], set()
        for match in re.finditer(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>|(https?://[^\s<>|]+)", text or ""):
            url = (match.group(1) or match.group(2)).replace("&amp;", "&").rstrip(".,;:!?)")
            domain = (urlparse(url).hostname or "").lower()
            if url in seen or not any(domain == d or domain.endswith("." + d) for d in self.unfurl_domains):
                continue
            seen.add(url)
            links.append({"domain": domain, "url": url})
        return links

    def link_shared_event(self, channel: str, message: dict, links: list[dict] | None = None,
                          source: str = "conversations_history") -> dict | None:
        """The ``link_shared`` event for a posted message (None when it has no link to offer)."""
        links = links if links is not None else self.unfurlable_links(message.get("text", ""))
        if not links:
            return None
        unfurl_id = f"{channel}.{message['ts']}.{secrets.token_hex(4)}"
        self.shared_links[unfurl_id] = {"channel": channel, "ts": message["ts"], "links": copy.deepcopy(links)}
        event = {"type": "link_shared", "channel": channel,
                 "is_bot_user_member": bool((self.channels.get(channel) or {}).get("bot_is_member")),
                 "user": message.get("user"), "message_ts": message["ts"], "unfurl_id": unfurl_id,
                 "source": source, "links": copy.deepcopy(links), "event_ts": self.next_ts()}
        if message.get("thread_ts") and message["thread_ts"] != message["ts"]:
            event["thread_ts"] = message["thread_ts"]
        return event

    # failure injection ------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer HTTP 429 with ``Retry-After``."""
        self._failures[method] += [(429, "ratelimited", retry_after)] * times

    def fail(self, method: str, error: str = "internal_error", times: int = 1) -> None:
        self._failures[method] += [(200, error, None)] * times

    def delay(self, method: str, seconds: float, up_to: float | None = None, *, times: int | None = None) -> None:
        """Answer each call of ``method`` ``seconds`` later; with ``up_to``, after a time drawn
        between the two for each call (from ``self.rng``); with ``times``, only the next that many
        calls. ``delay(method, 0)`` takes it away."""
        self._delays[method] = (seconds, max(seconds, up_to if up_to is not None else seconds), times)

    def latency(self, method: str) -> float:
        """How long this call of ``method`` waits before it is answered (drawn as it arrives)."""
        least, most, left = self._delays.get(method, (0.0, 0.0, None))
        if left is not None:
            if left <= 0:
                return 0.0
            self._delays[method] = (least, most, left - 1)
        return self.rng.uniform(least, most) if most > least else least

    # inspection ---------------------------------------------------------------
    def calls_to(self, method: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[dict]:
        """Wait until ``count`` calls of ``method`` were recorded (whatever their outcome)."""
        deadline = time.monotonic() + timeout
        while len(self.calls_to(method)) < count:
            if time.monotonic() >= deadline:
                seen = [c["method"] for c in self.calls]
                raise TimeoutError(f"{count} x {method} not seen within {timeout}s; calls so far: {seen}")
            await asyncio.sleep(0.01)
        return self.calls_to(method)

    def snapshot(self) -> dict:
        return {"calls": self.calls, "messages": self.messages, "ephemeral": self.ephemeral,
                "views": self.views, "home_views": self.home_views, "executions": self.executions,
                "unfurls": self.unfurls, "unfurl_metadata": self.unfurl_metadata,
                "entity_details": self.entity_details}

    # lookups used by the handlers ----------------------------------------------
    def channel(self, ref: str | None) -> dict | None:
        """Known channel by id or name; unknown C/G/D ids count as existing (documented fixtures)."""
        ref = (ref or "").lstrip("#")
        if ref in self.channels:
            return self.channels[ref]
        named = [c for c in self.channels.values() if c["name"] == ref and not c["is_im"]]
        if named:
            return named[0]
        if re.fullmatch(r"[CGD][A-Z0-9]{2,}", ref):
            return self.add_channel(ref, ref.lower(), is_im=ref[0] == "D")
        return None

    def dm_with(self, user_id: str) -> dict:
        for channel in self.channels.values():
            if channel["is_im"] and channel["user"] == user_id:
                return channel
        return self.add_channel("D" + user_id, "D" + user_id, is_im=True, user=user_id)

    def find_message(self, channel: str, ts: str | None) -> dict | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def _store(self, channel: str, message: dict, thread_ts: str | None, ts: str | None = None) -> dict:
        message["ts"] = ts or self.next_ts()
        root = self.find_message(channel, thread_ts) if thread_ts else None
        if root is not None and root.get("thread_ts") not in (None, root["ts"]):  # replied to a reply
            thread_ts, root = root["thread_ts"], self.find_message(channel, root["thread_ts"])
        if thread_ts:
            message["thread_ts"] = thread_ts
        if root is not None:
            message["parent_user_id"] = root.get("user")
            root["thread_ts"] = root["ts"]
            root["reply_count"] = root.get("reply_count", 0) + 1
            root["reply_users"] = sorted(set(root.get("reply_users", [])) | {message.get("user")})
            root["reply_users_count"] = len(root["reply_users"])
            root["latest_reply"] = message["ts"]
        self.messages[channel].append(message)
        return message


# ---------------------------------------------------------------- handlers
def _channel_out(ch: dict) -> dict:
    out = {k: v for k, v in ch.items() if k != "bot_is_member"}
    out.update(is_member=ch["bot_is_member"], is_group=False, is_mpim=False, is_archived=False,
               created=1_700_000_000, name_normalized=ch["name"])
    return out


def _need(args: dict, *names: str) -> None:
    for name in names:
        if not args.get(name):
            raise SlackError("invalid_arguments", [f"[ERROR] missing required field: {name}"])


def _postable(s: SlackState, ref: str | None) -> dict:
    if ref and ref[0] in "UW" and ref in s.users:
        return s.dm_with(ref)
    ch = s.channel(ref)
    if ch is None:
        raise SlackError("channel_not_found")
    if not ch["bot_is_member"]:
        raise SlackError("not_in_channel")
    return ch


def _content(args: dict, s: SlackState) -> dict:
    if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
        raise SlackError("no_text")
    if len(args.get("text") or "") > 40000:
        raise SlackError("msg_too_long")
    if args.get("blocks"):
        errors = validate_blocks(args["blocks"], "/blocks", 50)
        if errors:
            raise SlackError("invalid_blocks", errors)
    out = {"text": args.get("text") or ""}
    out.update({k: args[k] for k in ("blocks", "attachments", "metadata") if args.get(k)})
    return out


def _use_trigger(s: SlackState, args: dict) -> None:
    trigger_id = args.get("trigger_id") or args.get("interactivity_pointer")
    _need({"trigger_id": trigger_id}, "trigger_id")
    if trigger_id in s.triggers:
        issued = s.triggers[trigger_id]
        if issued is None:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - issued > s.trigger_ttl:
            raise SlackError("expired_trigger_id")
        s.triggers[trigger_id] = None
    elif s.strict_triggers:
        raise SlackError("invalid_trigger_id")


def _save_view(s: SlackState, view, types=("modal",), old: dict | None = None) -> dict:
    errors = validate_view(view, types)
    if errors:
        raise SlackError("invalid_arguments", errors)
    ext = view.get("external_id")
    if ext and any(v.get("external_id") == ext and v is not old for v in s.views.values()):
        raise SlackError("duplicate_external_id")
    view_id = old["id"] if old else "V" + secrets.token_hex(5).upper()
    stored = {"private_metadata": "", "callback_id": "", "external_id": "", "close": None, "submit": None,
              "clear_on_close": False, "notify_on_close": False, "previous_view_id": None,
              **copy.deepcopy(view), "id": view_id, "team_id": s.team_id, "app_id": s.app_id,
              "bot_id": s.bot_id, "root_view_id": view_id, "state": old["state"] if old else {"values": {}},
              "hash": f"{int(time.time())}.{secrets.token_hex(4)}"}
    for block in stored["blocks"]:
        block.setdefault("block_id", secrets.token_urlsafe(4))
    s.views[view_id] = stored
    return stored


async def views_open(s, args):  # also views.push
    _need(args, "view")
    errors = validate_view(args["view"])
    if errors:  # checked before the trigger is spent
        raise SlackError("invalid_arguments", errors)
    _use_trigger(s, args)
    return {"view": _save_view(s, args["view"])}


async def views_update(s, args):
    _need(args, "view")
    if args.get("view_id"):
        old = s.views.get(args["view_id"])
    elif args.get("external_id"):
        old = next((v for v in s.views.values() if v.get("external_id") == args["external_id"]), None)
    else:
        raise SlackError("invalid_arguments", ["[ERROR] either view_id or external_id is required"])
    if old is None:
        raise SlackError("not_found")
    if args.get("hash") and args["hash"] != old["hash"]:
        raise SlackError("hash_conflict")
    return {"view": _save_view(s, args["view"], (old["type"],), old)}


async def views_publish(s, args):
    _need(args, "user_id", "view")
    if args["user_id"] not in s.users:
        raise SlackError("invalid_arguments", ["invalid `user_id`"])
    old = s.home_views.get(args["user_id"])
    if args.get("hash") and old and args["hash"] != old["hash"]:
        raise SlackError("hash_conflict")
    s.home_views[args["user_id"]] = view = _save_view(s, args["view"], ("home",), old)
    return {"view": view}


async def chat_post_message(s, args):
    ch = _postable(s, args.get("channel"))
    message = {"type": "message", "user": s.bot_user_id, "bot_id": s.bot_id, "app_id": s.app_id,
               "team": s.team_id, **_content(args, s)}
    message = s._store(ch["id"], message, args.get("thread_ts"))
    return {"channel": ch["id"], "ts": message["ts"], "message": message}


async def chat_post_ephemeral(s, args):
    _need(args, "channel", "user")
    ch = _postable(s, args["channel"])
    if args["user"] not in s.users:
        raise SlackError("user_not_in_channel")
    entry = {"channel": ch["id"], "user": args["user"], "thread_ts": args.get("thread_ts"),
             "message_ts": s.next_ts(), **_content(args, s)}
    s.ephemeral.append(entry)
    return {"message_ts": entry["message_ts"]}


async def chat_update(s, args):
    ch = s.channel(args.get("channel"))
    if ch is None:
        raise SlackError("channel_not_found")
    message = s.find_message(ch["id"], args.get("ts"))
    if message is None:
        raise SlackError("message_not_found")
    if message.get("bot_id") != s.bot_id:
        raise SlackError("cant_update_message")
    message.update(_content(args, s), edited={"user": s.bot_user_id, "ts": s.next_ts()})
    return {"channel": ch["id"], "ts": message["ts"], "text": message["text"], "message": message}


async def chat_get_permalink(s, args):
    ch = s.channel(args.get("channel"))
    if ch is None:
        raise SlackError("channel_not_found")
    ts = args.get("message_ts") or ""
    message = s.find_message(ch["id"], ts)
    if message is None and (s.strict_messages or not ts):
        raise SlackError("message_not_found")
    link = f"https://{s.domain}.slack.com/archives/{ch['id']}/p{ts.replace('.', '')}"
    root = (message or {}).get("thread_ts")
    if root and root != ts:
        link += f"?thread_ts={root}&cid={ch['id']}"
    return {"channel": ch["id"], "permalink": link}


async def users_info(s, args):
    if args.get("user") not in s.users:
        raise SlackError("user_not_found")
    return {"user": s.users[args["user"]]}


async def users_lookup_by_email(s, args):
    email = (args.get("email") or "").lower()
    found = next((u for u in s.users.values() if u["profile"].get("email", "").lower() == email), None)
    if not email or found is None:
        raise SlackError("users_not_found")
    return {"user": found}


async def conversations_info(s, args):
    ch = s.channel(args.get("channel"))
    if ch is None:
        raise SlackError("channel_not_found")
    return {"channel": _channel_out(ch)}


def _readable(s: SlackState, ref: str | None) -> dict:
    """A conversation the bot may read (its *:history scopes cover only conversations it is in)."""
    ch = s.channel(ref)
    if ch is None:
        raise SlackError("channel_not_found")
    if not ch["bot_is_member"]:
        raise SlackError("channel_not_found" if ch["is_private"] else "not_in_channel")
    return ch


def _window(args: dict, messages: list[dict]) -> list[dict]:
    """``oldest`` / ``latest`` (``inclusive``: the bounds themselves too), as documented."""
    inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
    oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or time.time() + 1e9)
    if inclusive:
        return [m for m in messages if oldest <= float(m["ts"]) <= latest]
    return [m for m in messages if oldest < float(m["ts"]) < latest]


def _page(args: dict, items: list[dict], default_limit: int, max_limit: int | None = None) -> dict:
    try:
        start, limit = int(args.get("cursor") or 0), int(args.get("limit") or default_limit)
    except ValueError:
        raise SlackError("invalid_cursor") from None
    if limit < 1:
        limit = default_limit
    if max_limit is not None:
        limit = min(limit, max_limit)
    page, more = items[start:start + limit], start + limit < len(items)
    return {"messages": copy.deepcopy(page), "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


async def conversations_replies(s, args):
    """A thread, parent first, oldest first (https://docs.slack.dev/reference/methods/conversations.replies);
    ``ts`` may be the parent or any message in the thread."""
    _need(args, "channel", "ts")
    ch = _readable(s, args.get("channel"))
    message = s.find_message(ch["id"], args.get("ts"))
    if message is None:
        raise SlackError("thread_not_found")
    root_ts = message.get("thread_ts") or message["ts"]
    thread = sorted((m for m in s.messages[ch["id"]] if m["ts"] == root_ts or m.get("thread_ts") == root_ts),
                    key=lambda m: float(m["ts"]))
    return _page(args, _window(args, thread), 1000, s.replies_max_limit)


async def conversations_history(s, args):
    """A conversation's messages, newest first, without thread replies (but with those broadcast to
    the channel) (https://docs.slack.dev/reference/methods/conversations.history)."""
    _need(args, "channel")
    ch = _readable(s, args.get("channel"))
    top = [m for m in s.messages[ch["id"]]
           if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"]
    out = _page(args, sorted(_window(args, top), key=lambda m: -float(m["ts"])), 100)
    out["pin_count"] = 0
    return out


def _reaction_args(s: SlackState, args: dict) -> tuple[dict, str, str]:
    if not args.get("channel") and not args.get("timestamp"):
        raise SlackError("no_item_specified")
    _need(args, "channel", "timestamp")
    ch = s.channel(args["channel"])
    if ch is None:
        raise SlackError("channel_not_found")
    return ch, args["timestamp"], (args.get("name") or "").strip(":")


async def reactions_add(s, args):
    ch, ts, name = _reaction_args(s, args)
    _need(args, "name")
    s.add_reaction(ch["id"], ts, s.bot_user_id, name)
    return {}


async def reactions_remove(s, args):
    ch, ts, name = _reaction_args(s, args)
    _need(args, "name")
    s.remove_reaction(ch["id"], ts, s.bot_user_id, name)
    return {}


async def reactions_get(s, args):
    ch, ts, _ = _reaction_args(s, args)
    message = s.find_message(ch["id"], ts)
    if message is None:
        raise SlackError("message_not_found")
    out = copy.deepcopy(message)
    if str(args.get("full", "")).lower() not in ("1", "true"):
        for reaction in out.get("reactions") or []:
            reaction["users"] = reaction["users"][:50]  # "full": every user; else possibly a subset
    return {"type": "message", "channel": ch["id"], "message": out}


async def conversations_open(s, args):
    users = args.get("users") or ""
    users = users if isinstance(users, list) else [u for u in users.split(",") if u]
    if args.get("channel"):
        return await conversations_info(s, args)
    if len(users) != 1:  # group DMs are not modelled
        raise SlackError("not_enough_users" if not users else "method_not_supported_for_channel_type")
    if users[0] not in s.users:
        raise SlackError("user_not_found")
    existed = any(c["is_im"] and c["user"] == users[0] for c in s.channels.values())
    return {"no_op": existed, "already_open": existed, "channel": _channel_out(s.dm_with(users[0]))}


def _parameters(params) -> list[dict]:
    """A manifest's ``input_parameters`` / ``output_parameters`` as the event lists them. Both manifest
    forms: ``{properties: {name: {...}}, required: [...]}`` (Slack's docs) and ``{name: {..., is_required}}``
    (the manifest JSON schema)."""
    params = params or {}
    if isinstance(params.get("properties"), dict):
        props, required = params["properties"], set(params.get("required") or [])
    else:
        props = params
        required = {name for name, p in props.items() if isinstance(p, dict) and p.get("is_required")}
    return [{"type": p.get("type", "string"), "name": name, "title": p.get("title", name),
             **({"description": p["description"]} if p.get("description") else {}), "is_required": name in required}
            for name, p in props.items() if isinstance(p, dict)]


def _execution(s: SlackState, args: dict) -> dict:
    _need(args, "function_execution_id")
    run = s.executions.get(args["function_execution_id"])
    if run is None:
        raise SlackError("function_execution_not_found")
    if run["state"] != "running":
        raise SlackError("execution_not_in_running_state")
    return run


async def functions_complete_success(s, args):
    run = _execution(s, args)
    outputs = args.get("outputs")
    if not isinstance(outputs, dict):
        raise SlackError("invalid_arguments", ["[ERROR] outputs must be a JSON object [json-pointer:/outputs]"])
    missing = [p["name"] for p in run["output_parameters"]
               if p["is_required"] and outputs.get(p["name"]) in (None, "")]
    if missing:
        raise SlackError("parameter_validation_failed",
                         [_err(f"/outputs/{name}", f"missing required output parameter: {name}") for name in missing])
    run.update(state="completed", outputs=copy.deepcopy(outputs), completed_at=time.time())
    return {}


async def functions_complete_error(s, args):
    run = _execution(s, args)
    _need(args, "error")
    run.update(state="failed", error=str(args["error"]), completed_at=time.time())
    return {}


async def chat_unfurl(s, args):
    if args.get("unfurl_id") or args.get("source"):
        _need(args, "unfurl_id", "source")
        if args["source"] not in ("composer", "conversations_history"):
            raise SlackError("invalid_arguments", ["[ERROR] source must be composer or conversations_history"])
        shared = s.shared_links.get(args["unfurl_id"])
        if shared is None:
            raise SlackError("cannot_unfurl_message")
        channel, ts = shared["channel"], shared["ts"]
    else:
        _need(args, "channel", "ts")
        ch = s.channel(args["channel"])
        if ch is None:
            raise SlackError("cannot_find_channel")
        channel, ts = ch["id"], args["ts"]
    message = s.find_message(channel, ts)
    if message is None:
        raise SlackError("cannot_unfurl_message")
    unfurls, metadata = args.get("unfurls"), args.get("metadata")
    if not unfurls and not metadata:
        raise SlackError("invalid_arguments", ["[ERROR] either unfurls or metadata must be provided"])
    if unfurls is not None and (not isinstance(unfurls, dict) or not all(isinstance(u, dict) for u in unfurls.values())):
        raise SlackError("invalid_arguments", ["[ERROR] unfurls must be a JSON map of URL to unfurl"])
    offered = {link["url"] for link in s.unfurlable_links(message.get("text", ""))}
    offered |= {link["url"] for sh in s.shared_links.values() if (sh["channel"], sh["ts"]) == (channel, ts)
                for link in sh["links"]}
    for url, unfurl in (unfurls or {}).items():
        if url not in offered:
            raise SlackError("cannot_unfurl_message")
        if unfurl.get("blocks"):
            errors = validate_blocks(unfurl["blocks"], f"/unfurls/{url}/blocks", 50)
            if errors:
                raise SlackError("invalid_blocks", errors)
    key = f"{channel}:{ts}"
    if unfurls:  # a second call for the same message changes its unfurls rather than adding more
        s.unfurls.setdefault(key, {}).update(copy.deepcopy(unfurls))
    if metadata:
        s.unfurl_metadata[key] = copy.deepcopy(metadata)
    return {}


async def entity_present_details(s, args):
    _need(args, "trigger_id")
    for key in ("metadata", "error"):
        if isinstance(args.get(key), str) and args[key][:1] == "{":
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                raise SlackError("invalid_arguments", [f"[ERROR] {key} is not valid JSON"]) from None
    s.entity_details.append(copy.deepcopy(args))
    return {}


async def auth_test(s, args):
    info = s.token_info(args.pop("_token", None)) or {}
    if info.get("is_enterprise_install"):  # an org-wide install's token: the org, no workspace
        return {"url": s.enterprise_url, "team": None, "team_id": None, "user": "sandbox-bot",
                "user_id": s.bot_user_id, "bot_id": s.bot_id, "is_enterprise_install": True,
                "enterprise_id": info["enterprise_id"], "enterprise": "Sandbox Org"}
    team = s.workspaces.get(info.get("team_id") or "")
    if team is None or team["id"] == s.team_id:  # the first workspace, as the attributes say now
        team = {"id": s.team_id, "name": s.team, "domain": s.domain, "enterprise_id": s.enterprise_id}
    out = {"url": f"https://{team['domain']}.slack.com/", "team": team["name"], "user": "sandbox-bot",
           "team_id": team["id"], "user_id": s.bot_user_id, "bot_id": s.bot_id, "is_enterprise_install": False}
    enterprise_id = team["enterprise_id"]
    if enterprise_id:  # a workspace of an Enterprise Grid org
        out.update(enterprise_id=enterprise_id, enterprise="Sandbox Org")
    return out


async def oauth_v2_access(s, args):
    """The app's credentials (HTTP Basic, or client_id / client_secret fields) and a code approved once,
    or a refresh token (``grant_type=refresh_token``, token rotation): a bot token of that workspace or org."""
    if args.get("client_id") != s.client_id or args.get("client_secret") != s.client_secret:
        raise SlackError("invalid_client_id" if args.get("client_id") != s.client_id else "bad_client_secret")
    if args.get("grant_type") == "refresh_token":
        old = s.refresh_tokens.pop(args.get("refresh_token") or "", None)
        if old is None or old not in s.bot_tokens:
            raise SlackError("invalid_refresh_token")
        install = s.bot_tokens.pop(old)
    else:
        install = s.codes.pop(args.get("code") or "", None)
        if install is None:
            raise SlackError("invalid_code")
        install = {k: install[k] for k in ("team_id", "enterprise_id", "is_enterprise_install", "scope", "user")}
    token = f"xoxb-{(install['team_id'] or install['enterprise_id'])}-{secrets.token_hex(12)}"
    s.bot_tokens[token] = install
    team = s.workspaces.get(install["team_id"] or "")
    out = {"access_token": token, "token_type": "bot", "scope": install["scope"], "bot_user_id": s.bot_user_id,
           "app_id": s.app_id, "team": {"name": team["name"], "id": team["id"]} if team else None,
           "enterprise": {"name": "Sandbox Org", "id": install["enterprise_id"]} if install["enterprise_id"] else None,
           "authed_user": {"id": install["user"]}, "is_enterprise_install": install["is_enterprise_install"]}
    if s.token_rotation:
        refresh = "xoxe-1-" + secrets.token_hex(16)
        s.refresh_tokens[refresh] = token
        out.update(refresh_token=refresh, expires_in=s.token_expires_in)
    return out


async def auth_revoke(s, args):
    s.bot_tokens.pop(args.pop("_token", ""), None)
    return {"revoked": True}


async def apps_connections_open(s, args):
    """Socket Mode: where to open the WebSocket (see sandbox/slack_socket.py)."""
    return {"url": s.socket_url}


METHODS = {
    "apps.connections.open": apps_connections_open,
    "auth.test": auth_test, "views.open": views_open, "views.push": views_open, "views.update": views_update,
    "views.publish": views_publish, "chat.postMessage": chat_post_message,
    "chat.postEphemeral": chat_post_ephemeral, "chat.update": chat_update,
    "chat.getPermalink": chat_get_permalink, "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email, "conversations.info": conversations_info,
    "conversations.replies": conversations_replies, "conversations.open": conversations_open,
    "conversations.history": conversations_history,
    "reactions.add": reactions_add, "reactions.remove": reactions_remove, "reactions.get": reactions_get,
    "functions.completeSuccess": functions_complete_success, "functions.completeError": functions_complete_error,
    "chat.unfurl": chat_unfurl, "entity.presentDetails": entity_present_details,
    "oauth.v2.access": oauth_v2_access, "auth.revoke": auth_revoke,
}
NO_TOKEN = {"oauth.v2.access"}  # authenticated by the app's client id and secret


# ---------------------------------------------------------------- HTTP
def _dumps(obj) -> str:
    return json.dumps(obj, default=str)


async def _read_args(request: web.Request) -> dict:
    args: dict = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            args.update(body if isinstance(body, dict) else {})
        else:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    for key in JSON_ARGS:
        if isinstance(args.get(key), str) and args[key][:1] in "[{":
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                pass
    return args


def _own_workspace(s: SlackState, info: dict, args: dict) -> None:
    """A token acts only in its own workspace (an org's: in the org's): another workspace's channel,
    person or trigger is unknown to it, as on Slack."""
    for key in ("channel", "user", "user_id"):
        ref = args.get(key)
        if not isinstance(ref, str) or not ref:
            continue
        if ref in s.users:
            if not s.serves(info, s.users[ref]["team_id"]):
                raise SlackError("user_not_found")
        elif not s.serves(info, s.channel_teams.get(ref)):
            raise SlackError("channel_not_found")
    trigger = args.get("trigger_id")
    if isinstance(trigger, str) and trigger.count(".") >= 2 and not s.serves(info, "T" + trigger.split(".")[1]):
        raise SlackError("invalid_trigger_id")


async def api(request: web.Request) -> web.Response:
    s: SlackState = request.app["state"]
    method = request.match_info["method"]
    args = await _read_args(request)
    token = args.pop("token", None)
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else token
    if auth.startswith("Basic "):  # the app's credentials (oauth.v2.access)
        with contextlib.suppress(ValueError):
            args["client_id"], _, args["client_secret"] = base64.b64decode(auth[6:]).decode().partition(":")
    status, headers, body = 200, {}, {"ok": True}
    info: dict | None = None
    try:
        if method not in METHODS:
            status = 404
            raise SlackError("unknown_method")
        app_token = getattr(s, "app_token", None)  # set by sandbox.slack_socket
        if method in NO_TOKEN:
            pass
        elif not token:
            raise SlackError("not_authed")
        elif method == "apps.connections.open":
            if token != app_token:  # it takes the app-level token, never the bot token
                raise SlackError("not_allowed_token_type" if token == s.token else "invalid_auth")
        else:  # the bot token, a run's own, or one issued by oauth.v2.access: for its own workspace
            info = s.token_info(token)
            if info is None:
                raise SlackError("invalid_auth")
            _own_workspace(s, info, args)
            if method in ("auth.test", "auth.revoke"):
                args["_token"] = token
        wait = s.latency(method)
        if wait > 0:
            await asyncio.sleep(wait)
        if s._failures.get(method):
            status, error, retry_after = s._failures[method].pop(0)
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            raise SlackError(error)
        body.update(await METHODS[method](s, args))
    except SlackError as exc:
        body = {"ok": False, "error": exc.error}
        if exc.messages:
            body["response_metadata"] = {"messages": exc.messages}
    args.pop("_token", None)
    s.calls.append({"method": method, "args": args, "at": time.monotonic(), "status": status,
                    "team": (info or {}).get("team_id") or (info or {}).get("enterprise_id"),
                    "error": body.get("error"), "response": copy.deepcopy(body),
                    "execution": s.execution_tokens.get(token or "")})
    for listener in s.listeners:
        listener(s.calls[-1])
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


async def oauth_authorize(request: web.Request) -> web.Response:
    """Slack's authorize page (``/oauth/v2/authorize?client_id&scope&state``): the app's name, the scopes
    asked and where it goes (a workspace, or the whole org when ``state.org_install_enterprise`` is set);
    *Allow* approves it and sends the browser back to ``state.redirect_uri`` with the code and the state."""
    s: SlackState = request.app["state"]
    q = request.query
    if q.get("client_id") != s.client_id:
        return web.Response(status=400, text="invalid_client_id")
    org = getattr(s, "org_install_enterprise", None)
    if request.path.endswith("/allow"):
        code = s.approve(q.get("team") or None, enterprise_id=org, org=bool(org), scopes=q.get("scope", ""))
        sep = "&" if "?" in s.redirect_uri else "?"
        raise web.HTTPFound(f"{s.redirect_uri}{sep}code={code}&state={q.get('state', '')}")
    where = "the whole Sandbox Org organisation" if org else s.team
    allow = "/oauth/v2/authorize/allow?" + request.query_string + (f"&team={s.team_id}" if not org else "")
    scopes = "".join(f"<li>{html.escape(x)}</li>" for x in q.get("scope", "").split(",") if x)
    return web.Response(content_type="text/html", text=(
        f"<!doctype html><title>Install</title><h1>Install the app in {html.escape(where)}</h1>"
        f"<p>It asks to:</p><ul>{scopes}</ul><p><a id=\"allow\" href=\"{html.escape(allow)}\">Allow</a></p>"))


async def org_app_page(request: web.Request) -> web.Response:
    """The org's page for an app installed org-wide (where Bolt's success page leads): here every
    workspace of the org is served at once, so it lists them and leads back to the Slack page."""
    s: SlackState = request.app["state"]
    org = s.org_install_enterprise or s.enterprise_id
    names = [w["name"] for w in s.workspaces.values() if org and w.get("enterprise_id") == org]
    items = "".join(f"<li>{html.escape(n)}</li>" for n in names)
    return web.Response(content_type="text/html", text=(
        "<!doctype html><title>Installed</title><h1>The app is installed in the whole Sandbox Org organisation</h1>"
        f"<p>It serves these workspaces of the org:</p><ul>{items}</ul><p><a id=\"back\" href=\"/\">Back to Slack</a></p>"))


async def sandbox_state(request: web.Request) -> web.Response:
    return web.json_response(request.app["state"].snapshot(), dumps=_dumps)


async def sandbox_reset(request: web.Request) -> web.Response:
    request.app["state"].reset()
    return web.json_response({"ok": True})


async def sandbox_trigger(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "trigger_id": request.app["state"].issue_trigger_id()})


def create_app(state: SlackState | None = None) -> web.Application:
    app = web.Application()
    with warnings.catch_warnings():  # the documented interface is app["state"]
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["state"] = state or SlackState()
    app.router.add_route("*", "/api/{method}", api)
    app.router.add_get("/oauth/v2/authorize", oauth_authorize)
    app.router.add_get("/oauth/v2/authorize/allow", oauth_authorize)
    app.router.add_get("/manage/organization/apps/profile/{app_id}/workspaces/add", org_app_page)
    app.router.add_get("/_sandbox/state", sandbox_state)
    app.router.add_post("/_sandbox/reset", sandbox_reset)
    app.router.add_post("/_sandbox/trigger", sandbox_trigger)
    return app


async def start(state: SlackState | None = None, host: str = "127.0.0.1",
                port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the stand-in; returns the runner (``await runner.cleanup()``) and the ``.../api/`` base URL."""
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}/api/"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local stand-in for Slack's Web API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--token", default="xoxb-test")
    parser.add_argument("--strict-triggers", action="store_true")
    opts = parser.parse_args(argv)

    state = SlackState(opts.token, strict_triggers=opts.strict_triggers)
    print(f"http://{opts.host}:{opts.port}/api/", flush=True)
    web.run_app(create_app(state), host=opts.host, port=opts.port, print=None)


if __name__ == "__main__":
    main()
