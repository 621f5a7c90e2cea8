"""Settings from environment variables (and a `.env` file). A missing or malformed setting stops
start-up with one message naming it; secrets are `SecretStr` so they never print."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Slack
    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
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
    socialboards_base_url: str = "https://api.socialboards.com"
    socialboards_token_url: str = ""  # default: {SOCIALBOARDS_BASE_URL}/token
    socialboards_client_id: str = ""
    socialboards_refresh_token: SecretStr | None = None
    socialboards_community: str = ""
    socialboards_timeout: float = Field(default=10.0, gt=0)

    @field_validator("rezolve_base_url", "rezolve_token_url", "socialboards_base_url", "socialboards_token_url")
    @classmethod
    def _backend_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
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
    queued_after_seconds: float = Field(default=2.5, ge=0)
    retry_base_seconds: float = Field(default=0.5, gt=0)  # first wait between two attempts
    retry_max_seconds: float = Field(default=300.0, gt=0)  # longest wait between two attempts
    give_up_after_seconds: float = Field(default=86400.0, gt=0)  # transient failures, then report
    max_tickets_in_flight: int = Field(default=64, ge=1)  # submissions in their steps at once
    lease_seconds: float = Field(default=30.0, ge=1)  # a dead process's submissions are taken over after this
    journal_retention_days: float = Field(default=90.0, ge=0)  # finished submissions and event ids, then deleted

    # People and channels
    unmatched_requester: Literal["describe", "create", "refuse"] = "describe"
    on_behalf_of: Literal["anyone", "admins", "nobody"] = "anyone"
    ticket_admins: str = ""  # Slack user ids (comma-separated) who may use /ticket config
    routing_file: str = "config/routing.yml"
    people_refresh_seconds: float = Field(default=3600.0, gt=0)

    # Storage and serving
    database_url: str = "sqlite:///./data/tickets.db"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith("xoxb-"):
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

    @field_validator("slack_api_url", "serval_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
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
        from .storage import database_url  # SQLite → aiosqlite, PostgreSQL → asyncpg

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

    @model_validator(mode="after")
    def _backend(self) -> "Settings":
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
                raise ValueError(f"{', '.join(missing)} must be set for the Serval back end")
            has_bearer = self.serval_bearer_token and self.serval_bearer_token.get_secret_value()
            has_client = self.serval_client_id and self.serval_client_secret
            if not has_bearer and not has_client:
                raise ValueError(
                    "set SERVAL_BEARER_TOKEN, or SERVAL_CLIENT_ID and SERVAL_CLIENT_SECRET"
                )
        elif self.ticket_backend in ("rezolve", "socialboards"):
            if missing := self._missing_for(self.ticket_backend):
                label = {"rezolve": "Rezolve.ai", "socialboards": "Socialboards"}[self.ticket_backend]
                raise ValueError(f"{', '.join(missing)} must be set for the {label} back end")
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


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line per problem, naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper()
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "is not set"
            lines.append(f"{name} {msg}" if name else msg)
        raise SettingsError("Configuration error: " + "; ".join(lines)) from None


def ensure_private_dir(path: str) -> None:
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
