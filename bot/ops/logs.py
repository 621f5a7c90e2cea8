"""Log lines: text (the default) or one JSON object per line (`LOG_FORMAT=json`), both through the
redaction that keeps every secret out of them, and the context of the work a line is about.

Context: the submission id, Slack user and channel a line is about, kept in a context variable so
that every line logged while handling one request or one submission carries them, whichever module
logs it. asyncio copies context variables into each task it creates, so context set before a task
starts is the task's too.

    with log_context(user="U1", channel="C1"):   # around a piece of work
        ...
    set_log_context(submission_id=sub.id)         # for the rest of the current task

In JSON every line has `time`, `level`, `logger`, `message`, and `submission_id`, `user`, `channel`
where known (`traceback` when there is one).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import urllib.parse
from collections.abc import Iterator

from clients import secrets as run_time_secrets

CONTEXT_FIELDS = ("submission_id", "user", "channel")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})


def _clean(fields: dict[str, object]) -> dict[str, str]:
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    return {k: str(v) for k, v in fields.items() if v not in (None, "")}


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Within the block, every log line carries these fields (None or "" leaves one out); an
    outer context's other fields stay."""
    token = _context.set({**_context.get(), **_clean(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def set_log_context(**fields: object) -> None:
    """Add fields to the current context for the rest of the current task (each asyncio task has
    its own copy, so this never leaks into another request's lines)."""
    _context.set({**_context.get(), **_clean(fields)})


def current_log_context() -> dict[str, str]:
    return dict(_context.get())


# --- redaction ----------------------------------------------------------------------------------

URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")  # scheme://user:password@host
# Slack tokens of any kind by their shape: some arrive inside request bodies that libraries log
# before the bot could learn them (a workflow step's `bot_access_token` in a Socket Mode envelope).
SLACK_TOKEN = re.compile(r"\bx(?:ox[a-z]|wf[a-z]|app)-[0-9A-Za-z][0-9A-Za-z-]{5,}")
REDACTED = "[redacted]"
MIN_SECRET = 6  # shorter values would redact ordinary words


def secret_forms(value: str) -> set[str]:
    """A secret as it may appear in a log line: as is, and as a form or URL encodes it."""
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value, safe="")}


class RedactingFormatter(logging.Formatter):
    """Formats a record, then removes every secret from the whole line, traceback included:
    the configured ones, those clients learnt at run time (`clients.secrets`), and the password of
    any URL (`DATABASE_URL`)."""

    def __init__(self, fmt: str | None, secrets: list[str]) -> None:
        super().__init__(fmt)
        self.configured = {form for s in secrets if len(s) >= MIN_SECRET for form in secret_forms(s)}
        self._version: int | None = None
        self._pattern: re.Pattern[str] | None = None

    def pattern(self) -> re.Pattern[str] | None:
        version, learnt = run_time_secrets.known()
        if version != self._version:
            values = self.configured | {form for s in learnt if len(s) >= MIN_SECRET for form in secret_forms(s)}
            # longest first, so a secret containing another is removed whole
            ordered = sorted(values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._version = version
        return self._pattern

    def redact(self, text: str) -> str:
        pattern = self.pattern()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        text = SLACK_TOKEN.sub(REDACTED, text)
        return URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        return self.redact(super().formatException(ei))  # also what is cached on the record


class JsonFormatter(RedactingFormatter):
    """One JSON object per line. Each value is redacted before it is encoded (JSON escaping would
    otherwise hide a secret containing a quote or a backslash from the redaction)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(None, secrets)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        context = getattr(record, "log_context", None) or _context.get()
        for key in CONTEXT_FIELDS:
            if key in context:
                line[key] = self.redact(context[key])
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)  # redacted
        if record.exc_text:
            line["traceback"] = self.redact(record.exc_text)
        if record.stack_info:
            line["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False)


class ContextFilter(logging.Filter):
    """Stamps each record with the log context of the code that logged it (the formatter may run
    later, e.g. in a queue handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            record.log_context = _context.get()
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter(log_format: str, secrets: list[str]) -> RedactingFormatter:
    """The formatter for LOG_FORMAT (`text` or `json`)."""
    if log_format == "json":
        return JsonFormatter(secrets)
    return RedactingFormatter(TEXT_FORMAT, secrets)
