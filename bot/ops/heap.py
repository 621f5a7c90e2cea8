"""The garbage collector, set for a long-running server.

Start-up builds most of the process's heap once (modules, settings, compiled statements, the
ticket systems' catalogs) and keeps it: ~120,000 objects that CPython's cyclic collector would walk
again at every full collection. Under load those come often, as the objects of requests in flight
live long enough to be promoted; measured with 50 `/ticket`s in flight (bench `views_open`), the
collector took ~0.27 ms of each request's ~1.2 ms of CPU. `settle()`, once the bot has started,
moves what start-up built out of the collector's sight (`gc.freeze`: it is never freed, as it would
not have been anyway) and lets more young objects pile up between collections, so fewer of the
objects in flight are promoted to be walked again.

Why 50,000 young objects and not CPython's 700 (or the 10,000 of before): the count that starts a
young collection is allocations minus frees, and the objects of requests in flight alone move it by
~10,000-16,000 (50 `/ticket`s: coroutines, tasks, Bolt's request and context, the form). A threshold
below that working set started a collection at every peak of it, and each walked ~16,000 objects that
were all alive (~6 ms of CPU to free ~20): measured in the bench's `views_open` phase at 50
concurrent with `gc.callbacks`, 15-60 young collections per 3,000 requests, 3.5-8 % of the bot's
CPU. Above it, a young collection comes only when real garbage (reference cycles) has piled up: none
in 3,000 requests, and at most that much garbage (a few MB) waits for one.

A young collection at that threshold is a pause for everyone waiting on the bot: 11-64 ms measured
under the bench's load, where it also frees 12,000-17,000 objects of reference cycles (httpx's
requests and responses among them). So once nobody waits on the bot and enough has piled up
(`QUIET_YOUNG`), the young generation is collected then, as work nobody waits for (`bot.background`:
it starts only in a quiet moment, or not at all): a burst of requests shorter than the threshold
then meets no collection at all. Under load without a quiet moment, the threshold collects as before.
"""

from __future__ import annotations

import asyncio
import gc

from .. import background

THRESHOLDS = (50_000, 10, 10)  # CPython's default: (700, 10, 10)
QUIET_YOUNG = 20_000  # young objects worth a collection in a quiet moment
_scheduled = False


def settle() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    background.on_quiet(_quiet_moment)


def _quiet_moment() -> None:
    global _scheduled
    if _scheduled or gc.get_count()[0] < QUIET_YOUNG:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not on an event loop: nothing to schedule on
        return
    _scheduled = True
    background.later(_collect_young, on_drop=_unscheduled)


def _unscheduled() -> None:
    global _scheduled
    _scheduled = False


async def _collect_young() -> None:
    _unscheduled()
    gc.collect(0)
