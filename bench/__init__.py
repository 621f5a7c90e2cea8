"""Benchmark: how fast the bot acknowledges Slack and turns submissions into tickets, against the
framework floor (a Bolt `AsyncApp` on the same aiohttp stack whose listeners only acknowledge).

    make bench                      # or: .venv/bin/python -m bench
    .venv/bin/python -m bench --quick --out /tmp/quick.md
    .venv/bin/python -m bench --phases backlog,postgres     # some phases only

Phases (all by default): ack, floor2 (a second floor that also opens a modal), tickets, durability
(SQLite synchronous=FULL vs NORMAL), postgres (PostgreSQL and two replicas beside SQLite), backlog
(a bot started on 20,000 unfinished submissions).

Everything runs on loopback, each server in its own process (see `bench.runner`); results go to
docs/benchmarks.md. Benchmarks are not tests: nothing here asserts on timings.
"""
