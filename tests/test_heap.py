"""The garbage collector's young generation is collected in quiet moments (bot/ops/heap.py)."""

from __future__ import annotations

import gc
import weakref

from bot import background
from bot.ops import heap
from tests.conftest import eventually


class Node:
    me: "Node"


async def test_cycles_left_by_requests_are_freed_once_nobody_waits(monkeypatch):
    """A collection is a pause for whoever waits: it waits for the last request to be answered,
    then frees what piled up, long before the young generation's threshold would have."""
    monkeypatch.setattr(heap, "QUIET_YOUNG", 500)
    gc.collect()
    gc.disable()  # only the quiet-moment collection may free the cycle
    background.on_quiet(heap._quiet_moment)
    try:
        with background.foreground():  # a request being answered
            node = Node()
            node.me = node
            gone = weakref.ref(node)
            del node
            for _ in range(1000):  # what a few requests leave behind
                other = Node()
                other.me = other
            del other
        with background.foreground():  # the next one arrives before the bot was ever quiet: nothing yet
            assert gone() is not None
        assert await eventually(lambda: gone() is None, timeout=5)
    finally:
        background._on_quiet.remove(heap._quiet_moment)
        gc.enable()
