"""The ticket systems this installation can file tickets in, built from settings.

Every back end whose settings are present is built, so a channel can be routed to any of them;
`TICKET_BACKEND` names the default.
"""

from __future__ import annotations

from clients.base import TicketBackend
from clients.rezolve import RezolveBackend, RezolveClient
from clients.serval import ServalBackend, ServalClient
from clients.socialboards import SocialboardsBackend, SocialboardsClient

from .settings import Settings


def serval_backend(settings: Settings) -> ServalBackend:
    client = ServalClient(
        settings.serval_base_url,
        bearer_token=settings.serval_bearer_token.get_secret_value() if settings.serval_bearer_token else None,
        client_id=settings.serval_client_id,
        client_secret=settings.serval_client_secret.get_secret_value() if settings.serval_client_secret else None,
        timeout=settings.serval_timeout,
    )
    backend = ServalBackend(
        client,
        team_id=settings.serval_team_id,
        slack_integration_id=settings.serval_slack_integration_id,
    )
    backend.link_template = settings.serval_ticket_url  # Serval's API gives no link: the tenant's page
    return backend


def rezolve_backend(settings: Settings) -> RezolveBackend:
    assert settings.rezolve_client_secret is not None
    client = RezolveClient(
        settings.rezolve_base_url,
        client_id=settings.rezolve_client_id,
        client_secret=settings.rezolve_client_secret.get_secret_value(),
        tenant_id=settings.rezolve_tenant_id,
        realm=settings.rezolve_realm,
        token_url=settings.rezolve_token_endpoint,
        scope=settings.rezolve_scope or None,
        catalog_type=settings.rezolve_catalog_type,
        timeout=settings.rezolve_timeout,
    )
    backend = RezolveBackend(
        client,
        team_id=settings.rezolve_team_id,
        item_type_id=settings.rezolve_item_type_id,
        offer_id=settings.rezolve_offer_id or None,
        summary_field_id=settings.rezolve_summary_field_id or None,
        description_field_id=settings.rezolve_description_field_id or None,
    )
    backend.link_template = settings.rezolve_ticket_url
    return backend


def socialboards_backend(settings: Settings) -> SocialboardsBackend:
    """Its refresh token rotates: once storage is open, `client.keep_refresh_token(load, save)` makes a
    restart start from the newest one."""
    assert settings.socialboards_refresh_token is not None
    client = SocialboardsClient(
        settings.socialboards_base_url,
        client_id=settings.socialboards_client_id,
        refresh_token=settings.socialboards_refresh_token.get_secret_value(),
        token_url=settings.socialboards_token_url or None,
        timeout=settings.socialboards_timeout,
    )
    return SocialboardsBackend(client, community=settings.socialboards_community or None)


def make_backends(settings: Settings) -> dict[str, TicketBackend]:
    backends: dict[str, TicketBackend] = {}
    if settings.serval_configured:
        backends["serval"] = serval_backend(settings)
    if settings.rezolve_configured:
        backends["rezolve"] = rezolve_backend(settings)
    if settings.socialboards_configured:
        backends["socialboards"] = socialboards_backend(settings)
    return backends
