"""A small Slack in the browser, on top of the Web API stand-in (``sandbox/slack.py``).

It plays Slack's client and servers for one app, from Slack's documents: people post in channels
and threads, type slash commands, use message shortcuts and App Home, and fill in modals. What the
app is sent goes to its request URL the way Slack sends it: signed (``X-Slack-Signature``,
``X-Slack-Request-Timestamp``) form posts of commands and ``payload=<json>`` interactions, JSON event
callbacks, each with a fresh ``trigger_id``. What the app does comes back through the Web API
stand-in, whose calls this module watches (``SlackState.listeners``): ``views.open/push/update``
open and change modals, ``chat.*`` adds messages. Answers to a ``view_submission`` are handled as
Slack does: empty closes the view, ``response_action`` errors / update / push / clear.

Events go to the app as the Events API sends them, for the bot events it subscribed to (its
manifest) and only from conversations the bot is in: ``message.channels`` / ``.groups`` / ``.im``
for every message (the app's own posts too, with its ``bot_id``), ``app_mention`` when a message
mentions the app (``@Tickets``), ``reaction_added`` / ``reaction_removed``. A delivery that is not
answered 2xx within 3 seconds is sent again as Slack does (``X-Slack-Retry-Num`` 1 to 3,
``X-Slack-Retry-Reason``; at once, after 1 and after 5 minutes; ``x-slack-no-retry: 1`` stops it).

Browser endpoints (JSON, not Slack's; ``user`` is who the person says they are):
  GET  /                               the page (``sandbox/static/``)
  GET  /ui/state?user=U&since=N        the workspace as U sees it, once newer than N (long poll, 25 s)
  POST /ui/message   {user, channel, text, thread_ts?}   a message, or a slash command ("/ticket ...")
  POST /ui/shortcut  {user, channel, ts, callback_id}     a message shortcut
  POST /ui/submit    {user, view_id, values}              submit the open modal (values by block id)
  POST /ui/action    {user, view_id | channel+ts, block_id, action_id, values?}   block_actions
  POST /ui/close     {user, view_id, all?}                close the modal (all: the whole stack)
  POST /ui/home      {user}                               App Home opened (app_home_opened event)
  POST /ui/react     {user, channel, ts, name}            add the reaction, or take it back if it is there
  POST /ui/respond/{key}                                  a response_url, as the app would use it
  POST /ui/workflow  {user, callback_id?, inputs}         Workflow Builder runs the app's step: a
                     function_executed event (callback_id: default the first declared function)
                     -> {ok, function_execution_id}; the outcome shows in /ui/state "workflows"
  POST /ui/entity_details {user, channel, ts, url}        a click on a Work Object unfurl:
                     entity_details_requested (when subscribed) -> {ok, trigger_id}

Workflow steps: a function the app declares (its manifest's ``functions``) gets ``function_executed``
without a subscription, as Slack sends it; the run ends when the app calls ``functions.completeSuccess``
or ``.completeError`` (``SlackState.executions``). Unfurls: a person's message with links in the app's
``unfurl_domains`` sends ``link_shared`` (when subscribed), and what the app sets with ``chat.unfurl``
shows under the message.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import aiohttp
from aiohttp import web

from . import slack
from .slack import SlackError, SlackState

STATIC = Path(__file__).with_name("static")
FORM = "application/x-www-form-urlencoded"
SLACKBOT = "USLACKBOT"
TROUBLE = "We had some trouble connecting. Try again?"  # what Slack shows when the app fails a modal
TEXT_INPUTS = {"plain_text_input", "email_text_input", "url_text_input", "number_input"}


def _escape(text: str) -> str:
    """Slack escapes these three in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _options(element: dict) -> list[dict]:
    groups = element.get("option_groups") or []
    return list(element.get("options") or []) + [o for g in groups for o in g.get("options") or []]


def element_state(element: dict, raw: Any) -> dict:
    """What Slack puts in ``view.state.values`` (and in a block action) for an element given the
    browser's raw value: a string, or a list of option values for multi-choice elements."""
    kind = element.get("type")
    out: dict[str, Any] = {"type": kind}

    def option(value: Any) -> dict | None:
        return next((copy.deepcopy(o) for o in _options(element) if o.get("value") == value), None)

    many = raw if isinstance(raw, list) else [raw] if raw else []
    if kind in TEXT_INPUTS:
        out["value"] = raw or None
    elif kind == "datepicker":
        out["selected_date"] = raw or None
    elif kind == "timepicker":
        out["selected_time"] = raw or None
    elif kind in ("static_select", "radio_buttons"):
        out["selected_option"] = option(raw)
    elif kind in ("multi_static_select", "checkboxes"):
        out["selected_options"] = [o for o in map(option, many) if o]
    elif kind == "users_select":
        out["selected_user"] = raw or None
    elif kind == "multi_users_select":
        out["selected_users"] = many
    elif kind in ("conversations_select", "channels_select"):
        out["selected_conversation" if kind == "conversations_select" else "selected_channel"] = raw or None
    return out


class SlackUI:
    """The browser side of the stand-in. ``panel`` (optional) returns a side panel to show, e.g.
    the tickets of a back-end sandbox; call ``changed()`` when what it shows changes."""

    def __init__(self, state: SlackState, *, request_url: str, signing_secret: str, app_name: str = "App",
                 commands: list[dict] | None = None, shortcuts: list[dict] | None = None,
                 home_tab: bool = False, dm_read_only: bool = False, events: list[str] | None = None,
                 people: list[str] | None = None, panel: Callable[[], dict] | None = None,
                 ack_timeout: float = 3.0, retry_delays: tuple[float, ...] = (0.0, 60.0, 300.0),
                 functions: dict[str, dict] | None = None, unfurl_domains: list[str] | None = None,
                 install_url: str = ""):
        self.s, self.request_url, self.secret = state, request_url, signing_secret
        self.install_url = install_url     # the app's Add to Slack page (installs by OAuth), shown on the page
        self.app_name, self.home_tab, self.panel, self.ack_timeout = app_name, home_tab, panel, ack_timeout
        self.dm_read_only = dm_read_only   # the manifest's messages_tab_read_only_enabled
        self.events = set(events or [])    # the bot events the app subscribed to
        self.commands = commands or []     # manifest entries: {command, description, usage_hint}
        self.shortcuts = shortcuts or []   # manifest entries: {name, type, callback_id, description}
        self.people = people
        self.version = 0
        self._event = asyncio.Event()
        self.stacks: dict[str, list[str]] = {}         # user -> open modal view ids, top last
        self.errors: dict[str, dict[str, str]] = {}    # view id -> block id -> inline error
        self.notices: dict[str, str] = {}              # view id -> Slack's own message on top of it
        self.trigger_users: dict[str, str] = {}        # trigger_id -> who it was issued for
        self.local: list[dict] = []                    # ephemeral messages Slack itself shows
        self.dm_peers: dict[str, str] = {}             # DM channel id -> the other side (default: the app)
        self.responders: dict[str, tuple[str, str, str | None]] = {}  # response_url key -> (user, channel, thread)
        self.origin = ""                               # this server's base URL, for response_urls
        self.http: aiohttp.ClientSession | None = None
        self.retry_delays = retry_delays               # Slack's event redeliveries (seconds after a failure)
        self.deliveries: list[dict] = []               # every event delivery: event_id, type, retry, status
        self._tasks: set[asyncio.Task] = set()
        if functions is not None:          # the manifest's `functions` (None: the state's default)
            state.app_functions = dict(functions)
        if unfurl_domains is not None:     # the manifest's `features.unfurl_domains`
            state.unfurl_domains = list(unfurl_domains)
        self.runs: list[str] = []          # function_execution_ids started from here, oldest first
        state.listeners.append(self._on_call)

    # -- changes ------------------------------------------------------------------------------
    def changed(self) -> None:
        """Something anybody might see changed: wake the long polls."""
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    def _on_call(self, call: dict) -> None:
        method, args, response = call["method"], call["args"], call["response"]
        if not call.get("error") and method in ("views.open", "views.push"):
            user = self.trigger_users.get(args.get("trigger_id") or args.get("interactivity_pointer") or "")
            if user:
                stack = self.stacks.setdefault(user, [])
                if method == "views.open":
                    stack.clear()
                stack.append(response["view"]["id"])
        elif not call.get("error") and method == "views.update":
            self.errors.pop(response["view"]["id"], None)
            self.notices.pop(response["view"]["id"], None)
        elif not call.get("error") and method == "chat.postMessage":
            self._message_events(response["channel"], response["message"])  # the app hears itself too
        self.changed()

    # -- what a person sees -----------------------------------------------------------------------
    def person_ids(self) -> list[str]:
        users = self.s.users.values()
        return self.people or [u["id"] for u in users if not (u["is_bot"] or u["deleted"])]

    # -- workspaces: a person acts in their own one (several: an Enterprise Grid org) ----------------
    def team_of(self, user: str) -> str:
        return (self.s.users.get(user) or {}).get("team_id") or self.s.team_id

    def _channel_team(self, channel: str) -> str:
        ch = self.s.channels.get(channel) or {}
        if ch.get("is_im") and ch.get("user") and channel not in self.s.channel_teams:
            return self.team_of(ch["user"])  # a DM with the app: in that person's workspace
        return self.s.channel_teams.get(channel) or self.s.team_id

    def _org(self, team: str) -> tuple[dict, str | None, bool]:
        """The workspace, its Enterprise Grid org, and whether the app is installed org-wide there
        (what Slack says in ``enterprise_id`` / ``is_enterprise_install`` of what it sends)."""
        s = self.s
        ws = s.workspaces.get(team) or {"id": s.team_id, "name": s.team, "domain": s.domain}
        enterprise = ws.get("enterprise_id") or (s.enterprise_id if team == s.team_id else None)
        org = bool(enterprise) and any(i.get("is_enterprise_install") and i.get("enterprise_id") == enterprise
                                       for i in s.bot_tokens.values())
        return ws, enterprise, org

    def _name(self, user: dict) -> str:
        return user["profile"].get("real_name") or user.get("real_name") or user["name"]

    def snapshot(self, me: str) -> dict:
        s = self.s
        team = self.team_of(me)
        channels = []
        for c in s.channels.values():
            if (c["is_im"] and c.get("user") != me) or (not c["is_im"] and self._channel_team(c["id"]) != team):
                continue
            peer = s.users.get(self.dm_peers.get(c["id"], s.bot_user_id)) if c["is_im"] else None
            channels.append({"id": c["id"], "name": c["name"], "is_im": c["is_im"],
                             "label": self._name(peer) if peer else c["name"],
                             "app_dm": c["is_im"] and c["id"] not in self.dm_peers})
        channels.sort(key=lambda c: (c["is_im"], c["label"].lower()))
        ephemeral = [{"channel": e["channel"], "thread_ts": e.get("thread_ts"), "ts": e["message_ts"],
                      "user": s.bot_user_id, "text": e.get("text", ""), "blocks": e.get("blocks"), "ephemeral": True}
                     for e in s.ephemeral if e["user"] == me] + [e for e in self.local if e["to"] == me]
        users = {u["id"]: {"name": self._name(u), "handle": u["name"], "is_bot": u["is_bot"]} for u in s.users.values()}
        users[SLACKBOT] = {"name": "Slackbot", "handle": "slackbot", "is_bot": True}
        stack = self.stacks.get(me) or []
        modal = None
        if stack and stack[-1] in s.views:
            view = s.views[stack[-1]]
            modal = {"id": view["id"], "hash": view["hash"], "view": view, "depth": len(stack),
                     "errors": self.errors.get(view["id"], {}), "notice": self.notices.get(view["id"])}
        people = [u for u in self.person_ids() if u in s.users]
        workspaces = []  # the workspaces people can switch between, each with whom to be there
        for uid in people:
            if all(w["id"] != self.team_of(uid) for w in workspaces):
                workspaces.append({"id": self.team_of(uid), "name": self._org(self.team_of(uid))[0]["name"],
                                   "person": uid})
        return {
            "version": self.version, "me": me, "team": self._org(team)[0]["name"], "team_id": team,
            "workspaces": workspaces if len(workspaces) > 1 else [], "install_url": self.install_url,
            "app": {"name": self.app_name, "bot_user": s.bot_user_id, "home_tab": self.home_tab,
                    "dm_read_only": self.dm_read_only,
                    "commands": self.commands, "shortcuts": [x for x in self.shortcuts if x.get("type") == "message"]},
            "people": [{"id": u, "name": self._name(s.users[u])} for u in people if self.team_of(u) == team],
            "users": users, "channels": channels,
            "channel_names": {c["id"]: c["name"] for c in s.channels.values()},
            "messages": {c["id"]: s.messages.get(c["id"], []) for c in channels},
            "ephemeral": ephemeral, "modal": modal, "home": s.home_views.get(me),
            "panel": self.panel() if self.panel else None,
            "unfurls": {key: {"unfurls": u, "entity": key in s.unfurl_metadata} for key, u in s.unfurls.items()
                        if key.split(":")[0] in {c["id"] for c in channels}},
            "workflows": {"functions": [s.function_definition(cid) for cid in s.app_functions],
                          "runs": [{k: v for k, v in s.executions[r].items() if k not in ("bot_access_token",)}
                                   for r in reversed(self.runs) if s.executions[r]["user"] == me][:5]},
        }

    def _slackbot(self, user: str, channel: str, text: str, thread_ts: str | None = None,
                  author: str = SLACKBOT) -> None:
        """An ephemeral message from Slack itself (or a command's answer) to one person."""
        self.local.append({"to": user, "channel": channel, "thread_ts": thread_ts, "ts": self.s.next_ts(),
                           "user": author, "text": text, "ephemeral": True})
        self.changed()

    # -- talking to the app -----------------------------------------------------------------------
    def _trigger(self, user: str) -> str:
        trigger_id = self.s.issue_trigger_id(self.team_of(user))
        self.trigger_users[trigger_id] = user
        return trigger_id

    def _user_ref(self, user: str) -> dict:
        name = self.s.users[user]["name"]
        return {"id": user, "username": name, "name": name, "team_id": self.team_of(user)}

    def _response_url(self, user: str, channel: str, thread_ts: str | None = None) -> str:
        key = secrets.token_urlsafe(12)
        self.responders[key] = (user, channel, thread_ts)
        return f"{self.origin}/ui/respond/{key}"

    async def send(self, body: str, content_type: str = FORM) -> tuple[int, str]:
        """POST a signed request to the app; (HTTP status, body), status 0 when it did not answer in time."""
        status, text, _ = await self._post(body, content_type)
        return status, text

    async def _post(self, body: str, content_type: str, extra: dict[str, str] | None = None) -> tuple[int, str, dict]:
        if self.http is None:
            self.http = aiohttp.ClientSession()
        ts = str(int(time.time()))
        base = f"v0:{ts}:{body}".encode()
        signature = "v0=" + hmac.new(self.secret.encode(), base, hashlib.sha256).hexdigest()
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
                   "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)", **(extra or {})}
        try:
            async with self.http.post(self.request_url, data=body.encode(), headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=self.ack_timeout)) as r:
                return r.status, await r.text(), {k.lower(): v for k, v in r.headers.items()}
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return 0, "", {}

    # -- events -------------------------------------------------------------------------------------
    def _hears(self, channel: str) -> bool:
        """Does Slack send the app events from this conversation? Only where its bot user is a member
        (its own DM included; DMs between others or with another app: no)."""
        ch = self.s.channels.get(channel)
        if ch is None:
            return False
        if ch["is_im"]:
            return channel not in self.dm_peers and ch["bot_is_member"]
        return bool(ch["bot_is_member"])

    def _message_events(self, channel: str, message: dict) -> None:
        if not self._hears(channel):
            return
        kind = {"im": "im", "group": "groups", "channel": "channels"}[self.s.channel_type(channel)]
        if f"message.{kind}" in self.events:
            self.dispatch(self.s.message_event(channel, message))
        if kind != "im" and "app_mention" in self.events and f"<@{self.s.bot_user_id}>" in (message.get("text") or ""):
            self.dispatch(self.s.mention_event(channel, message))

    def dispatch(self, event: dict) -> None:
        """Deliver an event to the app in the background, as Slack does."""
        team = self._channel_team(event["channel"]) if isinstance(event.get("channel"), str) else \
            self.team_of(event.get("user") or "")
        body = self.s.event_callback(event, team_id=team)
        _, enterprise, org = self._org(team)
        body.update(enterprise_id=enterprise, is_enterprise_install=org)
        body["authorizations"][0].update(enterprise_id=enterprise, is_enterprise_install=org)
        task = asyncio.get_running_loop().create_task(self._deliver(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, body: dict) -> None:
        raw, reason = json.dumps(body), ""
        for retry, delay in enumerate((0.0, *self.retry_delays)):
            if retry:
                await asyncio.sleep(delay)
            extra = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": reason} if retry else {}
            status, _, headers = await self._post(raw, "application/json", extra)
            self.deliveries.append({"event_id": body["event_id"], "type": body["event"]["type"], "retry": retry,
                                    "status": status})
            if 200 <= status < 300 or headers.get("x-slack-no-retry") == "1":
                return
            reason = "http_timeout" if status == 0 else "http_error"

    def _link_events(self, channel: str, message: dict) -> None:
        if "link_shared" in self.events:
            event = self.s.link_shared_event(channel, message)
            if event is not None:
                self.dispatch(event)

    def run_workflow(self, user: str, callback_id: str | None, inputs: dict) -> dict:
        """Workflow Builder runs the app's step: ``function_executed`` goes to the app (no subscription
        needed: a declared function gets it). Returns the run (``SlackState.executions``)."""
        callback_id = callback_id or next(iter(self.s.app_functions), None)
        if callback_id not in self.s.app_functions:
            raise web.HTTPNotFound(text=f"the app declares no function {callback_id!r}")
        if not isinstance(inputs, dict):
            raise web.HTTPBadRequest(text="inputs must be an object")
        event = self.s.function_executed_event(callback_id, inputs, user=user)
        self.runs.append(event["function_execution_id"])
        self.dispatch(event)
        self.changed()
        return self.s.executions[event["function_execution_id"]]

    def entity_details(self, user: str, channel: str, ts: str, url: str) -> str | None:
        """A click on a Work Object unfurl: ``entity_details_requested`` with a fresh trigger_id."""
        metadata = self.s.unfurl_metadata.get(f"{channel}:{ts}") or {}
        entity = next((e for e in metadata.get("entities") or [] if e.get("url") == url or e.get("app_unfurl_url") == url),
                      None)
        if "entity_details_requested" not in self.events:
            return None
        trigger_id = self._trigger(user)
        domain = (urllib.parse.urlparse(url).hostname or "").lower()
        event = {"type": "entity_details_requested", "user": user,
                 "external_ref": (entity or {}).get("external_ref") or {}, "entity_url": (entity or {}).get("url", url),
                 "link": {"url": url, "domain": domain}, "app_unfurl_url": url, "event_ts": self.s.next_ts(),
                 "trigger_id": trigger_id, "user_locale": "en-US", "channel": channel, "message_ts": ts}
        message = self.s.find_message(channel, ts) or {}
        if message.get("thread_ts"):
            event["thread_ts"] = message["thread_ts"]
        self.dispatch(event)
        return trigger_id

    def react(self, user: str, channel: str, ts: str, name: str) -> bool:
        """``user`` adds the reaction, or takes it back when they had it; True when added."""
        message = self.s.find_message(channel, ts)
        if message is None:
            raise web.HTTPNotFound(text="no such message")
        had = any(r["name"] == name and user in r["users"] for r in message.get("reactions") or [])
        try:
            if had:
                self.s.remove_reaction(channel, ts, user, name)
            else:
                self.s.add_reaction(channel, ts, user, name)
        except SlackError as exc:
            raise web.HTTPBadRequest(text=exc.error) from None
        self.changed()
        kind = "reaction_removed" if had else "reaction_added"
        if self._hears(channel) and kind in self.events:
            self.dispatch(self.s.reaction_event(channel, ts, user, name, removed=had))
        return not had

    async def send_payload(self, payload: dict) -> tuple[int, str]:
        return await self.send(urllib.parse.urlencode({"payload": json.dumps(payload)}))

    def _base_payload(self, kind: str, user: str) -> dict:
        ws, enterprise, org = self._org(self.team_of(user))
        return {"type": kind, "token": "sandbox-verification-token", "team": {"id": ws["id"], "domain": ws["domain"]},
                "user": self._user_ref(user), "api_app_id": self.s.app_id, "trigger_id": self._trigger(user),
                "is_enterprise_install": org,
                "enterprise": {"id": enterprise, "name": "Sandbox Org"} if enterprise else None}

    def _answer(self, user: str, channel: str, thread_ts: str | None, body: str) -> None:
        """An app's answer with a message (command ack or response_url): ephemeral or in the channel."""
        if not body.strip():
            return
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"text": body}
        if not isinstance(answer, dict) or not (answer.get("text") or answer.get("blocks")):
            return
        if answer.get("response_type") == "in_channel":
            message = {"type": "message", "user": self.s.bot_user_id, "bot_id": self.s.bot_id,
                       "text": answer.get("text") or "", **({"blocks": answer["blocks"]} if answer.get("blocks") else {})}
            self.s._store(channel, message, thread_ts)
            self.changed()
        else:
            self._slackbot(user, channel, answer.get("text") or "", thread_ts, author=self.s.bot_user_id)

    # -- what a person does -----------------------------------------------------------------------
    def post_message(self, user: str, channel: str, text: str, thread_ts: str | None) -> dict:
        text = _escape(text)
        people = self.person_ids()  # a name shared by several users means the one people can be, or a U... id
        handles = {u["name"]: u["id"] for u in sorted(self.s.users.values(),
                                                      key=lambda u: (u["id"] in people, u["id"][0] == "U"))
                   if not u["deleted"]}
        handles.setdefault(self.app_name.replace(" ", ""), self.s.bot_user_id)  # @Tickets: the app
        text = re.sub(r"(?<!\w)@([\w.-]+)", lambda m: f"<@{handles[m[1]]}>" if m[1] in handles else m[0], text)
        message = self.s.post_user_message(channel, user, text, thread_ts or None)
        self.changed()
        self._message_events(channel, message)
        self._link_events(channel, message)
        return message

    async def command(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> None:
        name, _, rest = text.strip().partition(" ")
        if name not in {c.get("command") for c in self.commands}:
            self._slackbot(user, channel, f"`{_escape(name)}` is not a valid command. In Slack, all messages "
                           "that start with the \"/\" character are interpreted as commands.", thread_ts)
            return
        s, ch = self.s, self.s.channels[channel]
        ws, enterprise, org = self._org(self.team_of(user))
        form = {"token": "sandbox-verification-token", "team_id": ws["id"], "team_domain": ws["domain"],
                "channel_id": channel, "channel_name": "directmessage" if ch["is_im"] else ch["name"],
                "user_id": user, "user_name": s.users[user]["name"], "command": name, "text": rest.strip(),
                "api_app_id": s.app_id, "is_enterprise_install": "true" if org else "false",
                **({"enterprise_id": enterprise, "enterprise_name": "Sandbox Org"} if enterprise else {}),
                "response_url": self._response_url(user, channel, thread_ts), "trigger_id": self._trigger(user)}
        status, body = await self.send(urllib.parse.urlencode(form))
        if status != 200:
            error = "operation_timeout" if status == 0 else "dispatch_failed"
            self._slackbot(user, channel, f"{name} failed with the error \"{error}\"", thread_ts)
            return
        self._answer(user, channel, thread_ts, body)

    async def shortcut(self, user: str, channel: str, ts: str, callback_id: str) -> None:
        message = self.s.find_message(channel, ts)
        ch = self.s.channels.get(channel)
        if message is None or ch is None:
            raise web.HTTPNotFound(text="no such message")
        payload = {**self._base_payload("message_action", user), "callback_id": callback_id,
                   "action_ts": f"{time.time():.6f}", "message_ts": ts, "message": copy.deepcopy(message),
                   "channel": {"id": channel, "name": "directmessage" if ch["is_im"] else ch["name"]},
                   "response_url": self._response_url(user, channel, message.get("thread_ts"))}
        status, _ = await self.send_payload(payload)
        if status != 200:
            self._slackbot(user, channel, f"Darn – that shortcut didn’t work (error message: "
                           f"`{'operation_timeout' if status == 0 else 'dispatch_failed'}`).", message.get("thread_ts"))

    def _state_values(self, view: dict, raw: dict) -> dict:
        values = {}
        for block in view.get("blocks") or []:
            element = block.get("element") or {}
            if block.get("type") == "input" and element.get("type"):
                action_id = element.get("action_id") or block["block_id"]
                values[block["block_id"]] = {action_id: element_state(element, raw.get(block["block_id"]))}
        return values

    def _top(self, user: str, view_id: str) -> tuple[list[str], dict]:
        stack = self.stacks.get(user) or []
        if not stack or stack[-1] != view_id or view_id not in self.s.views:
            raise web.HTTPConflict(text="that view is not open any more")
        return stack, self.s.views[view_id]

    async def submit(self, user: str, view_id: str, raw: dict) -> dict:
        stack, view = self._top(user, view_id)
        view["state"] = {"values": self._state_values(view, raw)}
        self.errors.pop(view_id, None)
        self.notices.pop(view_id, None)
        self.changed()
        payload = {**self._base_payload("view_submission", user), "view": copy.deepcopy(view), "response_urls": []}
        status, body = await self.send_payload(payload)
        try:
            answer = json.loads(body) if body.strip() else {}
            if status != 200 or not isinstance(answer, dict):
                raise ValueError(f"HTTP {status}")
            action = answer.get("response_action")
            if action is None:
                if view_id in stack:  # (the app may have opened another view meanwhile)
                    stack.remove(view_id)
            elif action == "errors":
                self.errors[view_id] = {str(k): str(v) for k, v in (answer.get("errors") or {}).items()}
            elif action == "update":
                # The app may already have changed the view with views.update (the submission's ack
                # and its next call race): what it set later stays, as its newer word.
                if self.s.views.get(view_id, view)["hash"] == view["hash"]:
                    slack._save_view(self.s, answer.get("view"), (view["type"],), view)
                elif slack.validate_view(answer.get("view"), (view["type"],)):
                    raise ValueError("invalid view")
            elif action == "push":
                pushed = slack._save_view(self.s, answer.get("view"))
                pushed.update(previous_view_id=view_id, root_view_id=stack[0])
                stack.append(pushed["id"])
            elif action == "clear":
                stack.clear()
            else:
                raise ValueError(f"unknown response_action {action!r}")
        except (ValueError, SlackError):
            self.notices[view_id] = TROUBLE
            action = "trouble"
        self.changed()
        return {"response_action": action}

    async def close(self, user: str, view_id: str, everything: bool) -> None:
        stack, view = self._top(user, view_id)
        closed = list(stack) if everything else [view_id]
        del stack[len(stack) - len(closed):]
        self.changed()
        if view.get("notify_on_close"):
            payload = {**self._base_payload("view_closed", user), "view": copy.deepcopy(view),
                       "is_cleared": everything and len(closed) > 1}
            await self.send_payload(payload)

    def _find_element(self, blocks: list[dict], block_id: str, action_id: str) -> dict:
        for block in blocks or []:
            if block.get("block_id") != block_id:
                continue
            for el in [block.get("element"), block.get("accessory"), *(block.get("elements") or [])]:
                if isinstance(el, dict) and (el.get("action_id") or block_id) == action_id:
                    return el
        raise web.HTTPNotFound(text="no such element")

    async def action(self, user: str, body: dict) -> None:
        """block_actions: a button, or a changed input with dispatch_action, in a view or a message."""
        s, payload = self.s, self._base_payload("block_actions", user)
        if body.get("view_id"):
            view = s.views.get(body["view_id"])
            if view is None:
                raise web.HTTPNotFound(text="no such view")
            if view["type"] == "modal":
                view["state"] = {"values": self._state_values(view, body.get("values") or {})}
            payload.update(container={"type": "view", "view_id": view["id"]}, view=copy.deepcopy(view))
            blocks = view["blocks"]
        else:
            message = s.find_message(body.get("channel", ""), body.get("ts"))
            if message is None:
                raise web.HTTPNotFound(text="no such message")
            payload.update(container={"type": "message", "message_ts": message["ts"], "channel_id": body["channel"],
                                      "is_ephemeral": False},
                           channel={"id": body["channel"], "name": s.channels[body["channel"]]["name"]},
                           message=copy.deepcopy(message),
                           response_url=self._response_url(user, body["channel"], message.get("thread_ts")))
            blocks = message.get("blocks") or []
        element = self._find_element(blocks, body.get("block_id"), body.get("action_id"))
        act = {"block_id": body["block_id"], "action_id": body["action_id"], "action_ts": f"{time.time():.6f}"}
        if element["type"] == "button":
            act.update(type="button", text=element.get("text"), value=element.get("value"))
        else:
            act.update(element_state(element, (body.get("values") or {}).get(body["block_id"])))
        payload["actions"] = [act]
        status, _ = await self.send_payload(payload)
        if status != 200 and body.get("view_id") in self.stacks.get(user, []):
            self.notices[body["view_id"]] = TROUBLE
            self.changed()

    async def home_opened(self, user: str) -> None:
        s = self.s
        if "app_home_opened" not in self.events:
            return
        event = {"type": "app_home_opened", "user": user, "channel": s.dm_with(user)["id"], "tab": "home",
                 "event_ts": f"{time.time():.6f}"}
        if user in s.home_views:
            event["view"] = s.home_views[user]
        team = self.team_of(user)
        _, enterprise, org = self._org(team)
        body = {"token": "sandbox-verification-token", "team_id": team, "api_app_id": s.app_id,
                "enterprise_id": enterprise, "is_enterprise_install": org,
                "event": event, "type": "event_callback", "event_id": "Ev" + secrets.token_hex(5).upper(),
                "event_time": int(time.time()), "is_ext_shared_channel": False,
                "authorizations": [{"enterprise_id": enterprise, "team_id": team, "user_id": s.bot_user_id,
                                    "is_bot": True, "is_enterprise_install": org}]}
        await self.send(json.dumps(body), "application/json")

    # -- HTTP -------------------------------------------------------------------------------------
    async def _state(self, request: web.Request) -> web.Response:
        people = self.person_ids()
        me = request.query.get("user") if request.query.get("user") in self.s.users else people[0]
        try:
            since = int(request.query.get("since", "-1"))
        except ValueError:
            since = -1
        if self.version <= since:
            try:
                await asyncio.wait_for(self._event.wait(), 25)
            except asyncio.TimeoutError:
                pass
        return web.json_response(self.snapshot(me), dumps=slack._dumps)

    async def _body(self, request: web.Request) -> dict:
        self.origin = str(request.url.origin())
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="expected a JSON body") from None
        if not isinstance(body, dict) or body.get("user") not in self.s.users:
            raise web.HTTPBadRequest(text="unknown user")
        channel = body.get("channel")
        if channel is not None and channel not in self.s.channels:
            raise web.HTTPNotFound(text="no such channel")
        return body

    async def _message(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        text = (b.get("text") or "").strip()
        if not text or not b.get("channel"):
            raise web.HTTPBadRequest(text="a message needs a channel and text")
        if text.startswith("/"):
            await self.command(b["user"], b["channel"], text, b.get("thread_ts"))
            return web.json_response({"ok": True, "command": text.split()[0]})
        return web.json_response({"ok": True, "ts": self.post_message(b["user"], b["channel"], text, b.get("thread_ts"))["ts"]})

    async def _shortcut(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        await self.shortcut(b["user"], b.get("channel", ""), b.get("ts", ""), b.get("callback_id", ""))
        return web.json_response({"ok": True})

    async def _submit(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        return web.json_response({"ok": True, **await self.submit(b["user"], b.get("view_id", ""), b.get("values") or {})})

    async def _action(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        await self.action(b["user"], b)
        return web.json_response({"ok": True})

    async def _close(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        await self.close(b["user"], b.get("view_id", ""), bool(b.get("all")))
        return web.json_response({"ok": True})

    async def _react(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        added = self.react(b["user"], b.get("channel", ""), b.get("ts", ""), (b.get("name") or "").strip(":"))
        return web.json_response({"ok": True, "added": added})

    async def _home(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        await self.home_opened(b["user"])
        return web.json_response({"ok": True})

    async def _workflow(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        run = self.run_workflow(b["user"], b.get("callback_id"), b.get("inputs") or {})
        return web.json_response({"ok": True, "function_execution_id": run["function_execution_id"]})

    async def _entity_details(self, request: web.Request) -> web.Response:
        b = await self._body(request)
        if self.s.find_message(b.get("channel", ""), b.get("ts")) is None:
            raise web.HTTPNotFound(text="no such message")
        return web.json_response({"ok": True, "trigger_id": self.entity_details(b["user"], b["channel"], b["ts"],
                                                                             b.get("url") or "")})

    async def _respond(self, request: web.Request) -> web.Response:
        if request.match_info["key"] not in self.responders:
            raise web.HTTPNotFound(text="unknown response_url")
        user, channel, thread_ts = self.responders[request.match_info["key"]]
        self._answer(user, channel, thread_ts, await request.text())
        return web.Response(text="ok")

    async def _page(self, request: web.Request) -> web.FileResponse:
        name = request.match_info.get("name", "index.html")
        if name not in {p.name for p in STATIC.iterdir()}:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def _shutdown(self, _app: web.Application) -> None:
        self.changed()  # long polls answer now rather than hold up the shutdown

    async def _cleanup(self, _app: web.Application) -> None:
        for task in list(self._tasks):  # deliveries still waiting to be retried
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.close()

    def install(self, app: web.Application) -> None:
        """Add the page and the /ui/ endpoints to the stand-in's application (``slack.create_app``)."""
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._page)
        app.router.add_get("/ui/state", self._state)
        for path, handler in (("message", self._message), ("shortcut", self._shortcut), ("submit", self._submit),
                              ("action", self._action), ("close", self._close), ("home", self._home),
                              ("react", self._react), ("workflow", self._workflow),
                              ("entity_details", self._entity_details),
                              ("respond/{key}", self._respond)):
            app.router.add_post(f"/ui/{path}", handler)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
