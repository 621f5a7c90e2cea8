"""The ticket systems this installation can file tickets in, built from settings.

Every back end whose settings are present is built, so a channel can be routed to any of them;
`TICKET_BACKEND` names the default.
"""

from __future__ import annotations

from clients.base import TicketBackend
from clients.serval import ServalBackend, ServalClient

from .settings import Settings


def serval_backend(settings: Settings) -> ServalBackend:
    client = ServalClient(
        settings.serval_base_url,
        bearer_token=settings.serval_bearer_token.get_secret_value() if settings.serval_bearer_token else None,
        client_id=settings.serval_client_id,
        client_secret=settings.serval_client_secret.get_secret_value() if settings.serval_client_secret else None,
        timeout=settings.serval_timeout,
    )
    return ServalBackend(
        client,
        team_id=settings.serval_team_id,
        slack_integration_id=settings.serval_slack_integration_id,
    )


def make_backends(settings: Settings) -> dict[str, TicketBackend]:
    backends: dict[str, TicketBackend] = {}
    if settings.serval_configured:
        backends["serval"] = serval_backend(settings)
    return backends
