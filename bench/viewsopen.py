"""Phase "views_open" (issue 19): what a Slack user feels, against the views.open floor.

For `/ticket` and for the message shortcut, at each of ``--vo-concurrency`` (10, 50, 100), closed
loop: the ack latency and the request → `views.open` latency (send time at the load generator to
the `views.open` carrying the request's `trigger_id` reaching the fake Slack) of

* the bot with its **default settings** (LOG_LEVEL=INFO, SUGGEST_SIMILAR on, …; only the addresses
  and credentials are set, plus any ``--bot-env``), a fresh process on its own SQLite journal, and
* the views.open floor: ``python -m bench.floor --views-open``, a bare Bolt `AsyncApp` on the same
  HTTP stack whose two listeners ack, then `views.open` a fixed modal: the very form the bot opens
  for that request (captured from the bot once, before the rounds), so that the fake Slack, which
  shares the machine, does the same work for the floor's `views.open` as for the bot's,

both against the same fake Slack Web API, in alternating rounds (bot, floor, bot, floor, …;
``--vo-rounds`` rounds of ``--vo-requests`` requests per server, each after an unrecorded warm-up of
max(20, concurrency) requests on the same connections). A round ends when every `views.open` has
arrived and the server is idle (its background work, such as the similar-ticket look-up, done), so
no round pays for the previous one. The percentiles pool every round of a server; the ratios are
bot ÷ floor of the pooled percentiles, with the range of the per-round ratios beside them.

The Serval sandbox holds open tickets with similar titles for both requesters (the person using
the command, the author of the message the shortcut is used on), so every form also gets its
similar-ticket look-up and `views.update`: the most work a form leads to.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from . import load, slackreq
from .stats import summary

if TYPE_CHECKING:
    from .procs import Proc
    from .runner import Harness

KINDS = ("command", "shortcut")
TARGETS = (  # (kind, measure, concurrency): bot p99 ≤ RATIO × the floor's
    ("command", "ack", 50),
    ("command", "views_open", 100),
    ("shortcut", "views_open", 50),
)
RATIO = 1.3
SIMILAR = ("Printer on floor 3 prints blank pages", "Printer on floor 2 is jammed", "Floor 3 printer offline")
REQUESTERS = ("usr-alice", "usr-bob")  # U111 (the person), U222 (the shortcut's message author)


async def seed_serval(h: "Harness") -> None:
    """Open tickets resembling the bench's titles, for both requesters."""
    from .runner import SERVAL_TOKEN

    assert h.http is not None and h.serval is not None
    for requester in REQUESTERS:
        for name in SIMILAR:
            async with h.http.post(h.serval.url + "/v2/tickets", headers={"Authorization": f"Bearer {SERVAL_TOKEN}"},
                                   json={"teamId": "team-it", "name": name, "requesterUserId": requester}) as r:
                if r.status != 200:
                    raise RuntimeError(f"seeding the Serval sandbox failed: {r.status} {await r.text()}")


async def one_round(h: "Harness", proc: "Proc", kind: str, c: int, n: int) -> dict[str, Any]:
    """n requests of `kind` at concurrency c to `proc` (after a warm-up), until every views.open
    has arrived and the server is idle."""
    await h._post(h._root(h.slack) + "/_bench/reset")  # Slack's records only: Serval keeps its tickets
    w = h.cfg.n_warmup(c)
    tag, wtag = h.tag("v" + kind[0]), h.tag("vw")
    warm = [h.signer.sign(slackreq.build(kind, wtag, i)) for i in range(w)]
    reqs = [h.signer.sign(slackreq.build(kind, tag, i)) for i in range(n)]
    marks: dict[str, float] = {}

    def mark() -> None:
        marks["other"], marks["cpu"], marks["t"] = h.harness_cpu()["other"], proc.cpu(), time.monotonic()

    cpu0, slack0 = proc.cpu(), h.slack.cpu()
    samples = await load.closed_loop(proc.url + "/slack/events", reqs, c, warm, on_measure=mark)
    other_end, cpu_end, t_end = h.harness_cpu()["other"], proc.cpu(), time.monotonic()
    drained = await h.wait_count(h.slack, "views.open", n + w, timeout=30 + (n + w) / 25)
    await h.wait_idle(proc)
    cpu = proc.cpu() - cpu0  # warm-up, requests and the work they led to, until idle
    slack_cpu = h.slack.cpu() - slack0
    calls = await h.calls(h.slack)
    ok = [s for s in samples if s.status == 200]
    wall = t_end - marks["t"]
    opened = h.views_open_times(tag, samples, calls)
    by_trigger = {slackreq.trigger_id(tag, i): s for i, s in enumerate(samples)}
    return {
        "requests": len(samples), "errors": len(samples) - len(ok) + opened["errors"], "drained": drained,
        "ack": [s.latency for s in ok],
        "views_open": [arrival - by_trigger[key].sent for method, arrival, _d, status, key, _t in calls
                       if method == "views.open" and key in by_trigger and status == 200],
        "views_update": sum(1 for call in calls if call[0] == "views.update"),
        "views_update_in_round": sum(1 for call in calls if call[0] == "views.update" and call[1] <= t_end),
        "cpu_ms_per_request": cpu / (n + w) * 1000,
        "cpu_ms_per_request_in_round": (cpu_end - marks["cpu"]) / max(1, len(samples)) * 1000,  # until the last ack
        "fake_slack_cpu_ms_per_request": slack_cpu / (n + w) * 1000,
        "req_per_s": len(samples) / wall if wall > 0 else 0.0,
        "other_cpu_util": (other_end - marks["other"]) / wall if wall > 0 else 0.0,  # not ours: a contended round
    }


def _p99(values: list[float]) -> float:
    return summary(values)["p99"]


def cell(kind: str, c: int, rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The pooled numbers of one kind and level, for both servers, and their ratios."""
    out: dict[str, Any] = {"kind": kind, "concurrency": c, "rounds": len(rounds["bot"])}
    for target, runs in rounds.items():
        out[target] = {
            "requests": sum(r["requests"] for r in runs), "errors": sum(r["errors"] for r in runs),
            "drained": all(r["drained"] for r in runs),
            "ack_ms": summary(x for r in runs for x in r["ack"]),
            "views_open_ms": summary(x for r in runs for x in r["views_open"]),
            "views_open_matched": sum(len(r["views_open"]) for r in runs),
            "views_update": sum(r["views_update"] for r in runs),
            "views_update_in_round": sum(r["views_update_in_round"] for r in runs),
            "cpu_ms_per_request": sum(r["cpu_ms_per_request"] for r in runs) / len(runs),
            "cpu_ms_per_request_in_round": sum(r["cpu_ms_per_request_in_round"] for r in runs) / len(runs),
            "req_per_s": sum(r["req_per_s"] for r in runs) / len(runs),
            "other_cpu_util": max(r["other_cpu_util"] for r in runs),
            "round_p99_ms": {m: [_p99(r[m]) for r in runs] for m in ("ack", "views_open")},
            "fake_slack_cpu_ms_per_request": sum(r["fake_slack_cpu_ms_per_request"] for r in runs) / len(runs),
        }
    for m, key in (("ack", "ack_ms"), ("views_open", "views_open_ms")):
        b, f = out["bot"][key], out["floor"][key]
        out[f"{m}_ratio"] = {p: (b[p] / f[p] if f[p] else float("nan")) for p in ("p50", "p99")}
        per_round = [x / y for x, y in zip(out["bot"]["round_p99_ms"][m], out["floor"]["round_p99_ms"][m]) if y]
        out[f"{m}_round_ratios"] = per_round
    return out


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    cells = {(x["kind"], x["concurrency"]): x for x in res.get("cells") or []}
    rows = []
    for kind, measure, c in TARGETS:
        x = cells.get((kind, c))
        row: dict[str, Any] = {"kind": kind, "measure": measure, "concurrency": c, "limit": RATIO}
        if x:
            row.update(ratio=x[f"{measure}_ratio"]["p99"], bot_ms=x["bot"][f"{measure}_ms"]["p99"],
                       floor_ms=x["floor"][f"{measure}_ms"]["p99"], rounds=x[f"{measure}_round_ratios"])
            row["met"] = row["ratio"] <= RATIO
        rows.append(row)
    return rows


async def bot_forms(h: "Harness", bot: "Proc") -> dict[str, dict[str, Any]]:
    """The forms the bot opens for `/ticket` and for the shortcut, as it sent them to views.open."""
    await h._post(h._root(h.slack) + "/_bench/reset")
    forms: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        tag = h.tag("f")
        await load.closed_loop(bot.url + "/slack/events", [h.signer.sign(slackreq.build(kind, tag, 0))], 1)
        if not await h.wait_count(h.slack, "views.open", len(forms) + 1, timeout=30):
            raise RuntimeError(f"the bot opened no form for {kind}; see its log")
        state = await h._get(h._root(h.slack) + "/_sandbox/state")
        view = next(c["args"]["view"] for c in state["calls"]
                    if c["method"] == "views.open" and c["args"].get("trigger_id") == slackreq.trigger_id(tag, 0))
        forms[kind] = json.loads(view) if isinstance(view, str) else view
    await h.wait_idle(bot)
    return forms


async def run(h: "Harness") -> dict[str, Any]:
    cfg = h.cfg
    bot = h.start_bot("bot-default", current=False, default_settings=True)
    floor = None
    try:
        await h.prime([bot])
        # The floor opens the very forms the bot opens, so that the fake Slack (which shares the
        # machine) does the same work for both: the difference is the bot's own.
        forms = h.workdir / "bot-forms.json"
        forms.write_text(json.dumps(await bot_forms(h, bot)))
        floor = h.start_floor(views_open=True, modal_file=forms)
        await h.prime([floor])
        await seed_serval(h)
        profs = [h.start_profiler(bot, "bot-views-open"), h.start_profiler(floor, "floor-views-open")]  # --profile
        cells = []
        for kind in [k for k in KINDS if k in cfg.kinds]:  # --kinds narrows it too
            for c in cfg.vo_levels:
                rounds: dict[str, list[dict[str, Any]]] = {"bot": [], "floor": []}
                for _ in range(cfg.vo_rounds):
                    for target, proc in (("bot", bot), ("floor", floor)):
                        rounds[target].append(await one_round(h, proc, kind, c, cfg.vo_requests))
                x = cell(kind, c, rounds)
                cells.append(x)
                h.log(f"views_open {kind:9} c={c:<4} ack p99 bot {x['bot']['ack_ms']['p99']:6.1f} floor"
                      f" {x['floor']['ack_ms']['p99']:6.1f} ms ({x['ack_ratio']['p99']:.2f}×);"
                      f" → views.open p99 bot {x['bot']['views_open_ms']['p99']:6.1f} floor"
                      f" {x['floor']['views_open_ms']['p99']:6.1f} ms ({x['views_open_ratio']['p99']:.2f}×);"
                      f" CPU ms/request {x['bot']['cpu_ms_per_request_in_round']:.2f} / {x['floor']['cpu_ms_per_request_in_round']:.2f}"
                      f" in the round, {x['bot']['cpu_ms_per_request']:.2f} / {x['floor']['cpu_ms_per_request']:.2f} in all"
                      f" (fake Slack {x['bot']['fake_slack_cpu_ms_per_request']:.2f} / {x['floor']['fake_slack_cpu_ms_per_request']:.2f})"
                      f"; views.update {x['bot']['views_update']} ({x['bot']['views_update_in_round']} before the round's last ack); errors {x['bot']['errors']}/{x['floor']['errors']}")
        for prof in profs:
            h.stop_profiler(prof)
        res: dict[str, Any] = {"levels": cfg.vo_levels, "rounds": cfg.vo_rounds, "requests": cfg.vo_requests,
                               "bot_env": dict(cfg.bot_env), "cells": cells}
        res["targets"] = targets(res)
        return res
    finally:
        bot.stop()
        if floor is not None:
            floor.stop()
            if h.floor2 is floor:
                h.floor2 = None
