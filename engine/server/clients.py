"""When the engine last heard from each client, so what it keeps per client stays bounded.

Client ids and socket identities are the clients' to choose, and a client may vanish
without a word (a crashed host, a farm task killed). Whatever the engine notes per
client (its stalled mark, the replies kept for its retries) is therefore released once
the client has been silent for `forget_after_s`: far longer than any retry or heartbeat
gap of a live client, whose reference implementation pings every `heartbeat_s`.
Jobs are not tied to this: a job id is the capability, so a forgotten client's jobs
run on and it may reattach to them later.
"""

from __future__ import annotations

import collections

FORGET_AFTER_STALLS = 20  # default bound: this many stall timeouts (10 min at the default 30 s)
# Past this many, the longest silent is forgotten early, whatever the time: ids cost nothing to
# make (the fuzz benchmark's random client ids grew the table by 40 MiB in 5 min without it).
# As many as the replies kept for retries, which are capped alike.
NOTED = 4096


class SilentClients:
    """Last-heard times by socket identity and by client id (header.session), oldest first,
    so finding who has gone silent costs only the ones that have."""

    def __init__(self, forget_after_s: float, capacity: int = NOTED):
        self.forget_after_s = forget_after_s
        self.capacity = capacity
        self._identities: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._sessions: collections.OrderedDict[str, float] = collections.OrderedDict()

    def heard(self, now: float, identity: bytes, session: str | None = None) -> None:
        for table, key in ((self._identities, identity), (self._sessions, session)):
            if key is not None:
                table[key] = now
                table.move_to_end(key)

    def silent(self, now: float) -> tuple[list[bytes], list[str]]:
        """Removes and returns the identities and client ids not heard from within the bound,
        and the longest silent of those past the capacity."""
        gone: tuple[list, list] = ([], [])
        for table, out in zip((self._identities, self._sessions), gone):
            while table:
                key, last = next(iter(table.items()))
                if now - last <= self.forget_after_s and len(table) <= self.capacity:
                    break
                table.popitem(last=False)
                out.append(key)
        return gone

    def counts(self) -> dict:
        return {"identities": len(self._identities), "sessions": len(self._sessions)}
