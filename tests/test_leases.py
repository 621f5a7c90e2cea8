"""A live holder's lease is never taken (issue 18): the worker renews the leases of its running
submissions, a save never moves a lease, and a holder that no longer holds a submission stops
before its next call to Slack or the ticket system. Through the real HTTP endpoint and the fake
Slack, with a ticket system whose calls are slower than the lease, and a second "replica" (another
connection to the same journal) that claims whatever it may."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import sqlalchemy as sa

from bot.core import Bot
from bot.journal.storage import Storage, submissions
from clients.base import CreatedTicket, FormField, TicketBackend, TicketDraft
from server.http import serve_http
from tests.conftest import SlackSender, eventually, make_settings, submission
from tests.test_pipeline import FAST_RETRIES, told_created
from tests.test_ticket_flow import filled, open_modal_with_command

LEASE = 1.0


class Slow(TicketBackend):
    """A ticket system slower than the lease: loading the team's fields (as on a first load) and
    creating and completing a ticket each take a few leases."""

    name = "serval"
    display_name = "Slow"

    def __init__(self, *, fields: float = 0.0, create: float = 0.0, complete: float = 0.0) -> None:
        self.delays = {"fields": fields, "create": create, "complete": complete}
        self.created: list[str] = []
        self.completed: list[str] = []
        self.numbers = itertools.count(1)
        self.in_complete = asyncio.Event()

    async def form_fields_for(self, values: dict[str, Any]) -> list[FormField]:
        await asyncio.sleep(self.delays["fields"])
        return []

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        self.created.append(draft.title)
        await asyncio.sleep(self.delays["create"])
        n = next(self.numbers)
        return CreatedTicket(id=f"t{n}", display_id=f"SL-{n}", backend=self.name)

    async def complete_ticket(self, ticket: CreatedTicket, draft: TicketDraft) -> None:
        self.in_complete.set()
        await asyncio.sleep(self.delays["complete"])
        self.completed.append(ticket.display_id)


async def start(tmp_path, slack, serval, backend: TicketBackend):
    settings = make_settings(tmp_path, slack[1], serval[1], lease_seconds=LEASE, **FAST_RETRIES)
    running = await serve_http(settings, host="127.0.0.1", port=0,
                               bot=await Bot.open(settings, backends={"serval": backend}))
    other = await Storage(settings.database_url).open()  # another replica's view of the journal
    return running, SlackSender(running.url), other


async def test_a_step_slower_than_the_lease_keeps_it_and_nobody_else_can_claim(tmp_path, slack, serval):
    """Loading fields takes 2.5 leases, then the create another 2.5: the lease in the journal keeps
    moving forward (renewed, never written back by a save), and another replica claims nothing."""
    slack_state = slack[0]
    backend = Slow(fields=2.5 * LEASE, create=2.5 * LEASE)
    running, sender, other = await start(tmp_path, slack, serval, backend)
    taken: list[str] = []
    expired: list[float] = []
    leases: list[float] = []
    try:
        view = await open_modal_with_command(sender, slack_state, "Slow system")
        await sender.interactive(submission(view, filled("Slow system")))

        async def watch() -> None:
            while True:
                taken.extend(s.id for s in await other.claim("other-replica", LEASE, limit=10))
                async with other.engine.connect() as conn:
                    rows = (await conn.execute(sa.select(submissions.c.lease_until, submissions.c.status))).all()
                now = time.time()
                for lease_until, status in rows:
                    if status == "pending":
                        leases.append(lease_until)
                        if lease_until < now:
                            expired.append(now - lease_until)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        try:
            await eventually(lambda: told_created(slack_state), timeout=30)
            await running.bot.tickets.idle(10)
        finally:
            watcher.cancel()
        assert taken == [], "another replica claimed a submission its holder was still working on"
        assert expired == [], f"the journal showed a live holder's lease as run out ({len(expired)} times)"
        assert max(leases) > min(leases) + 3 * LEASE  # renewed all along
        assert backend.created == ["Slow system"]
        assert len(told_created(slack_state)) == 1
    finally:
        await other.close()
        await sender.aclose()
        await running.close()


async def test_a_holder_that_lost_its_lease_makes_no_further_call(tmp_path, slack, serval):
    """While a slow step runs, another replica takes the submission over (as after a lease that ran
    out): the first holder learns it at its next renewal and does not post the channel message of
    the next step; the journal keeps the new holder."""
    slack_state = slack[0]
    backend = Slow(complete=3 * LEASE)
    running, sender, other = await start(tmp_path, slack, serval, backend)
    try:
        view = await open_modal_with_command(sender, slack_state, "Taken over")
        await sender.interactive(submission(view, filled("Taken over", share=True)))
        await asyncio.wait_for(backend.in_complete.wait(), 10)
        async with other.engine.connect() as conn:
            await conn.execute(sa.update(submissions).values(owner="other-replica", lease_until=time.time() + 600))
        await eventually(lambda: backend.completed, timeout=10)
        await asyncio.sleep(LEASE)  # time for a next step, if the holder (wrongly) went on
        shared = [c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == "C111"]
        assert shared == [], "the old holder posted after another replica took the submission over"
        async with other.engine.connect() as conn:
            owner, status = (await conn.execute(sa.select(submissions.c.owner, submissions.c.status))).one()
        assert (owner, status) == ("other-replica", "pending")
    finally:
        await other.close()
        await sender.aclose()
        await running.close()
