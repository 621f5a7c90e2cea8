"""Start-up checks, shared by `python app.py` (at start) and `python app.py check`.

Each check answers with a `Check`: passed, failed, or not done (and why), naming the settings
involved. At start the bot refuses to run (exit 2) when Slack or a ticket system *refuses* its
credentials; when one cannot be reached it starts anyway, warns, and reports it in `/healthz`.

A check never rotates a token the bot relies on: Socialboards replaces its refresh token at every
exchange, so `python app.py check` (which runs beside a serving bot) does not exchange it: it tries
the access token the bot stored, if one is still valid, and otherwise says it did not check. Only
the serving bot exchanges, at start, one replica at a time, and stores the new tokens as it always
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import BackendError, TicketBackend

from ..settings import Settings

# Slack's answers that mean "this token is not (or no longer) valid": retrying cannot help.
SLACK_REFUSED = {
    "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
    "not_allowed_token_type", "invalid_token", "no_permission", "missing_scope", "team_access_not_granted",
    "ekm_access_denied", "org_login_required",
}
SYSTEMS = {"serval": "Serval", "rezolve": "Rezolve.ai", "socialboards": "Socialboards"}
ADDRESS = {
    "serval": ("SERVAL_BASE_URL",),
    "rezolve": ("REZOLVE_BASE_URL", "REZOLVE_REALM", "REZOLVE_TOKEN_URL"),
    "socialboards": ("SOCIALBOARDS_BASE_URL", "SOCIALBOARDS_TOKEN_URL"),
}


@dataclass
class Check:
    """One check's outcome. `ok`: True passed, False failed, None not done (`detail` says why).
    `refused`: credentials or settings were refused (start-up stops); otherwise a failure means the
    other side could not be reached (start-up goes on). `settings`: the settings involved."""

    name: str
    ok: bool | None
    detail: str
    refused: bool = False
    settings: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)

    @property
    def unreachable(self) -> bool:
        return self.ok is False and not self.refused

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "–"}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


def _named(settings: tuple[str, ...]) -> str:
    return " and ".join(settings) if len(settings) <= 2 else ", ".join(settings[:-1]) + " and " + settings[-1]


def _slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown error") if exc.response is not None else str(exc)


# --- Slack --------------------------------------------------------------------------------------


async def slack_installs(installations: Any) -> list[Check]:
    """Installs by OAuth: one line per installed workspace or org (its scopes, token rotation), and what
    each misses of the scopes an install asks for (SLACK_SCOPES)."""
    from ..installations import BOT_SCOPES

    try:
        bots = await installations.all()
    except Exception as exc:
        return [Check("Slack installs", False, f"could not be read ({type(exc).__name__}: {exc})", settings=("DATABASE_URL",))]
    if not bots:
        return [Check("Slack installs", None, "installs by OAuth (SLACK_CLIENT_ID): none yet; install at /slack/install")]
    out = []
    for b in bots:
        where = f"org {b.enterprise_id} (org-wide)" if b.is_enterprise_install else \
            f"workspace {b.team_id}" + (f" {b.team_name}" if b.team_name else "") + (f" in org {b.enterprise_id}" if b.enterprise_id else "")
        rotation = "token rotation on" if b.bot_refresh_token else "no token rotation"
        missing = sorted(set(installations.scopes or BOT_SCOPES) - set(b.bot_scopes or []))
        detail = f"{where}: scopes {','.join(b.bot_scopes or []) or 'none'}; {rotation}"
        if missing:
            detail += f"; MISSING {','.join(missing)} (reinstall at /slack/install)"
        out.append(Check("Slack install", not missing, detail, settings=("SLACK_SCOPES",) if missing else ()))
    return out


async def slack_bot_token(auth_test: Callable[[], Awaitable[Any]], *, timeout: float = 10.0) -> Check:
    """`auth.test` with SLACK_BOT_TOKEN. `auth_test` returns the workspace (People.workspace) or
    Slack's answer."""
    name = "Slack bot token (auth.test)"
    try:
        async with asyncio.timeout(timeout):
            answer = await auth_test()
    except SlackApiError as exc:
        error = _slack_error(exc)
        if error in SLACK_REFUSED:
            return Check(name, False, f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token "
                         "(xoxb-…) from your Slack app's OAuth & Permissions page", refused=True,
                         settings=("SLACK_BOT_TOKEN",))
        return Check(name, False, f"Slack answered auth.test with {error}", settings=("SLACK_BOT_TOKEN",))
    except TimeoutError:
        return Check(name, False, f"Slack did not answer within {timeout:g} s (SLACK_API_URL)", settings=("SLACK_API_URL",))
    except (aiohttp.ClientError, OSError) as exc:
        return Check(name, False, f"Slack could not be reached ({type(exc).__name__}: {exc})", settings=("SLACK_API_URL",))
    except Exception as exc:  # an answer that is not Slack's (a proxy's page), an SDK error
        return Check(name, False, f"no usable answer from Slack ({type(exc).__name__}: {exc})", settings=("SLACK_API_URL",))
    team = getattr(answer, "team_id", None) or (answer.get("team_id") if hasattr(answer, "get") else None)
    return Check(name, True, f"valid for workspace {team or '?'}", settings=("SLACK_BOT_TOKEN",))


async def slack_app_token(client: AsyncWebClient, app_token: str, *, timeout: float = 10.0) -> Check:
    """`apps.connections.open` with SLACK_APP_TOKEN: Slack hands out a Socket Mode URL, which is
    not opened (the running bot's connections are untouched)."""
    name = "Slack app-level token (apps.connections.open)"
    try:
        async with asyncio.timeout(timeout):
            await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = _slack_error(exc)
        if error in SLACK_REFUSED:
            return Check(name, False, f"Slack refused SLACK_APP_TOKEN ({error}): create an app-level token (xapp-…) "
                         "with connections:write under Basic Information → App-Level Tokens, and turn Socket Mode on",
                         refused=True, settings=("SLACK_APP_TOKEN",))
        return Check(name, False, f"Slack answered apps.connections.open with {error}", settings=("SLACK_APP_TOKEN",))
    except TimeoutError:
        return Check(name, False, f"Slack did not answer within {timeout:g} s (SLACK_API_URL)", settings=("SLACK_API_URL",))
    except (aiohttp.ClientError, OSError) as exc:
        return Check(name, False, f"Slack could not be reached ({type(exc).__name__}: {exc})", settings=("SLACK_API_URL",))
    except Exception as exc:
        return Check(name, False, f"no usable answer from Slack ({type(exc).__name__}: {exc})", settings=("SLACK_API_URL",))
    return Check(name, True, "valid; Socket Mode is on", settings=("SLACK_APP_TOKEN",))


# --- ticket systems -----------------------------------------------------------------------------


def credentials(settings: Settings, backend: str) -> tuple[str, ...]:
    """The settings a ticket system's credentials come from."""
    if backend == "serval":
        if settings.serval_bearer_token and settings.serval_bearer_token.get_secret_value():
            return ("SERVAL_BEARER_TOKEN",)
        return ("SERVAL_CLIENT_ID", "SERVAL_CLIENT_SECRET")
    if backend == "rezolve":
        return ("REZOLVE_CLIENT_ID", "REZOLVE_CLIENT_SECRET")
    if backend == "socialboards":
        return ("SOCIALBOARDS_CLIENT_ID", "SOCIALBOARDS_REFRESH_TOKEN")
    return ()


class NotChecked(Exception):
    """The check would do harm (rotate a token); the message says why it was not done."""


def _token_cache(backend: TicketBackend) -> Any:
    return getattr(getattr(backend, "client", None), "_tokens", None)


def stored_access_token(stored: str | None, configured_refresh_token: str) -> str | None:
    """The Socialboards access token the bot stored beside the refresh token (state
    `socialboards.refresh_token`), if it descends from the configured refresh token and is valid
    for at least another minute."""
    from clients.socialboards import refresh_token_fingerprint

    try:
        data = json.loads(stored or "null")
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("from") != refresh_token_fingerprint(configured_refresh_token):
        return None
    access, expires_at = data.get("access"), data.get("expires_at")
    if isinstance(access, str) and access and isinstance(expires_at, (int, float)) and expires_at - time.time() > 60:
        return access
    return None


async def fetch_token(name: str, backend: TicketBackend, *, may_rotate: bool, stored: str | None = None,
                      configured_refresh_token: str = "") -> str | None:
    """What "fetching the ticket system's token" is for each system; returns how, when worth saying.
    Serval: the client-credentials exchange, or with a static token a `GET /v2/teams`;
    Rezolve.ai: the client-credentials exchange (Keycloak);
    Socialboards: the refresh-token exchange rotates the refresh token, so only with `may_rotate`
    (the serving bot, which stores the new one, one replica at a time). Otherwise the access token
    the bot stored (`stored`: the state row) is tried with `GET /categories`, or NotChecked."""
    client: Any = getattr(backend, "client", None)
    if name == "serval" and getattr(client, "_static_token", None):
        await client.list_teams()
        return "GET /v2/teams answered"
    if name == "socialboards" and not may_rotate:
        access = stored_access_token(stored, configured_refresh_token)
        if access is None:
            raise NotChecked(
                "not checked: no valid access token is stored, and exchanging the refresh token would rotate "
                "it under the running bot (the bot checks it when it starts, and stores the new one)"
            )

        async def stored_token() -> tuple[str, float]:
            return access, 300.0

        from clients._http import TokenCache

        client._tokens = TokenCache(stored_token)  # this check's own client: never exchanges
        await client.root_categories()
        return "the access token the bot stored works; the refresh token was not exchanged (that would rotate it)"
    tokens = _token_cache(backend)
    if tokens is None:
        raise NotChecked("this ticket system has no token to check")
    await tokens.get()
    return None


async def ticket_system(
    name: str, backend: TicketBackend, settings: Settings, *, may_rotate: bool, stored: str | None = None,
    timeout: float = 10.0,
) -> Check:
    """Fetch the ticket system's token: passed, refused (credentials or address wrong: start-up
    stops), unreachable (start-up goes on), or not done. `stored`: Socialboards' state row."""
    system = SYSTEMS.get(name, name)
    label = f"{system} token"
    creds = credentials(settings, name)
    refresh = settings.socialboards_refresh_token.get_secret_value() if settings.socialboards_refresh_token else ""
    try:
        async with asyncio.timeout(timeout):
            how = await fetch_token(name, backend, may_rotate=may_rotate, stored=stored, configured_refresh_token=refresh)
    except NotChecked as exc:
        return Check(label, None, str(exc), settings=creds)
    except TimeoutError:
        return Check(label, False, f"{system} did not answer within {timeout:g} s", settings=ADDRESS.get(name, ()))
    except BackendError as exc:
        if exc.transient:
            return Check(label, False, f"{exc.message}", settings=ADDRESS.get(name, ()))
        if exc.status == 404:
            named = ADDRESS.get(name, ())
            return Check(label, False, f"{exc.message}: check {_named(named)}", refused=True, settings=named)
        return Check(label, False, f"{exc.message}: check {_named(creds)}", refused=True, settings=creds)
    except Exception as exc:  # a URL httpx cannot use, a DNS failure outside the transport mapping
        return Check(label, False, f"{system} could not be reached ({type(exc).__name__}: {exc})",
                     settings=ADDRESS.get(name, ()))
    return Check(label, True, f"accepted ({_named(creds)})" + (f": {how}" if how else ""), settings=creds)


async def ticket_system_details(name: str, backend: TicketBackend, settings: Settings, *, timeout: float = 15.0) -> list[Check]:
    """More than the token, for `python app.py check`: Serval's team, Rezolve.ai's own self-check
    (role, team, ticket type)."""
    system = SYSTEMS.get(name, name)
    try:
        async with asyncio.timeout(timeout):
            if name == "serval":
                teams = await backend.client.list_teams()  # type: ignore[attr-defined]
                ids = {t.id for t in teams}
                if settings.serval_team_id and settings.serval_team_id not in ids:
                    return [Check(f"{system} team", False, f"SERVAL_TEAM_ID {settings.serval_team_id!r} is not one of the "
                                  f"{len(ids)} teams this token sees", refused=True, settings=("SERVAL_TEAM_ID",))]
                return [Check(f"{system} team", True, f"{settings.serval_team_id} exists", settings=("SERVAL_TEAM_ID",))]
            if name == "rezolve" and hasattr(backend, "check"):
                problems = await backend.check()  # type: ignore[attr-defined]
                if problems:
                    return [Check(f"{system} account", False, "; ".join(problems), refused=True)]
                return [Check(f"{system} account", True, "may create tickets in REZOLVE_TEAM_ID; the ticket type loads")]
    except TimeoutError:
        return [Check(f"{system} details", False, f"{system} did not answer within {timeout:g} s")]
    except BackendError as exc:
        return [Check(f"{system} details", False, exc.message, refused=not exc.transient)]
    return []


async def run_all(settings: Settings) -> list[Check]:
    """`python app.py check`: the start-up checks and a few more, beside a serving bot if one runs
    (storage opened without serving; no token rotated)."""
    from ..backends import make_backends
    from ..core import slack_client
    from .logs import REDACTED, URL_PASSWORD
    from ..routing import RoutingError, load_routing_file
    from ..settings import ensure_private_dir
    from ..journal.storage import Storage, head_revision, schema_revision

    out: list[Check] = []
    backends: dict[str, Any] = {}
    storage: Storage | None = None
    stored_socialboards: str | None = None
    shown = re.sub(URL_PASSWORD, lambda m: f"{m.group(1)}:{REDACTED}@", settings.database_url)
    try:
        ensure_private_dir(settings.database_path)
        storage = await Storage(settings.database_url).open(serving=False)
        async with asyncio.timeout(10):
            await storage.set_state("health.check", str(time.time()))
            revision = await schema_revision(settings.database_url)
            stored_socialboards = await storage.get_state("socialboards.refresh_token")
        newest = head_revision()
        out.append(Check("database", True, f"{shown} reachable and writable, schema at revision {revision}"
                                + (" (the newest)" if revision == newest else f" (this version's newest: {newest})"),
                                settings=("DATABASE_URL",)))
    except Exception as exc:
        out.append(Check("database", False, f"{shown}: {type(exc).__name__}: {exc}", settings=("DATABASE_URL",)))
        if storage is not None:
            await storage.close()
            storage = None
    try:
        backends = make_backends(settings)
        load_routing_file(settings.routing_file, set(backends), required=settings.routing_file != "config/routing.yml")
        out.append(Check("routing file", True, f"{settings.routing_file} "
                                + ("reads well" if Path(settings.routing_file).exists() else "absent (no channel routes)"),
                                settings=("ROUTING_FILE",)))
    except RoutingError as exc:
        out.append(Check("routing file", False, str(exc), refused=True, settings=("ROUTING_FILE",)))
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    try:
        slack = slack_client(settings, session)
        if settings.oauth:
            from ..installations import Installations

            found = await slack_installs(Installations(storage.engine, settings.slack_client_id, scopes=settings.slack_scopes)) \
                if storage is not None else []
        else:
            found = [await slack_bot_token(slack.auth_test)]
        if settings.slack_app_token is not None:
            bare = AsyncWebClient(base_url=slack.base_url, timeout=10, session=session, retry_handlers=[])
            found.append(await slack_app_token(bare, settings.slack_app_token.get_secret_value()))
        else:
            found.append(Check("Slack app-level token", None, "SLACK_APP_TOKEN is empty: the bot runs in HTTP mode"))
        for name, backend in backends.items():
            result = await ticket_system(name, backend, settings, may_rotate=False, stored=stored_socialboards)
            found.append(result)
            if result.ok:
                found += await ticket_system_details(name, backend, settings)
        out += found
    finally:
        for backend in backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()
        await session.close()
        if storage is not None:
            await storage.close()
    return out
