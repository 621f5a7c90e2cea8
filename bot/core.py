"""Everything the handlers need, built from settings: storage, the Slack Web API client, the ticket
back end and the ticket service."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import TicketBackend

from .backends import make_backends
from .people import People
from .service import TicketService
from .settings import Settings, ensure_private_dir
from .storage import Storage

log = logging.getLogger(__name__)


def slack_client(settings: Settings) -> AsyncWebClient:
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=base_url,
        timeout=10,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),  # waits Retry-After
        ],
    )


@dataclass
class Bot:
    settings: Settings
    storage: Storage
    slack: AsyncWebClient
    backends: dict[str, TicketBackend]
    tickets: TicketService

    @classmethod
    async def open(cls, settings: Settings, *, backends: dict[str, TicketBackend] | None = None) -> "Bot":
        ensure_private_dir(settings.database_path)
        storage = await Storage(settings.database_path).open()
        slack = slack_client(settings)
        backends = backends or make_backends(settings)
        tickets = TicketService(
            storage,
            backends,
            slack,
            default_backend=settings.ticket_backend,
            people=People(slack),
            queued_after=settings.queued_after_seconds,
            retry_base=settings.retry_base_seconds,
            retry_max=settings.retry_max_seconds,
            give_up_after=settings.give_up_after_seconds,
        )
        return cls(settings, storage, slack, backends, tickets)

    async def start(self) -> None:
        await self.tickets.resume()

    async def close(self) -> None:
        await self.tickets.close()
        for backend in self.backends.values():
            await backend.aclose()
        await self.storage.close()
