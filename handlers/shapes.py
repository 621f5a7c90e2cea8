"""What a Slack request must look like before Bolt routes it.

Bolt's request parsing, its listener matchers and built-in middleware, and the bot's listeners read
fields of the body without checking their types: `body["actions"][0].get("block_id")`,
`"type" in body["event"]`, a set of `event["subtype"]`, `re.search(..., event["text"])`. A signed
body whose `actions` is a string, or whose `event.item` is a list, would raise inside Bolt (HTTP
500, a traceback). `problem(data)` checks every field they read, by the payload's `type`, and names
the first one that is not what Slack sends; the caller answers 400 (HTTP) or drops the envelope
(Socket Mode) with one log line. Fields nobody reads are not checked, and null is accepted wherever
Slack may send it (`"team": null` in org-wide installs, `"close": null` in views).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

# --- shapes -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Obj:
    """A JSON object: each listed key, when present and not null, has its shape; `required` keys
    must be present and not null."""

    keys: Mapping[str, "Shape"]
    required: frozenset[str] = frozenset()
    types = (dict,)

    def needing(self, *keys: str, **more: "Shape") -> "Obj":
        """The same object with these keys required (and these shapes added or replaced)."""
        return Obj({**self.keys, **more}, self.required | set(keys) | set(more))


@dataclass(frozen=True, eq=False)
class ListOf:
    item: "Shape"
    non_empty: bool = False
    types = (list,)


@dataclass(frozen=True, eq=False)
class OneOf:
    options: tuple["Shape", ...]

    @property
    def types(self) -> tuple[type, ...]:
        return tuple(t for option in self.options for t in _types(option))


Shape = Union[tuple[type, ...], Obj, ListOf, OneOf]

STR: Shape = (str,)
BOOL: Shape = (bool,)
NUMBER: Shape = (int, float)
OBJECT: Shape = (dict,)
# Objects Bolt reads with `body.get("view", {}).get(...)` or `"view" in body and body["view"].get(...)`:
# present, they must not be null (Slack leaves them out instead).
NEVER_NULL = frozenset({"event", "view", "actions", "container", "message", "previous_message", "item",
                        "authorizations", "state", "function"})
NAMES = {str: "a string", bool: "true or false", int: "a number", float: "a number", dict: "an object", list: "a list"}


def _strings(*names: str) -> dict[str, Shape]:
    return {name: STR for name in names}


def _types(shape: Shape) -> tuple[type, ...]:
    """The JSON types a value of this shape can have."""
    return shape if isinstance(shape, tuple) else shape.types


def _describe(shape: Shape) -> str:
    if isinstance(shape, ListOf):
        item = " or ".join(dict.fromkeys(NAMES[t].removeprefix("a ").removeprefix("an ") for t in _types(shape.item)))
        return f"a {'non-empty ' if shape.non_empty else ''}list of {item}s"
    return " or ".join(dict.fromkeys(NAMES[t] for t in _types(shape)))


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is no number
    return isinstance(value, types)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check(shape: Shape, value: Any, where: str) -> str | None:
    """Why `value` (at `where`) does not have `shape`, or None. The first field in error is named,
    in the order of the body."""
    if isinstance(shape, OneOf):
        for option in shape.options:
            if _is(value, _types(option)):
                return check(option, value, where)
        return f"{where} is not {_describe(shape)}"
    if not _is(value, _types(shape)):
        return f"{where} is not {_describe(shape)}"
    if isinstance(shape, ListOf):
        if shape.non_empty and not value:
            return f"{where} is an empty list"
        for i, item in enumerate(value):
            if found := check(shape.item, item, f"{where}[{i}]"):
                return found
    elif isinstance(shape, Obj):
        for key in sorted(shape.required):
            if value.get(key) is None:
                return f"{_at(where, key)} is missing"
        keys = shape.keys
        for key, item in value.items():  # only the fields present: a body has fewer than the shape names
            inner = keys.get(key)
            if inner is None:
                continue
            if item is None:
                if key in NEVER_NULL:
                    return f"{_at(where, key)} is null"
                continue
            if isinstance(inner, tuple) and _is(item, inner):
                continue  # a string, a number: nothing inside to check
            if found := check(inner, item, _at(where, key)):
                return found
    return None


# --- what Slack sends, as far as Bolt and the bot read it -------------------------------------

TEAM = OneOf((STR, Obj(_strings("id", "domain", "enterprise_id", "enterprise_name"))))
ENTERPRISE = OneOf((STR, Obj(_strings("id", "name"))))
USER = OneOf((STR, Obj(_strings("id", "team_id", "name", "username"))))
CHANNEL = OneOf((STR, Obj(_strings("id", "name"))))
AUTHORIZATION = Obj({**_strings("enterprise_id", "team_id", "user_id"), "is_bot": BOOL, "is_enterprise_install": BOOL})
STATE = Obj({"values": OBJECT})
BLOCK = Obj({**_strings("block_id", "type"), "optional": BOOL, "dispatch_action": BOOL})
MESSAGE = Obj({
    **_strings("type", "subtype", "text", "user", "bot_id", "ts", "thread_ts", "team", "app_id", "channel"),
    "hidden": BOOL, "blocks": ListOf(OBJECT), "user_profile": OBJECT,
})
VIEW = Obj({
    **_strings("id", "type", "callback_id", "private_metadata", "hash", "external_id", "root_view_id",
               "previous_view_id", "app_installed_team_id", "team_id", "app_id", "bot_id"),
    "title": OBJECT, "close": OBJECT, "submit": OBJECT, "blocks": ListOf(BLOCK), "state": STATE,
    "notify_on_close": BOOL, "clear_on_close": BOOL,
})
ACTION = Obj({
    **_strings("action_id", "block_id", "type", "value", "action_ts", "selected_date", "selected_time",
               "selected_user", "selected_channel", "selected_conversation"),
    "selected_option": OBJECT, "selected_options": ListOf(OBJECT), "selected_users": ListOf(STR),
    "text": OBJECT,
})
CONTAINER = Obj({**_strings("type", "view_id", "message_ts", "channel_id", "thread_ts"), "is_ephemeral": BOOL,
                 "is_app_unfurl": BOOL})
RESPONSE_URL = Obj(_strings("block_id", "action_id", "channel_id", "response_url"))
EVENT = Obj({
    **_strings("type", "subtype", "text", "ts", "thread_ts", "event_ts", "channel_type", "bot_id", "tab",
               "reaction", "item_user", "user_team", "source_team", "app_id", "message_ts", "unfurl_id", "source",
               "trigger_id", "entity_url", "app_unfurl_url"),
    "user": USER, "channel": CHANNEL, "team": TEAM, "hidden": BOOL,
    "item": Obj(_strings("type", "channel", "ts", "file", "file_comment")),
    "message": MESSAGE, "previous_message": MESSAGE, "view": VIEW, "blocks": ListOf(OBJECT), "files": ListOf(OBJECT),
    "function": Obj(_strings("callback_id")), "function_execution_id": STR, "bot_access_token": STR,
    "inputs": OBJECT, "links": ListOf(Obj(_strings("domain", "url"))), "link": Obj(_strings("domain", "url")),
    "external_ref": Obj(_strings("id", "type")),
}, frozenset({"type"}))

ENVELOPE = Obj({
    **_strings("type", "token", "api_app_id", "team_id", "enterprise_id", "user_id", "context_team_id",
               "context_enterprise_id", "event_id", "trigger_id", "response_url", "callback_id", "action_ts",
               "message_ts", "action_id", "block_id", "challenge"),
    "event_time": NUMBER, "is_enterprise_install": OneOf((BOOL, STR)), "is_ext_shared_channel": BOOL,
    "team": TEAM, "enterprise": ENTERPRISE, "user": USER, "channel": CHANNEL,
    "authorizations": ListOf(AUTHORIZATION),
    "container": CONTAINER, "message": MESSAGE, "view": VIEW, "state": STATE, "actions": ListOf(ACTION),
    "response_urls": ListOf(RESPONSE_URL), "event": EVENT,
}, frozenset({"type"}))

_PERSON = Obj(_strings("id", "team_id", "name", "username"), frozenset({"id"}))
_INTERACTION = ENVELOPE.needing(user=_PERSON)
BY_TYPE: dict[str, Obj] = {
    "event_callback": ENVELOPE.needing("event"),
    "url_verification": ENVELOPE.needing("challenge"),
    "block_actions": _INTERACTION.needing(actions=ListOf(ACTION.needing("action_id", "block_id"), non_empty=True)),
    "interactive_message": _INTERACTION.needing("callback_id", actions=ListOf(ACTION, non_empty=True)),
    "view_submission": _INTERACTION.needing(view=VIEW.needing("id", "type", "callback_id")),
    "view_closed": _INTERACTION.needing(view=VIEW.needing("id", "type", "callback_id")),
    "message_action": _INTERACTION.needing("callback_id"),
    "shortcut": _INTERACTION.needing("callback_id"),
    "block_suggestion": _INTERACTION.needing("action_id"),
    "dialog_submission": _INTERACTION.needing("callback_id"),
    "dialog_cancellation": _INTERACTION.needing("callback_id"),
    "dialog_suggestion": _INTERACTION.needing("callback_id"),
    "workflow_step_edit": _INTERACTION.needing("callback_id"),
}
COMMAND = Obj(_strings("command", "text", "user_id", "channel_id", "team_id", "trigger_id", "response_url"),
              frozenset({"command"}))


def problem(data: object, *, command: bool = False) -> str | None:
    """Why this body (as Bolt parses it) is not a Slack request the bot can route, or None.
    `command`: a slash command's form fields (no `type`)."""
    if not isinstance(data, dict):
        return "the body is not a JSON object"
    if command:
        return check(COMMAND, data, "")
    if not isinstance(data.get("type"), str):
        return "type is missing" if data.get("type") is None else "type is not a string"
    return check(BY_TYPE.get(data["type"], ENVELOPE), data, "")
