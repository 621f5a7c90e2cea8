"""Benchmark: how fast the bot acknowledges Slack and turns submissions into tickets, against the
framework floor (a Bolt `AsyncApp` on the same aiohttp stack whose listeners only acknowledge).

    make bench                      # or: .venv/bin/python -m bench
    .venv/bin/python -m bench --quick --out /tmp/quick.md
    .venv/bin/python -m bench --phases backlog,postgres     # some phases only

Phases (all by default): ack, floor2 (a second floor that also opens a modal), views_open (the bot
on its default settings against the views.open floor, `/ticket` and the shortcut, alternating
rounds), tickets, durability (SQLite synchronous=FULL vs NORMAL), postgres (PostgreSQL and two
replicas beside SQLite), backlog (a bot started on 20,000 unfinished submissions).

Everything runs on loopback, each server in its own process (see `bench.runner`). Only a full run
(every phase, default sizes and settings) writes docs/benchmarks.md; a quick or partial run asked
to write it writes bench/out/quick.md or bench/out/partial.md instead, and says so. Benchmarks are
not tests: nothing here asserts on timings.
"""
