"""Everything the handlers need, built from settings: storage, the Slack Web API client, the ticket
back end and the ticket service."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import TicketBackend
from clients.socialboards import SocialboardsBackend

from .follow.poller import Follower
from .installations import Installations, WorkspaceClient
from .ops import metrics
from .slack import views
from .backends import make_backends
from .cards import TicketCards
from .slack.people import People
from .routing import Router, RoutingError, load_routing_file, load_workspaces
from .pipeline.service import TicketService
from .settings import Settings, SettingsError, ensure_private_dir
from .journal.storage import Storage
from .journal.threads import Threads

log = logging.getLogger(__name__)


def slack_client(
    settings: Settings, session: aiohttp.ClientSession | None = None, *, wait_on_rate_limit: bool = True,
    installations: Installations | None = None,
) -> WorkspaceClient:
    """`session`: one keep-alive connection pool for every Web API call. Without it, slack_sdk opens
    a new aiohttp session (and TCP/TLS connection) for each call. Bolt's per-request clients reuse
    the session of the client given to AsyncApp.

    `wait_on_rate_limit=False` for the ticket service: a 429 then raises, and the journal retries
    the step after Retry-After without holding one of its slots while it waits.

    `installations` (installs by OAuth): each call carries the token of the workspace it is for."""
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    # metrics.SLACK_CALLS first: it counts every answer and error, and never retries
    handlers = [metrics.SLACK_CALLS, AsyncConnectionErrorRetryHandler(max_retry_count=2)]
    if wait_on_rate_limit:
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))  # waits Retry-After
    client = WorkspaceClient(
        token=settings.slack_bot_token.get_secret_value() or None,
        base_url=base_url,
        timeout=10,
        session=session,
        retry_handlers=handlers,
    )
    client.installations = installations
    return client


@dataclass
class Bot:
    settings: Settings
    storage: Storage
    slack: AsyncWebClient
    backends: dict[str, TicketBackend]
    tickets: TicketService
    people: People
    router: Router
    cards: TicketCards  # ticket links → their cards (link_shared)
    threads: Threads = field(default_factory=Threads)  # threads known to be taken (the shortcut's hint)
    follower: Follower | None = None  # tickets followed after they are filed (bot.follow)
    installations: Installations | None = None  # installs by OAuth (SLACK_CLIENT_ID), else one SLACK_BOT_TOKEN

    @classmethod
    async def open(cls, settings: Settings, *, backends: dict[str, TicketBackend] | None = None) -> "Bot":
        backends = backends or make_backends(settings)
        try:
            file_routes = load_routing_file(
                settings.routing_file, set(backends), required=settings.routing_file != "config/routing.yml"
            )
        except RoutingError as exc:
            raise SettingsError(str(exc)) from None
        ensure_private_dir(settings.database_path)
        storage = await Storage(settings.database_url).open(serving=True)
        socialboards = backends.get("socialboards")
        if isinstance(socialboards, SocialboardsBackend):
            # Socialboards replaces its refresh token at every exchange: keep the newest across restarts.
            # Replicas exchange it one at a time, under a database lock, and share the access token.
            await socialboards.client.keep_refresh_token(
                lambda: storage.get_state("socialboards.refresh_token"),
                lambda value: storage.set_state("socialboards.refresh_token", value),
                exclusive=lambda: storage.exclusive("socialboards.refresh_token"),
            )
        installations = Installations(storage.engine, settings.slack_client_id, scopes=settings.slack_scopes) if settings.oauth else None
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        slack = slack_client(settings, session, installations=installations)
        service_slack = slack_client(settings, session, wait_on_rate_limit=False, installations=installations)
        if installations is not None and settings.slack_client_secret is not None:  # token rotation, if the app has it on
            installations.rotator = AsyncTokenRotator(client_id=settings.slack_client_id, client=slack,
                                                      client_secret=settings.slack_client_secret.get_secret_value())
            installations.exclusive = storage.exclusive
        people = People(slack, storage, refresh=settings.people_refresh_seconds)
        service_people = People(service_slack, storage, refresh=settings.people_refresh_seconds)
        follower = Follower(
            storage, backends, service_slack, service_people,
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            poll_seconds=settings.status_poll_seconds, track_days=settings.track_days,
            max_per_minute=settings.status_poll_max_per_minute, notices=settings.status_notices,
        )
        router = Router(
            storage,
            file_routes,
            default_backend=settings.ticket_backend,
            default_share=settings.share_in_channel_default,
            backends=set(backends),
            workspaces=load_workspaces(settings.routing_file),
        )
        tickets = TicketService(
            storage,
            backends,
            service_slack,
            default_backend=settings.ticket_backend,
            people=service_people,
            unmatched_requester=settings.unmatched_requester,
            identity_refresh=settings.people_refresh_seconds,
            queued_after=settings.queued_after_seconds,
            retry_base=settings.retry_base_seconds,
            retry_max=settings.retry_max_seconds,
            give_up_after=settings.give_up_after_seconds,
            max_active=settings.max_tickets_in_flight,
            lease_seconds=settings.lease_seconds,
            retention_seconds=settings.journal_retention_days * 86400,
            router=router,
            follower=follower,
        )

        async def publish_home(user_id: str) -> None:  # a ticket of theirs changed
            await service_slack.views_publish(user_id=user_id, view=views.home_view(await tickets.recent_tickets(user_id)))

        tickets.ctx.shared_channel_details = settings.shared_channel_details
        tickets.ctx.integrations = {  # the routing file's `workspaces:`
            team: entry.serval_slack_integration_id
            for team, entry in load_workspaces(settings.routing_file).items() if entry.serval_slack_integration_id
        }
        follower.publish_home = publish_home
        cards = TicketCards(backends, ttl=settings.unfurl_cache_seconds, per_minute=settings.unfurl_lookups_per_minute)
        if cards.domains():
            log.info("ticket links unfold for %s: the Slack app's unfurl_domains (manifest.yml) must list them",
                     ", ".join(cards.domains()))
        bot = cls(settings, storage, slack, backends, tickets, people, router, cards, threads=Threads(storage),
                  follower=follower, installations=installations)
        tickets.ctx.may_file_for_others = bot.may_file_for_others  # ON_BEHALF_OF, for tickets from conversations
        tickets.is_admin = bot.may_configure  # admins may edit any ticket's details
        return bot

    async def start(self) -> None:
        for backend in self.backends.values():
            await backend.start()
        await self.tickets.resume()
        if self.follower is not None:
            self.follower.start()

    async def may_configure(self, user_id: str) -> bool:
        """Admins and owners of this workspace (as `auth.test` names it: an admin of another
        workspace, through Slack Connect or Enterprise Grid, is not one here), and people listed in
        TICKET_ADMINS."""
        if user_id in self.settings.admin_ids:
            return True
        profile = await self.people.profile(user_id)
        if not (profile and (profile.is_admin or profile.is_org_admin)):
            return False
        return (await self.people.workspace()).admin_here(profile)

    async def may_file_for_others(self, user_id: str) -> bool:
        policy = self.settings.on_behalf_of
        return policy == "anyone" or (policy == "admins" and await self.may_configure(user_id))

    async def close(self, grace: float = 0.0) -> None:
        """Stop: running submissions get up to `grace` seconds to finish (the rest resume from their
        last recorded step, here or on another replica), leases are handed back, then everything
        closes. A part that fails to close does not keep the others open."""
        if self.follower is not None:
            await self.follower.close()
        await self.tickets.close(grace=grace)
        for backend in self.backends.values():
            try:
                await backend.aclose()
            except Exception as exc:
                log.warning("closing %s: %s", backend.name, exc)
        await self.storage.close()
        if self.slack.session is not None:
            await self.slack.session.close()
