"""Settings from environment variables (and a `.env` file). Missing, malformed or placeholder
settings stop start-up with one message naming every one of them at once; secrets are `SecretStr`
so they never print."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

from .journal.url import database_url  # SQLite → aiosqlite, PostgreSQL → asyncpg


class SettingsError(Exception):
    """A configuration problem. `problems`: one line per problem, each naming its setting."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message.removeprefix("Configuration error: ")]


# The values .env.example ships with, and other obvious stand-ins: a setting still holding one stops
# start-up (the first run otherwise retries Slack for ever with "xoxb-replace-me").
EXAMPLE_VALUES = {"replace-me", "xoxb-replace-me", "xapp-replace-me", "...", "xoxb-...", "xapp-..."}
PLACEHOLDER_WORDS = ("replace-me", "replace_me", "replaceme", "change-me", "changeme", "change_me")


def is_placeholder(value: str) -> bool:
    """A value copied from an example rather than a real one: `replace-me`, `...`, `xoxb-...`,
    `<your token>`."""
    v = value.strip().lower()
    if not v:
        return False
    if v in EXAMPLE_VALUES or any(word in v for word in PLACEHOLDER_WORDS):
        return True
    core = v
    for prefix in ("xoxb-", "xapp-", "xoxp-"):
        core = core.removeprefix(prefix)
    if not core.strip(".…*_- "):
        return True  # "...", "xoxb-...", "…", "***"
    return "..." in v or "…" in v or (v.startswith("<") and v.endswith(">"))


def http_url_problem(value: str) -> str | None:
    """Why `value` is not a usable http(s) URL, or None."""
    try:
        parts = urlsplit(value)
        parts.port  # raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        return f"must be an http(s) URL; it does not parse ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http(s) URL"
    if not parts.hostname or any(c.isspace() for c in value):
        return "must be an http(s) URL with a host name, e.g. https://host.example.com"
    return None


def check_database_url(v: str) -> str:
    usage = "must be sqlite:///path/to/file.db (one process) or postgresql://user:password@host:5432/dbname"
    if not v.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+asyncpg://")):
        raise ValueError(usage)
    try:
        url = database_url(v)
    except ValueError:
        raise ValueError(usage) from None
    if url.get_backend_name() == "postgresql" and not (url.host and url.database):
        raise ValueError(usage)
    return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Slack
    # SLACK_BOT_TOKEN: one workspace. Or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET: installs by OAuth
    # (HTTP mode), each workspace (or Enterprise Grid org) with its own token (docs/operations.md).
    slack_bot_token: SecretStr = SecretStr("")
    slack_client_id: str = ""
    slack_client_secret: SecretStr | None = None
    slack_scopes: str = ""  # comma-separated; empty: the manifest's bot scopes
    slack_signing_secret: SecretStr
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"  # installs by OAuth: Slack's authorize page
    slash_command: str = "/ticket"

    # Back end
    ticket_backend: Literal["serval", "rezolve", "socialboards"] = "serval"

    # Serval
    serval_base_url: str = "https://public.api.serval.com"
    serval_bearer_token: SecretStr | None = None
    serval_client_id: str | None = None
    serval_client_secret: SecretStr | None = None
    serval_team_id: str = ""
    serval_slack_integration_id: str = ""
    serval_timeout: float = Field(default=10.0, gt=0)
    serval_ticket_url: str = ""  # a ticket's page, e.g. https://acme.serval.com/tickets/{id}; empty: no links

    # Rezolve.ai and Socialboards (see docs/backends.md)
    rezolve_base_url: str = "https://api.rezolve.ai"
    rezolve_token_url: str = ""  # default: {REZOLVE_BASE_URL}/auth/realms/{REZOLVE_REALM}/protocol/openid-connect/token
    rezolve_client_id: str = ""
    rezolve_client_secret: SecretStr | None = None
    rezolve_tenant_id: str = ""
    rezolve_realm: str = ""
    rezolve_team_id: str = ""
    rezolve_item_type_id: str = ""
    rezolve_offer_id: str = ""  # default: the first offer of REZOLVE_ITEM_TYPE_ID
    rezolve_summary_field_id: str = ""
    rezolve_description_field_id: str = ""
    rezolve_scope: str = ""  # e.g. tickets:write, when the write scope is an optional client scope
    rezolve_catalog_type: Literal["template", "agent", "user"] = "template"
    rezolve_timeout: float = Field(default=10.0, gt=0)
    rezolve_ticket_url: str = ""  # a ticket's page, e.g. https://acme.rezolve.ai/tickets/{display_id}; empty: no links
    socialboards_base_url: str = "https://api.socialboards.com"
    socialboards_token_url: str = ""  # default: {SOCIALBOARDS_BASE_URL}/token
    socialboards_client_id: str = ""
    socialboards_refresh_token: SecretStr | None = None
    socialboards_community: str = ""
    socialboards_timeout: float = Field(default=10.0, gt=0)
    # The secret path of POST /webhooks/socialboards/<secret> (HTTP mode); unset: no webhook, polling only
    socialboards_webhook_secret: SecretStr | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_a_placeholder(cls, v: Any) -> Any:
        value = v.get_secret_value() if isinstance(v, SecretStr) else v
        if isinstance(value, str) and is_placeholder(value):
            if value.strip().lower() in EXAMPLE_VALUES:
                raise ValueError(f"still holds the example value {value.strip()!r} from .env.example: set the real one")
            raise ValueError("looks like a placeholder, not a real value")
        return v

    @field_validator("rezolve_base_url", "rezolve_token_url", "socialboards_base_url", "socialboards_token_url")
    @classmethod
    def _backend_url(cls, v: str) -> str:
        if v and (problem := http_url_problem(v)):
            raise ValueError(problem)
        return v.rstrip("/")

    def _missing_for(self, backend: str) -> list[str]:
        """The settings a back end still needs, by environment variable name."""
        required = {
            "rezolve": ("rezolve_client_id", "rezolve_client_secret", "rezolve_tenant_id", "rezolve_realm",
                        "rezolve_team_id", "rezolve_item_type_id"),
            "socialboards": ("socialboards_client_id", "socialboards_refresh_token"),
        }[backend]
        missing = []
        for name in required:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if not value:
                missing.append(name.upper())
        return missing

    @property
    def rezolve_configured(self) -> bool:
        return not self._missing_for("rezolve")

    @property
    def socialboards_configured(self) -> bool:
        return not self._missing_for("socialboards")

    @property
    def rezolve_token_endpoint(self) -> str:
        return self.rezolve_token_url or (
            f"{self.rezolve_base_url}/auth/realms/{self.rezolve_realm}/protocol/openid-connect/token"
        )

    # Behaviour
    share_in_channel_default: bool = False
    suggest_similar: bool = True  # the form offers the requester's similar open tickets ("add to this one instead")
    queued_after_seconds: float = Field(default=2.5, ge=0)
    retry_base_seconds: float = Field(default=0.5, gt=0)  # first wait between two attempts
    retry_max_seconds: float = Field(default=300.0, gt=0)  # longest wait between two attempts
    give_up_after_seconds: float = Field(default=86400.0, gt=0)  # transient failures, then report
    max_tickets_in_flight: int = Field(default=64, ge=1)  # submissions in their steps at once
    lease_seconds: float = Field(default=30.0, ge=1)  # a dead process's submissions are taken over after this
    journal_retention_days: float = Field(default=90.0, ge=0)  # finished submissions and event ids, then deleted

    # After the ticket (docs/after-the-ticket.md)
    status_notices: Literal["thread", "dm", "off"] = "thread"  # where "resolved" / "cancelled" notices go
    # In a channel shared with another organisation (Slack Connect): minimal = the ticket's id and status
    # only (no assignee, no link to the ticket system, no agent's name); full = as in any channel.
    shared_channel_details: Literal["minimal", "full"] = "minimal"
    status_poll_seconds: float = Field(default=60.0, gt=0)  # how often a recently changed ticket is looked at
    status_poll_max_per_minute: int = Field(default=60, ge=1)  # calls to the ticket system for following, at most
    track_days: float = Field(default=30.0, gt=0)  # a ticket unchanged this long is no longer followed
    # Ticket links that unfold (link_shared → chat.unfurl)
    unfurl_cache_seconds: float = Field(default=60.0, ge=0)  # a looked-up ticket is shown this long without asking again
    unfurl_lookups_per_minute: int = Field(default=60, ge=0)  # ticket look-ups for links at most (0: no unfurls)
    unfurl_work_objects: bool = False  # unfurls carry the ticket as a Work Object (the app's Work Object Previews on)

    # People and channels
    unmatched_requester: Literal["describe", "create", "refuse"] = "describe"
    on_behalf_of: Literal["anyone", "admins", "nobody"] = "anyone"
    ticket_admins: str = ""  # Slack user ids (comma-separated) who may use /ticket config
    routing_file: str = "config/routing.yml"
    reaction_emoji: str = Field(default="ticket", pattern=r"^:?[^\s:]+:?$")  # adding it to a message files a ticket
    people_refresh_seconds: float = Field(default=3600.0, gt=0)

    # Storage and serving
    database_url: str = "sqlite:///./data/tickets.db"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    stuck_after_seconds: float = Field(default=900.0, gt=0)  # /healthz reports pending submissions older than this

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        if v.get_secret_value() and not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return v

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value():
            return None
        if v is not None and not v.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return v

    @field_validator("slack_api_url", "slack_authorize_url", "serval_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if problem := http_url_problem(v):
            raise ValueError(problem)
        return v

    @field_validator("serval_ticket_url", "rezolve_ticket_url")
    @classmethod
    def _ticket_url(cls, v: str) -> str:
        v = v.strip()
        if not v:
            return v
        if problem := http_url_problem(v.replace("{id}", "x").replace("{display_id}", "x")):
            raise ValueError(problem)
        if "{id}" not in v and "{display_id}" not in v:
            raise ValueError("must name the ticket with {id} and/or {display_id}, "
                             "e.g. https://acme.example.com/tickets/{id}")
        return v

    @field_validator("slash_command")
    @classmethod
    def _command(cls, v: str) -> str:
        if not v.startswith("/") or " " in v:
            raise ValueError("must look like /ticket")
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        return check_database_url(v)

    @property
    def serval_configured(self) -> bool:
        return bool(
            self.serval_team_id
            and self.serval_slack_integration_id
            and (
                (self.serval_bearer_token and self.serval_bearer_token.get_secret_value())
                or (self.serval_client_id and self.serval_client_secret)
            )
        )

    def _backend_problems(self) -> list[str]:
        """What the default ticket system still needs, one line per problem."""
        problems = []
        if self.ticket_backend == "serval":
            missing = [
                name
                for name, value in (
                    ("SERVAL_TEAM_ID", self.serval_team_id),
                    ("SERVAL_SLACK_INTEGRATION_ID", self.serval_slack_integration_id),
                )
                if not value
            ]
            if missing:
                problems.append(f"{', '.join(missing)} must be set for the Serval back end")
            has_bearer = self.serval_bearer_token and self.serval_bearer_token.get_secret_value()
            has_client = self.serval_client_id and self.serval_client_secret
            if not has_bearer and not has_client:
                problems.append("set SERVAL_BEARER_TOKEN, or SERVAL_CLIENT_ID and SERVAL_CLIENT_SECRET")
        elif self.ticket_backend in ("rezolve", "socialboards"):
            if missing := self._missing_for(self.ticket_backend):
                label = {"rezolve": "Rezolve.ai", "socialboards": "Socialboards"}[self.ticket_backend]
                problems.append(f"{', '.join(missing)} must be set for the {label} back end")
        return problems

    @property
    def oauth(self) -> bool:
        """Installs by OAuth (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET) rather than one SLACK_BOT_TOKEN."""
        return bool(self.slack_client_id and self.slack_client_secret and self.slack_client_secret.get_secret_value())

    @model_validator(mode="after")
    def _backend(self) -> "Settings":
        if not self.slack_bot_token.get_secret_value() and not self.oauth:
            if self.slack_client_id or self.slack_client_secret:
                raise ValueError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET must both be set to install by OAuth")
            raise ValueError("SLACK_BOT_TOKEN is not set")
        if problems := self._backend_problems():
            raise ValueError(PROBLEM_SEPARATOR.join(problems))
        return self

    @property
    def admin_ids(self) -> set[str]:
        return {u.strip() for u in self.ticket_admins.split(",") if u.strip()}

    @property
    def database_path(self) -> str:
        """The SQLite file (or `:memory:`); "" for PostgreSQL."""
        if not self.database_url.startswith("sqlite:///"):
            return ""
        return self.database_url.removeprefix("sqlite:///")

    def secrets(self) -> list[str]:
        """Every secret value, so logging can redact them wherever they appear: the `SecretStr`
        settings and the password inside DATABASE_URL (as written and percent-decoded)."""
        out = []
        for value in self.__dict__.values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        try:
            password = urlsplit(self.database_url).password
        except ValueError:
            password = None
        if password:
            out += [password, unquote(password)]
        return out


PROBLEM_SEPARATOR = "\n"


def _problems(exc: ValidationError) -> tuple[list[str], set[str]]:
    """pydantic's report as one line per problem naming the variable, and the fields in error."""
    lines, fields = [], set()
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper()
        if err["loc"]:
            fields.add(str(err["loc"][0]))
        msg = _expected(err) or err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is not set"
        lines += [f"{name} {m}" if name else m for m in msg.split(PROBLEM_SEPARATOR)]
    return lines, fields


NUMBER_ERRORS = ("int_parsing", "int_from_float", "int_type", "float_parsing", "float_type", "finite_number",
                 "greater_than", "greater_than_equal", "less_than", "less_than_equal")
NOUNS = {"port": "a port number"}  # what a number setting is, where "a whole number" says too little


def _expected(err: Any) -> str | None:
    """What a number setting must be, in words, for pydantic's raw "Input should be a valid integer,
    unable to parse string as an integer": "must be a port number from 0 to 65535 (got 'notaport')"."""
    field = Settings.model_fields.get(str(err["loc"][0])) if len(err["loc"]) == 1 else None
    if field is None or err["type"] not in NUMBER_ERRORS or field.annotation not in (int, float):
        return None
    low = high = None
    above = False
    for limit in field.metadata:
        if getattr(limit, "ge", None) is not None:
            low = limit.ge
        elif getattr(limit, "gt", None) is not None:
            low, above = limit.gt, True
        elif getattr(limit, "le", None) is not None:
            high = limit.le
    noun = NOUNS.get(str(err["loc"][0])) or ("a whole number" if field.annotation is int else "a number")
    if low is not None and high is not None and not above:
        bounds = f" from {low:g} to {high:g}"
    elif low is not None:
        bounds = f" greater than {low:g}" if above else f" of at least {low:g}"
    else:
        bounds = ""
    return f"must be {noun}{bounds} (got {err['input']!r})"


def _stand_in(name: str) -> Any:
    """A valid value for a field in error, so that the checks across fields can run too."""
    if name == "slack_bot_token":
        return "xoxb-stand-in"
    field = Settings.model_fields[name]
    if field.default not in (PydanticUndefined, None, ""):
        return field.default
    return None if name == "slack_app_token" else "stand-in"


def load_settings(**overrides: object) -> Settings:
    """Read settings. Every problem is reported at once, one line each naming the variable: the
    fields' own problems, and those across fields (what the default ticket system still needs),
    which pydantic alone would only report once every field is valid."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines, fields = _problems(exc)
    if fields and "ticket_backend" not in fields:
        # Once more with a stand-in for each field in error: the checks across fields then run.
        try:
            Settings(**{**overrides, **{name: _stand_in(name) for name in fields}})  # type: ignore[arg-type]
        except ValidationError as again:
            more, _ = _problems(again)
            lines += [line for line in more if line not in lines]
    raise settings_error(lines) from None


def settings_error(lines: list[str]) -> SettingsError:
    if len(lines) == 1:
        return SettingsError("Configuration error: " + lines[0], lines)
    listed = "\n".join(f"  - {line}" for line in lines)
    return SettingsError(
        f"Configuration error: {len(lines)} problems (settings come from the environment or .env; "
        f"docs/configuration.md describes each):\n{listed}",
        lines,
    )


class DatabaseSettings(BaseSettings):
    """DATABASE_URL alone, for `python app.py migrate`: a migration job needs no Slack token."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
    database_url: str = Settings.model_fields["database_url"].default

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        return check_database_url(v)


def load_database_url(**overrides: object) -> str:
    try:
        return DatabaseSettings(**overrides).database_url  # type: ignore[arg-type]
    except ValidationError as exc:
        raise settings_error(_problems(exc)[0]) from None


def ensure_private_dir(path: str) -> None:
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
