"""The *Create a ticket* workflow step (a custom step for Workflow Builder, `function_executed`).

A step's execution is journaled like a form (intake, dedupe key `function:<function_execution_id>`,
so Slack's redeliveries, restarts and other replicas make it once) and goes through the same steps:
its inputs are checked and matched here (`resolve`, called by the create step), the ticket is
created and completed as any other, and the `function` step ends the execution in Slack with
`functions.completeSuccess` (the outputs) or `functions.completeError` (a sentence for whoever
built the workflow). Those two calls use the execution's own token (`bot_access_token` in the
event), as Bolt does; it is kept in the journal only until the execution is ended.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients import secrets
from clients.base import BackendError, FormField, TicketBackend

from ..journal.storage import Submission, journaled
from ..slack.views import Origin
from .context import WORKFLOW, Context
from .worker import Failure

log = logging.getLogger(__name__)

FUNCTION = "function"  # the step that ends the execution in Slack
CALLBACK_ID = "create_ticket"  # manifest.yml: functions.create_ticket
# What Slack answers when the run is over: it timed out or was cancelled meanwhile (its token is no
# longer taken), or an earlier attempt of this step ended it and its answer was lost.
EXECUTION_GONE = {"invalid_auth", "token_expired", "token_revoked", "function_execution_not_found", "not_authed",
                  "execution_not_in_running_state"}


def _field(fields: list[FormField], field_id: str, label: str) -> FormField | None:
    """The back end's form field for a team or priority: by its id (`team_id`), else by its label."""
    return next((f for f in fields if f.id == field_id), None) or next(
        (f for f in fields if f.label.strip().casefold() == label), None
    )


def _match(field: FormField, value: str) -> str | None:
    """The option a workflow named, by id or by name (case does not matter)."""
    wanted = value.strip().casefold()
    for option in field.options:
        if option.value.casefold() == wanted or option.label.strip().casefold() == wanted:
            return option.value
    return None


def _unknown(name: str, value: str, field: FormField | None, system: str) -> BackendError:
    if field is None:
        return BackendError(f'The input "{name}" is "{value}", but {system} has no {name} to choose here; '
                            "leave it empty.")
    known = ", ".join(o.label for o in field.options[:10]) + (", …" if len(field.options) > 10 else "")
    return BackendError(f'The input "{name}" is "{value}", which is no {name} in {system}. Use one of: {known}.')


async def resolve(ctx: Context, sub: Submission, backend: TicketBackend) -> None:
    """Check the step's inputs and turn `team` and `priority` (a name or an id) into the back end's
    values. A wrong input is refused for good, naming it; lists the system has not loaded yet are
    waited for (the journal retries)."""
    p = sub.payload
    inputs: dict[str, Any] = p["function"].get("inputs") or {}
    if not str(p.get("title") or "").strip():
        raise BackendError('The input "title" is empty: a ticket needs a title.')
    if not p.get("requester_id"):
        raise BackendError('The input "requester" is empty: say who the ticket is for.')
    if len(p["title"]) > backend.title_max_length:
        p["title"] = p["title"][: backend.title_max_length]
    values = p["values"]
    for name, field_id in (("team", "team_id"), ("priority", "priority_id")):
        value = str(inputs.get(name) or "").strip()
        if not value:
            continue
        fields = await backend.form_fields_for(values)
        field = _field(fields, field_id, name)
        if field is None and not backend.lists_known:
            raise BackendError(f"{backend.display_name}'s {name}s are not known yet", transient=True)
        matched = _match(field, value) if field else None
        if matched is None:
            raise _unknown(name, value, field, backend.display_name)
        values[field.id] = matched  # type: ignore[union-attr]
    origin = journaled(Origin, p["origin"])
    if origin.channel_id and not origin.channel_name:  # named in the ticket's footer and source
        try:
            info = await ctx.slack.conversations_info(channel=origin.channel_id)
            p["origin"] = {**p["origin"], "channel_name": (info.get("channel") or {}).get("name")}
        except SlackApiError as exc:  # a private channel the bot is not in: the ticket just says "Slack"
            log.info("submission %s: channel %s cannot be read (%s)", sub.id, origin.channel_id,
                     exc.response.get("error"))
    p["resolved"] = True


def outputs(ctx: Context, sub: Submission) -> dict[str, str]:
    ticket = ctx.ticket(sub)
    backend = ctx.backend(ticket.backend)
    out = {"ticket_id": ticket.display_id, "ticket_system": backend.display_name}
    url = backend.link(ticket)
    if url:
        out["ticket_url"] = url
    return out


class Function:
    """Ends the workflow step's execution in Slack: its outputs, or why there is no ticket."""

    name = FUNCTION

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _client(self, token: str) -> AsyncWebClient:
        secrets.remember(token)  # never logged (another process may carry the execution on)
        base = self.ctx.slack
        return AsyncWebClient(token=token, base_url=base.base_url, timeout=base.timeout, session=base.session,
                              retry_handlers=list(base.retry_handlers or []), logger=base.logger)

    async def run(self, sub: Submission) -> bool:
        p = sub.payload
        fn = p.get("function")
        if not fn:
            return False
        client = self._client(fn["token"])
        try:
            if sub.ticket:
                await client.functions_completeSuccess(function_execution_id=fn["execution_id"],
                                                       outputs=outputs(self.ctx, sub))
            else:
                await client.functions_completeError(function_execution_id=fn["execution_id"], error=error_text(sub))
        except SlackApiError as exc:
            if exc.response.get("error") not in EXECUTION_GONE:
                raise
            log.warning("submission %s: the workflow step's run was over already (%s)",
                        sub.id, exc.response.get("error"))
        fn.pop("token", None)  # the execution is over: its token is not kept
        fn["ended"] = "success" if sub.ticket else "error"
        log.info("submission %s: workflow step %s", sub.id, fn["ended"])
        return True

    async def failed(self, sub: Submission, why: Failure) -> None:
        fn = sub.payload.get("function") or {}
        fn.pop("token", None)
        log.error("submission %s: the workflow step could not be ended in Slack: %s", sub.id, why.reason)


def error_text(sub: Submission) -> str:
    """What the workflow shows when there is no ticket: why, in a sentence."""
    why = (sub.last_error or "unknown error").strip()
    if why.startswith("The input"):
        return why
    return f"The ticket could not be created: {why.rstrip('.')}."


def payload_for(*, execution_id: str, token: str, inputs: dict[str, Any], origin: Origin,
                values: dict[str, Any]) -> dict[str, Any]:
    """The journal's payload of a step's execution (the rest of the pipeline reads it as a form)."""
    requester = str(inputs.get("requester") or "") or None
    return {
        "origin": asdict(origin),
        "user_id": requester,
        "requester_id": requester,
        "view_id": None,
        "title": str(inputs.get("title") or "").strip(),
        "description": str(inputs.get("description") or "").strip(),
        "values": values,
        "share": False,
        "copy_history": False,
        "function": {
            "execution_id": execution_id,
            "token": token,
            "inputs": {k: inputs[k] for k in ("team", "priority") if inputs.get(k) not in (None, "")},
        },
    }
