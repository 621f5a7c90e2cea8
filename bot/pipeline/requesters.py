"""Who a ticket is for: the Slack people behind a submission (`users.info`, cached), an app that
posted the message, their user ids in the ticket system (by e-mail, per UNMATCHED_REQUESTER), and
the ticket's draft built from them."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from clients.base import BackendError, TicketBackend, TicketDraft

from ..installations import Workspace
from ..slack import views
from ..slack.drafts import values_from_json
from ..journal.storage import Submission, journaled
from ..slack.views import Origin
from .context import Context
from .failures import failure

log = logging.getLogger(__name__)


class Requesters:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def person(self, slack_id: str) -> Any:
        """The Slack person, or None when their profile cannot be read for good (unknown user,
        another workspace, a missing scope): the ticket is then filed per UNMATCHED_REQUESTER.
        A passing Slack failure is retried like any other."""
        profile = await self.profile(slack_id)
        return profile.person if profile else None

    async def profile(self, slack_id: str) -> Any:
        """The Slack profile (`people.Profile`), or None, as for `_person`."""
        try:
            return await self.ctx.people.profile(slack_id)
        except SlackApiError as exc:
            why = failure(exc)
            if why.transient:
                raise
            log.warning("profile of %s cannot be read (%s); filing without it", slack_id, why.reason)
            return None

    async def organisation(self, slack_id: str) -> str | None:
        """The workspace id of a person from another organisation (a Slack Connect channel), None for
        someone of this workspace or of its Enterprise Grid org (or when that cannot be told)."""
        profile = await self.profile(slack_id)
        if profile is None or not profile.team_id:
            return None
        here = Workspace.current()  # installs by OAuth: the submission's workspace
        if here is None:
            try:
                known = await self.ctx.people.workspace()
            except Exception:  # auth.test unanswered: say nothing rather than something wrong
                return None
            team_id, enterprise_id = known.team_id, known.enterprise_id
        else:
            team_id, enterprise_id = here.team_id, here.enterprise_id
        if profile.team_id == team_id or (enterprise_id and profile.enterprise_id == enterprise_id):
            return None
        return profile.team_id

    async def app_author(self, message: dict[str, Any], asker: str) -> str | None:
        """The name of the app that posted `message` (`bot_id`, `subtype: bot_message`, or an
        author whose profile is a bot user's), or None when a person did."""
        name = views.app_name(message)
        if name or not message.get("user") or message["user"] == asker:
            return name
        profile = await self.profile(message["user"])
        return profile.person.name if profile and profile.is_bot else None

    async def user_id(self, backend: TicketBackend, slack_id: str, person: Any, *, requester: bool) -> str | None:
        """The person's user id in the ticket system, by e-mail (cached); per UNMATCHED_REQUESTER
        an unmatched requester is created there, described in the ticket, or refused."""
        if not backend.can_match_users:  # the system takes people as they are (name, e-mail)
            return None
        email = (person.email or "").strip().lower() if person else ""
        if email:
            cached = await self.ctx.storage.identity(backend.name, slack_id, email, self.ctx.identity_refresh)
            if cached:
                return cached
            user_id = await backend.find_user(email)
            if user_id is None and requester and self.ctx.unmatched_requester == "create":
                user_id = await backend.create_user(person)
            if user_id:
                await self.ctx.storage.save_identity(backend.name, slack_id, email, user_id)
                return user_id
        if requester and self.ctx.unmatched_requester == "refuse":
            if not email:
                why = "Slack does not show the requester's e-mail address"
            else:
                why = f"{backend.display_name} has no user with the e-mail {email}"
            raise BackendError(f"{why}, and tickets here are only filed for known users. Ask your IT team to add them.")
        return None

    async def draft(self, sub: Submission, backend: TicketBackend) -> TicketDraft:
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        requester_slack = p.get("requester_id") or origin.requester_id or p["user_id"]
        submitter = await self.person(p["user_id"])
        requester = submitter if requester_slack == p["user_id"] else await self.person(requester_slack)
        requester_id = await self.user_id(backend, requester_slack, requester, requester=True)
        submitter_id = (
            requester_id
            if requester_slack == p["user_id"]
            else await self.user_id(backend, p["user_id"], submitter, requester=False)
        )
        reference = f"slack-{sub.id}"
        who = requester.name if requester else "an unknown Slack user"
        if requester and requester.email:
            who += f" <{requester.email}>"
        if requester and (elsewhere := await self.organisation(requester_slack)):
            who += f" (of another organisation, Slack workspace {elsewhere})"  # Slack Connect
        footer = f"Requested in Slack by {who}"
        if requester_slack != p["user_id"] and submitter:
            footer += f", filed by {submitter.name}"
        if origin.channel_name:
            footer += f" in #{origin.channel_name}"
        description = (p["description"] + "\n\n" if p["description"] else "") + f"—\n{footer} · ref {reference}"
        values = values_from_json(await backend.form_fields_for(p["values"]), p["values"])
        if origin.team_id:
            values.setdefault("team_id", origin.team_id)
        return TicketDraft(
            title=p["title"],
            description=description,
            reference=reference,
            requester=requester,
            submitter=submitter,
            source_name=f"Slack #{origin.channel_name}" if origin.channel_name else "Slack",
            values=values,
            requester_id=requester_id,
            submitter_id=submitter_id,
        )
