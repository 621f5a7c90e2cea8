"""The Bolt app and what a Slack request passes before it reaches Bolt, over HTTP or Socket Mode:
Slack's certificate check, the signature (unsigned junk is 401, never parsed), one parse of the body,
and the malformed-request check (`handlers.shapes`); the log context of a request; and `InFlight`,
the requests and their tasks a graceful stop lets finish."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

import handlers
from bot import background
from bot.core import Bot
from bot.installations import BOT_SCOPES, Installations, Workspace
from handlers import shapes


def build_bolt_app(bot: Bot) -> AsyncApp:
    if bot.installations is not None:
        return _oauth_bolt_app(bot, bot.installations)
    # Bolt warns that the token it could read from SLACK_BOT_TOKEN is unused: true (our client and
    # `authorize` carry it), and nothing to act on.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(
        lambda record: not ("`token`" in record.getMessage() and "will be" in record.getMessage())
    )
    token = bot.settings.slack_bot_token.get_secret_value()
    known: dict[tuple[str | None, str | None], AuthorizeResult] = {}  # once auth.test answered: one per workspace

    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        """Without this, Bolt asks `auth.test` when the first request arrives, before any listener
        can acknowledge it. The bot's workspace comes from `auth.test` asked in the background;
        until it answers, the request's own workspace is taken."""
        found = known.get((enterprise_id, team_id))
        if found is not None:
            return found
        workspace = bot.people.known_workspace
        if workspace is None:
            bot.people.warm_workspace()
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)
        if len(known) > 1000:  # a bound, should requests name many workspaces (Slack Connect)
            known.clear()
        found = known[(enterprise_id, team_id)] = AuthorizeResult(
            enterprise_id=enterprise_id or workspace.enterprise_id,
            team_id=team_id or workspace.team_id,
            url=workspace.url,
            bot_user_id=workspace.bot_user_id,
            bot_id=workspace.bot_id,
            bot_token=token,
        )
        return found

    app = AsyncApp(
        client=bot.slack,
        authorize=authorize,
        signing_secret=bot.settings.slack_signing_secret.get_secret_value(),
        raise_error_for_unhandled_request=False,
        # POST /slack/events checks the signature before Bolt sees the request (unsigned: 401, never
        # parsed), and Socket Mode requests carry none: a second check by Bolt would only repeat it.
        request_verification_enabled=False,
        ssl_check_enabled=False,  # answered before Bolt too (`is_ssl_check`); never sent over Socket Mode
    )
    handlers.register(app, bot)
    return app


NOT_INSTALLED = (
    ":wave: This app is not installed in this workspace (or it was removed). "
    "Ask an admin to install it, then try again."
)
NO_AUTH_EVENTS = {"app_uninstalled", "tokens_revoked", "team_access_revoked"}  # Bolt asks no token for them


class InstalledAuthorize(AsyncAuthorize):
    """Bolt's authorize for installs by OAuth, from the installed bot as stored: unlike Bolt's own, it asks
    Slack nothing (`auth.test`) before a listener can acknowledge the request."""

    def __init__(self, installations: Installations) -> None:
        self.installations = installations

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, **_: Any) -> AuthorizeResult | None:
        found = await self.installations.bot(Workspace(team_id, enterprise_id, bool(context.is_enterprise_install)))
        if found is None:
            return None
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=found.bot_token,
                               bot_id=found.bot_id, bot_user_id=found.bot_user_id, bot_scopes=found.bot_scopes)


def _oauth_bolt_app(bot: Bot, installations: Installations) -> AsyncApp:
    """Installs by OAuth (SLACK_CLIENT_ID): Bolt's OAuth flow (GET /slack/install, /slack/oauth_redirect,
    its state kept in the database and tied to the browser by Bolt's cookie), and each request served with
    the token of the workspace (or org) it comes from. The workspace is noted for what the request
    starts (`Workspace.enter`): the journal records it with each submission."""
    settings = bot.settings
    scopes = list(installations.scopes or BOT_SCOPES)
    oauth = AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value() if settings.slack_client_secret else "",
        scopes=scopes,
        installation_store=installations.store,
        state_store=installations.states,
        authorization_url=settings.slack_authorize_url,
        install_path="/slack/install",
        redirect_uri_path="/slack/oauth_redirect",
    )

    async def installed_here(req: AsyncBoltRequest, next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        """A workspace where the app is not installed gets a polite notice and a log line, no traceback."""
        body = req.body if isinstance(req.body, dict) else {}
        event = body.get("event")
        if body.get("type") in ("url_verification", "ssl_check") or (
            isinstance(event, dict) and event.get("type") in NO_AUTH_EVENTS
        ):  # from no workspace, or about one being removed
            return await next()
        workspace = Workspace(req.context.team_id, req.context.enterprise_id, bool(req.context.is_enterprise_install))
        if await installations.bot(workspace) is None:
            logging.getLogger("app").warning("a request from %s, where the app is not installed: told so", workspace)
            return BoltResponse(status=200, body=NOT_INSTALLED)
        workspace.enter()  # what this request starts speaks with this workspace's token
        return await next()

    app = AsyncApp(
        client=bot.slack,
        authorize=InstalledAuthorize(installations),
        before_authorize=installed_here,
        oauth_settings=oauth,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        raise_error_for_unhandled_request=False,
        user_facing_authorize_error_message=NOT_INSTALLED,
        request_verification_enabled=False,  # as above: checked before Bolt sees the request
        ssl_check_enabled=False,
    )
    handlers.register(app, bot)
    return app


def is_interaction(body: str) -> bool:
    """A form body with a `payload` field (interactions), as opposed to a slash command."""
    return body.startswith("payload=") or "&payload=" in body


def bolt_request_for(request: web.Request, body: str) -> AsyncBoltRequest:
    """The Bolt request for a signed HTTP body, parsed once.

    Bolt takes any form body that contains the word "payload" for an interaction, so
    `/ticket payload export fails` would be parsed as an empty interaction and answered 404. For a
    form body without a `payload` field, Bolt parses a copy in which the word is percent-encoded
    (`%70ayload` decodes to the same text); its signature check still sees the body Slack signed."""
    parsed = body
    if not body.startswith("{") and not is_interaction(body) and "payload" in body:
        parsed = body.replace("payload", "%70ayload")
    bolt_request = AsyncBoltRequest(body=parsed, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
    bolt_request.raw_body = body
    return bolt_request


def malformed(body: str, data: object) -> str | None:
    """Why this (signed) body is not a Slack request Bolt can route, or None if it looks fine: every
    field Bolt and the listeners read has the type Slack sends (`handlers.shapes`).
    `data`: the body as Bolt parsed it (`AsyncBoltRequest.body`), so the body is parsed only once."""
    if body.startswith("{") or is_interaction(body):  # Events API; an interaction's payload
        return shapes.problem(data)
    return None if isinstance(data, dict) and "command" in data else "neither a command, an interaction nor an event"


def unreadable(body: str) -> str:
    """Why Bolt could not even parse this signed body: invalid JSON, or a field its parsing reads
    (the team, the user, the authorizations) that is not what Slack sends."""
    try:
        data = json.loads(body if body.startswith("{") else urllib.parse.parse_qs(body).get("payload", [""])[0])
    except ValueError:
        return "body is not valid JSON" if body.startswith("{") else "payload is not valid JSON"
    return shapes.problem(data) or "Bolt cannot read it"


TIMESTAMP = re.compile(r"[0-9]{1,15}")


def signed(verifier: SignatureVerifier, body: str, headers: Mapping[str, str]) -> bool:
    """Slack's signature over this body, made within the last 5 minutes. Anything odd in the
    headers (a timestamp that is no number, a signature that is no ASCII) is just unsigned."""
    if not TIMESTAMP.fullmatch(headers.get("X-Slack-Request-Timestamp") or ""):
        return False
    try:
        return verifier.is_valid_request(body, dict(headers))
    except (ValueError, TypeError):
        return False


def is_ssl_check(body: str) -> bool:
    """Slack's certificate check (`ssl_check=1&token=...`): answered 200, nothing else done."""
    return "ssl_check=1" in body.split("&")


def slack_context(data: object) -> dict[str, str | None]:
    """The Slack user and channel a request is about, for the log context."""
    if not isinstance(data, dict):
        return {}
    user, channel = data.get("user_id"), data.get("channel_id")  # slash commands
    if isinstance(data.get("user"), dict):  # interactions
        user = data["user"].get("id")
    elif isinstance(data.get("user"), str):
        user = data["user"]
    if isinstance(data.get("channel"), dict):
        channel = data["channel"].get("id")
    event = data.get("event")
    if isinstance(event, dict):  # Events API
        user = event.get("user") if isinstance(event.get("user"), str) else user
        channel = event.get("channel") if isinstance(event.get("channel"), str) else channel
    return {"user": user if isinstance(user, str) else None, "channel": channel if isinstance(channel, str) else None}


class InFlight:
    """Slack requests being handled (HTTP requests, Socket Mode envelopes) and the tasks they started:
    Bolt acknowledges first and runs a listener's work (views.open, a submission) in tasks of its
    own, which a graceful stop lets finish too. Installed as the event loop's task factory, it notes
    every task created while a request is handled (asyncio copies the context into each task, so a
    task started by such a task counts as well)."""

    _current: contextvars.ContextVar["InFlight | None"] = contextvars.ContextVar("slack_request", default=None)

    def __init__(self) -> None:
        self.requests = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        token = self._current.set(self)
        self.requests += 1
        try:
            with background.foreground():  # no background work starts while a request is answered
                yield
        finally:
            self.requests -= 1
            self._current.reset(token)

    def task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        # Written for every Python from 3.11: the factory takes whatever create_task passes (3.11-3.12:
        # `context=`; 3.13.3: also `name=`; 3.14: `eager_start=`) and hands it to asyncio.Task as is.
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
        context: contextvars.Context | None = kwargs.get("context")
        owner = context.get(self._current) if context is not None else self._current.get()
        if owner is self:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return task

    def install(self) -> None:
        asyncio.get_running_loop().set_task_factory(self.task_factory)  # type: ignore[arg-type]

    @property
    def busy(self) -> int:
        return self.requests + len(self.tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True
