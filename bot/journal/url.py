"""DATABASE_URL → SQLAlchemy's URL with its async driver. Imports nothing of the bot: the settings
check a URL with it before anything is opened."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def database_url(url: str | URL) -> URL:
    """SQLAlchemy's URL, with its async driver, for a DATABASE_URL: `sqlite:///path` (aiosqlite),
    `postgresql://user:pass@host:5432/db` as written (asyncpg; `postgres://` too). A bare path is
    taken for a SQLite file."""
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    if "://" not in url:
        return URL.create("sqlite+aiosqlite", database=url or None)
    try:
        parsed = make_url(url)
    except Exception:
        raise ValueError("DATABASE_URL is not a database URL") from None
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        query = dict(parsed.query)
        if "sslmode" in query and "ssl" not in query:  # libpq's spelling; asyncpg calls it ssl
            query["ssl"] = query.pop("sslmode")
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    raise ValueError("DATABASE_URL must be sqlite:///path/to/file.db or postgresql://user:password@host:5432/db")


def sqlite_file(url: URL) -> str | None:
    """The SQLite database file of this URL; None for PostgreSQL and for an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
