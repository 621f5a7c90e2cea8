"""Benchmark: how fast the bot acknowledges Slack and turns submissions into tickets, against the
framework floor (a Bolt `AsyncApp` on the same aiohttp stack whose listeners only acknowledge).

    make bench                      # or: .venv/bin/python -m bench
    .venv/bin/python -m bench --quick --out /tmp/quick.md

Everything runs on loopback, each server in its own process (see `bench.runner`); results go to
docs/benchmarks.md. Benchmarks are not tests: nothing here asserts on timings.
"""
