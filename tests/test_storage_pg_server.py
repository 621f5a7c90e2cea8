"""The throwaway PostgreSQL server the storage tests run against (tests/pg.py)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import pg


async def test_the_server_is_real_on_loopback_and_not_run_by_root(pg_server, pg_url):
    url = pg_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version()"))).scalar_one()
            listen = (await conn.execute(text("SHOW listen_addresses"))).scalar_one()
    finally:
        await engine.dispose()
    assert version.startswith("PostgreSQL")
    assert listen == "127.0.0.1"
    assert pg_url.startswith(f"postgresql://{pg.USER}:") and f"@127.0.0.1:{pg_server.port}/" in pg_url
    if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster belongs to an unprivileged user
        assert pg_server.data.stat().st_uid != 0


def test_without_postgresql_the_tests_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(pg, "bin_dir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL binaries not found"):
        pg.server_or_skip()


def test_without_postgresql_the_tests_fail_under_ci(monkeypatch):
    monkeypatch.setattr(pg, "bin_dir", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true.*binaries not found"):
        pg.server_or_skip()
