"""The garbage collector, set for a long-running server.

Start-up builds most of the process's heap once (modules, settings, compiled statements, the
ticket systems' catalogs) and keeps it: ~120,000 objects that CPython's cyclic collector would walk
again at every full collection. Under load those come often, as the objects of requests in flight
live long enough to be promoted; measured with 50 `/ticket`s in flight (bench `views_open`), the
collector took ~0.27 ms of each request's ~1.2 ms of CPU. `settle()`, once the bot has started,
moves what start-up built out of the collector's sight (`gc.freeze`: it is never freed, as it would
not have been anyway) and lets more young objects pile up between collections, so fewer of the
objects in flight are promoted to be walked again.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)  # CPython's default: (700, 10, 10)


def settle() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
