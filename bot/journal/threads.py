"""Threads this process knows to be taken: a submission was journaled for them here, or the
database said so. The message shortcut asks the database before its form opens only for these (to
show "already linked to ticket …" instead of a form, as always); for any other thread it opens the
form first and asks once nobody waits on the bot (`bot.background`), swapping the notice in when
another process (a replica, or this one before a restart) took the thread. A thread's look-up thus
never delays a form of a thread nobody took, which is nearly every one, nor anyone else's form.

The set is a hint, never the answer: a known thread is checked in the database before the form (a
submission that failed frees its thread again), and the database's unique keys decide in the end.
Bounded: the least recently noted threads are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

LIMIT = 20_000  # threads remembered (~2 MB)


class Threads:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()

    @staticmethod
    def key(channel_id: str, thread_ts: str) -> str:
        return f"{channel_id}:{thread_ts}"  # as the journal's thread_key

    def note(self, thread_key: str | None) -> None:
        """A thread with a submission or a ticket (`channel:ts`, the journal's thread_key)."""
        if not thread_key:
            return
        self._keys[thread_key] = None
        self._keys.move_to_end(thread_key)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def forget(self, thread_key: str) -> None:
        self._keys.pop(thread_key, None)

    def __contains__(self, thread_key: object) -> bool:
        return thread_key in self._keys
