"""Where tickets from a channel go: back end, team, default type and whether to share.

Each value comes from the first source that sets it: what admins set in Slack (`/ticket config`,
stored in the database), then the routing file (`config/routing.yml`), then the global default.

Routing file format (validated at start-up; see config/routing.example.yml):

    channels:
      C0123ABCD:            # a channel id (names change, ids don't)
        backend: serval     # serval | rezolve | socialboards (must be configured)
        team: team-it       # Serval team id
        type: incident      # request | incident
        share: true         # "Share in #channel" starts checked
        custom_fields: false # the form leaves out the ticket system's custom fields here
        intake: auto        # off | button | auto: what a new top-level message gets
        reaction_emoji: sos # this emoji files a ticket here (default: REACTION_EMOJI)
"""

from __future__ import annotations

import time

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .installations import Workspace
from .journal.storage import Storage

TYPE_VALUES = {"request": "TICKET_TYPE_REQUEST", "incident": "TICKET_TYPE_INCIDENT"}
INTAKE_VALUES = ("off", "button", "auto")  # request channels: nothing, a "Create ticket" button, a ticket
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


class RoutingError(Exception):
    pass


class RouteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str | None = None
    team: str | None = None
    type: Literal["request", "incident"] | None = None
    share: bool | None = None
    custom_fields: bool | None = None  # false: the form leaves out the ticket system's custom fields
    intake: Literal["off", "button", "auto"] | None = None
    reaction_emoji: str | None = None

    @field_validator("reaction_emoji")
    @classmethod
    def _emoji(cls, v: str | None) -> str | None:
        return emoji_name(v) if v is not None else None


def emoji_name(text: str) -> str:
    """`:ticket:`, `ticket` or `Ticket` → `ticket`; a name with spaces or colons inside is refused."""
    name = text.strip().strip(":").lower()
    if not name or any(c.isspace() or c == ":" for c in name):
        raise ValueError(f"{text!r} is not an emoji name (like ticket or :ticket:)")
    return name


class WorkspaceEntry(BaseModel):
    """What differs for one Slack workspace (or Enterprise Grid org) of an install by OAuth."""

    model_config = ConfigDict(extra="forbid")

    serval_slack_integration_id: str | None = None  # Serval's Slack integration of that workspace
    backend: str | None = None  # its default ticket system (below its channels' routes)
    team: str | None = None  # its default team (Serval team id)


WORKSPACE_ID = re.compile(r"[TE][A-Z0-9]{2,}")


class RoutingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: dict[str, RouteEntry] = {}
    workspaces: dict[str, WorkspaceEntry] = {}

    @field_validator("workspaces")
    @classmethod
    def _workspace_ids(cls, workspaces: dict[str, WorkspaceEntry]) -> dict[str, WorkspaceEntry]:
        for team_id in workspaces:
            if not WORKSPACE_ID.fullmatch(team_id):
                raise ValueError(f"{team_id!r} is not a workspace or org id (like T0123ABCD or E0123ABCD)")
        return workspaces

    @field_validator("channels")
    @classmethod
    def _ids(cls, channels: dict[str, RouteEntry]) -> dict[str, RouteEntry]:
        for channel_id in channels:
            if not CHANNEL_ID.match(channel_id):
                raise ValueError(f"{channel_id!r} is not a channel id (like C0123ABCD)")
        return channels


def load_workspaces(path: str) -> dict[str, WorkspaceEntry]:
    """The routing file's `workspaces:` section (read after `load_routing_file` checked the file)."""
    file = Path(path)
    if not file.exists():
        return {}
    return RoutingFile.model_validate(yaml.safe_load(file.read_text()) or {}).workspaces


def load_routing_file(path: str, backends: set[str], *, required: bool = False) -> dict[str, RouteEntry]:
    """Read and check the routing file; a clear RoutingError names the file, channel and field."""
    file = Path(path)
    if not file.exists():
        if required:
            raise RoutingError(f"Routing file {path} does not exist")
        return {}
    try:
        data = yaml.safe_load(file.read_text()) or {}
        routes = RoutingFile.model_validate(data).channels
    except yaml.YAMLError as exc:
        raise RoutingError(f"Routing file {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise RoutingError(f"Routing file {path}: " + "; ".join(problems)) from None
    for team_id, workspace in load_workspaces(path).items():
        if workspace.backend and workspace.backend not in backends:
            raise RoutingError(
                f"Routing file {path}: workspaces.{team_id}.backend: {workspace.backend!r} is not configured"
                f" (configured: {', '.join(sorted(backends))})"
            )
    for channel_id, entry in routes.items():
        if entry.backend and entry.backend not in backends:
            raise RoutingError(
                f"Routing file {path}: channels.{channel_id}.backend: {entry.backend!r} is not configured"
                f" (configured: {', '.join(sorted(backends))})"
            )
    return routes


@dataclass
class Route:
    backend: str
    values: dict[str, Any] = field(default_factory=dict)  # form defaults: team_id, type
    share: bool = False
    custom_fields: bool = True  # the form shows the ticket system's custom fields (Serval's)
    intake: str = "off"  # request channel: "off" | "button" | "auto"
    reaction_emoji: str | None = None  # None: REACTION_EMOJI
    sources: dict[str, str] = field(default_factory=dict)  # setting → "slack" | "file" | "default"


class Router:
    def __init__(
        self,
        storage: Storage,
        file_routes: dict[str, RouteEntry],
        *,
        default_backend: str,
        default_share: bool,
        backends: set[str],
        max_age: float = 1.0,
        workspaces: dict[str, WorkspaceEntry] | None = None,
    ) -> None:
        self.storage = storage
        self.file_routes = file_routes
        self.workspaces = workspaces or {}  # the routing file's `workspaces:`: defaults per workspace (or org)
        self.default_backend = default_backend
        self.default_share = default_share
        self.backends = backends
        # What admins set in Slack, by channel (None: nothing set), with when it was read. Another
        # replica may change a route at any time: an entry is read again after `max_age` seconds,
        # so a change made anywhere applies everywhere within that (at most one read per channel
        # per `max_age`, whatever the traffic).
        self._slack_routes: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.max_age = max_age

    async def _slack_route(self, channel_id: str) -> dict[str, Any] | None:
        cached = self._slack_routes.get(channel_id)
        now = time.monotonic()
        if cached is None or now - cached[0] > self.max_age:
            cached = (now, await self.storage.route(channel_id))
            self._slack_routes[channel_id] = cached
        return cached[1]

    async def route(self, channel_id: str | None) -> Route:
        layers: list[tuple[str, dict[str, Any]]] = []
        if channel_id:
            stored = await self._slack_route(channel_id)
            if stored:
                layers.append(("slack", stored))
            if channel_id in self.file_routes:
                layers.append(("file", self.file_routes[channel_id].model_dump(exclude_none=True)))
        if self.workspaces and (here := Workspace.current()):  # installs by OAuth: the workspace's own defaults
            for key in (here.team_id, here.enterprise_id):
                if key and key in self.workspaces:
                    layers.append(("workspace", self.workspaces[key].model_dump(
                        include={"backend", "team"}, exclude_none=True)))
                    break
        layers.append(("default", {"backend": self.default_backend, "share": self.default_share}))

        def pick(key: str) -> tuple[Any, str | None]:
            for source, layer in layers:
                if layer.get(key) is not None:
                    return layer[key], source
            return None, None

        route = Route(backend=self.default_backend)
        backend, source = pick("backend")
        if backend in self.backends:
            route.backend, route.sources["backend"] = backend, source or "default"
        team, source = pick("team")
        if team:
            route.values["team_id"], route.sources["team"] = team, source or "default"
        kind, source = pick("type")
        if kind:
            route.values["type"], route.sources["type"] = TYPE_VALUES.get(kind, kind), source or "default"
        share, source = pick("share")
        route.share, route.sources["share"] = bool(share), source or "default"
        custom_fields, source = pick("custom_fields")
        if custom_fields is not None:
            route.custom_fields, route.sources["custom_fields"] = bool(custom_fields), source or "default"
        intake, source = pick("intake")
        if intake in INTAKE_VALUES:
            route.intake, route.sources["intake"] = intake, source or "default"
        emoji, source = pick("reaction_emoji")
        if emoji:
            route.reaction_emoji, route.sources["reaction_emoji"] = emoji, source or "default"
        return route

    async def save(self, channel_id: str, entry: RouteEntry, user_id: str) -> None:
        stored = entry.model_dump(exclude_none=True)
        await self.storage.save_route(channel_id, stored, user_id)
        self._slack_routes[channel_id] = (time.monotonic(), stored)
