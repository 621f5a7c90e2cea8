""""You already have a ticket about this": the requester's similar open tickets, offered in the
ticket form, and adding to one of them instead of creating a new ticket.

The look-up never delays the form, nor anyone else's: it is scheduled once `views.open` has answered
(`bot.background`: it starts when nobody waits on the bot, or is dropped when it could not start in
time) and reads what it needs from the opened view (title, team, requester); when it finds something, `views.update` adds the
suggestions under the title, keeping every other block as it was (block_id and action_id included)
so Slack keeps what the person typed meanwhile. The update passes the view's `hash`: when the form
changed meanwhile (a team change), that change wins and the look-up runs again, once, on the new
form (this process remembers the views it updated last, `remember`).

Choosing a suggestion is a submission like the form's own: journaled, once per view and ticket
(a double click adds once), carried out by the service with `add_to`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from clients.base import TicketBackend, TicketSummary

from . import views
from .. import background
from ..installations import Workspace
from ..core import Bot
from .forms import may_pick_requester, parse_ticket_form
from ..pipeline.service import slack_error
from ..journal.storage import ThreadTaken
from .views import Origin

log = logging.getLogger(__name__)

LIMIT = 3  # suggestions shown
LOOKUP_WAIT = 10.0  # seconds the whole look-up may take; later, nothing is shown
NEWER_VIEW_WAIT = 1.0  # after a hash conflict: how long to wait for the newer view to be known
KEEP_VIEWS = 2000  # views whose last known hash is remembered
ROUNDS = 3  # look-ups for one form at most (the first, and after team changes)

# The last known version of a view this process opened or updated: its hash for every view (a later
# change names it), the whole view only while its look-up is scheduled or under way (`_running`).
# Whole views for every open form would be ~75 objects each that the garbage collector walks at
# every full collection (2,000 forms: ~45 ms, a pause for everyone waiting on the bot).
_hashes: OrderedDict[str, str] = OrderedDict()  # view id -> its last known hash
_views: dict[str, dict[str, Any]] = {}  # view id -> its last known version, while in `_running`
_running: set[str] = set()  # view ids with a look-up scheduled or under way
_again: set[str] = set()  # view ids changed while their look-up ran: look again when it ends


def remember(view: dict[str, Any] | None) -> None:
    """The newest version of a view this process opened or updated (Slack's answer, with its hash)."""
    if not view or not view.get("id") or not view.get("hash"):
        return
    view_id = view["id"]
    _hashes[view_id] = view["hash"]
    _hashes.move_to_end(view_id)
    while len(_hashes) > KEEP_VIEWS:
        _hashes.popitem(last=False)
    if view_id in _running:
        _views[view_id] = view


def latest_hash(view_id: str) -> str | None:
    """The hash of the newest version of this view known here."""
    return _hashes.get(view_id)


def _state_value(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    block = ((view.get("state") or {}).get("values") or {}).get(block_id) or {}
    element = block.get(views.VALUE) if isinstance(block, dict) else None
    return element if isinstance(element, dict) else {}


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next((b for b in view.get("blocks") or [] if isinstance(b, dict) and b.get("block_id") == block_id), {})


def form_title(view: dict[str, Any]) -> str:
    """What the title says: typed (in the view's state), else as the form was opened with it."""
    typed = _state_value(view, views.TITLE_BLOCK).get("value")
    if isinstance(typed, str) and typed.strip():
        return " ".join(typed.split())
    initial = (_block(view, views.TITLE_BLOCK).get("element") or {}).get("initial_value")
    return " ".join(initial.split()) if isinstance(initial, str) else ""


def form_team(view: dict[str, Any], origin: Origin) -> str | None:
    """The team the form is for: the Team field's choice, else the channel's team."""
    block_id = views.FIELD_BLOCK_PREFIX + "team_id"
    chosen = _state_value(view, block_id).get("selected_option")
    if not isinstance(chosen, dict):
        chosen = (_block(view, block_id).get("element") or {}).get("initial_option")
    value = chosen.get("value") if isinstance(chosen, dict) else None
    return value if isinstance(value, str) and value else origin.team_id


def form_requester(view: dict[str, Any], origin: Origin, user_id: str) -> str:
    """Whose tickets to look at: the Requester picker's person, else the message's author, else
    the person filling in the form."""
    picked = _state_value(view, views.ON_BEHALF_BLOCK).get("selected_user")
    if not (isinstance(picked, str) and picked):
        picked = (_block(view, views.ON_BEHALF_BLOCK).get("element") or {}).get("initial_user")
    return picked if isinstance(picked, str) and picked else (origin.requester_id or user_id)


async def backend_user(bot: Bot, backend: TicketBackend, slack_id: str) -> str | None:
    """The person's user id in the ticket system (matched by e-mail, cached like the service does)."""
    if not backend.can_match_users:
        return None
    person = await bot.people.get(slack_id)
    email = (person.email or "").strip().lower() if person else ""
    if not email:
        return None
    cached = await bot.storage.identity(backend.name, slack_id, email, bot.settings.people_refresh_seconds)
    if cached:
        return cached
    user_id = await backend.find_user(email)
    if user_id:
        await bot.storage.save_identity(backend.name, slack_id, email, user_id)
    return user_id


async def similar(bot: Bot, view: dict[str, Any], user_id: str) -> list[TicketSummary]:
    """The requester's open tickets resembling the form's title, most similar first."""
    if view.get("callback_id") != views.MODAL_CALLBACK_ID:
        return []
    title = form_title(view)
    if not title:
        return []
    origin = Origin.load(view.get("private_metadata"))
    backend = bot.tickets.backend(origin.backend)
    requester = await backend_user(bot, backend, form_requester(view, origin, user_id))
    if requester is None:
        return []
    team = form_team(view, origin)
    if not await background.turn():  # the search, between other people's requests
        return []
    return await backend.similar_open_tickets(
        title, requester_id=requester, values={"team_id": team} if team else {}, limit=LIMIT
    )


async def _newer(view_id: str, old_hash: str | None) -> dict[str, Any] | None:
    """The form's version after `old_hash`, once known here (the team change that won records it)."""
    deadline = asyncio.get_running_loop().time() + NEWER_VIEW_WAIT
    while True:
        view = _views.get(view_id)
        if view is not None and view.get("hash") != old_hash:
            return view if view.get("callback_id") == views.MODAL_CALLBACK_ID else None
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.05)


async def offer(bot: Bot, client: AsyncWebClient, view: dict[str, Any] | None, *, user_id: str) -> None:
    """Schedule the look-up for similar open tickets, to be added to the open form `view` (Slack's
    answer to views.open or views.update, with its id and hash), and return at once. The look-up
    never raises: the form works without them. Called again for a form whose look-up is scheduled
    or under way, it makes that look-up run once more when it ends, on the newest version of the
    form."""
    if not view or not view.get("id") or not bot.settings.suggest_similar:
        return
    view_id = view["id"]
    if view_id in _running:
        remember(view)
        _again.add(view_id)
        return
    _running.add(view_id)
    remember(view)

    def dropped() -> None:
        _running.discard(view_id)
        _again.discard(view_id)
        _views.pop(view_id, None)

    workspace = Workspace.current()  # the background worker is nobody's request: it works for this one

    async def look() -> None:
        Workspace.use(workspace)
        try:
            await _offer_rounds(bot, client, _views.get(view_id) or view, user_id)
        finally:
            dropped()

    background.later(look, on_drop=dropped)


async def _offer_rounds(bot: Bot, client: AsyncWebClient, view: dict[str, Any], user_id: str) -> None:
    view_id = view["id"]
    for _ in range(ROUNDS):
        _again.discard(view_id)
        await _offer_once(bot, client, view, user_id)
        if view_id not in _again:
            return
        view = _views.get(view_id) or view


async def _offer_once(bot: Bot, client: AsyncWebClient, view: dict[str, Any], user_id: str) -> None:
    view_id = view["id"]
    for attempt in (1, 2):
        try:
            found = await asyncio.wait_for(similar(bot, view, user_id), LOOKUP_WAIT)
        except Exception as exc:
            log.info("no similar tickets for form %s: %s", view_id, getattr(exc, "message", None) or repr(exc))
            return
        if not found or not await background.turn():  # the update too (a large view: JSON both ways)
            return
        try:
            resp = await client.views_update(view_id=view_id, hash=view.get("hash"), view=views.with_suggestions(view, found))
            remember(resp.get("view"))
            return
        except Exception as exc:
            error = slack_error(exc)
            if error != "hash_conflict" or attempt == 2:
                log.info("could not add suggestions to form %s: %s", view_id, error)
                return
            newer = await _newer(view_id, view.get("hash"))
            if newer is None:  # changed elsewhere (submitted, closed, another replica): leave it
                log.info("form %s changed meanwhile; no suggestions added", view_id)
                return
            view = newer  # once more, on the form as it is now (a new team: its tickets)
            _again.discard(view_id)


async def add_to_ticket(bot: Bot, client: AsyncWebClient, body: dict[str, Any]) -> None:
    """*Add to this ticket instead*: what the form holds goes to the chosen ticket, as a submission
    journaled once per form and ticket. The form becomes a short notice; the service tells the
    person when it is done ("Added to ticket IT-42")."""
    view = body.get("view") or {}
    user_id = (body.get("user") or {}).get("id") or ""
    action = next(iter(body.get("actions") or []), {})
    chosen = views.chosen_ticket(action.get("value"))
    view_id = view.get("id")
    if view.get("callback_id") != views.MODAL_CALLBACK_ID or not view_id or not user_id or chosen is None:
        log.info("ignored an 'add to this ticket' click without a ticket form")
        return
    ticket, ticket_title = chosen
    origin, form = await parse_ticket_form(bot, view)
    # As the form's submission would: the title (the chosen ticket's if none was typed) names it in
    # the notice; what was typed, or the title alone, is what the ticket receives.
    form.title = form.title or ticket_title
    form.description = form.description or form.title
    blocks = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
    requester = form.requester_id
    if requester and requester not in (user_id, origin.requester_id) and not may_pick_requester(bot, blocks):
        requester = None  # the form's own rule: someone else only where they may file for others
    try:  # the form first, so that nothing can show after the service's own notice
        resp = await client.views_update(view_id=view_id, hash=view.get("hash"), view=views.adding_modal(ticket.display_id))
        remember(resp.get("view"))
    except Exception as exc:  # changed meanwhile (a double click): the journal adds once anyway
        log.info("form %s not replaced before adding to %s: %s", view_id, ticket.display_id, slack_error(exc))
    try:
        sub = await bot.tickets.submit(
            dedupe_key=f"add:{view_id}:{ticket.id}",
            origin=origin,
            form=form,
            user_id=user_id,
            view_id=view_id,
            requester_id=requester,
            add_to=ticket,
        )
        bot.threads.note(sub.thread_key)  # linked to that ticket now (the shortcut's hint)
    except ThreadTaken as taken:
        try:
            await client.views_update(view_id=view_id, view=views.already_linked_modal(taken.display_id))
        except Exception as exc:
            log.info("form %s: %s", view_id, slack_error(exc))
