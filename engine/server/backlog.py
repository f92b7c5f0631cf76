"""Results the engine could not deliver, kept for the client's catch-up.

A client that stops reading past the stall timeout (a Blender F12 render, a Nuke modal
dialog), or whose connection dropped, has its results dropped so it cannot hold a
device. A reattach with resend brings them back from the result cache; a job that is
not cached (`cache: false`, `serve --no-cache`) has only this backlog. It is bounded by
bytes for the whole engine: when full, results of jobs that have ended go first (their
client may never come back), and past that a new result is not kept. Every result not
kept is remembered by number, so the catch-up can name what is lost for good instead of
letting a job end "done" with frames silently missing.
"""

from __future__ import annotations

import collections
import threading

BACKLOG_BYTES = 512 << 20  # the engine's whole backlog, all jobs together


class ResultBacklog:
    def __init__(self, max_bytes: int = BACKLOG_BYTES):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._kept: dict[str, collections.OrderedDict[int, tuple[list, int]]] = {}
        self._lost: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def keep(self, job_id: str, number: int, frames: list, is_final) -> None:
        """A serialized result event that could not be sent. `is_final(job_id)` tells which
        jobs' results may be given up first to make room."""
        size = sum(len(f) for f in frames)
        with self._lock:
            if self.nbytes + size > self.max_bytes:
                self._evict(size, job_id, is_final)
            if self.nbytes + size > self.max_bytes:
                self._lost.setdefault(job_id, set()).add(number)
                return
            old = self._kept.setdefault(job_id, collections.OrderedDict()).pop(number, None)
            if old is not None:
                self.nbytes -= old[1]
            self._kept[job_id][number] = (frames, size)
            self.nbytes += size

    def take(self, job_id: str) -> tuple[list[tuple[int, list]], list[int]]:
        """The job's kept results (handed over: they are kept again if they fail to go out
        once more) and the numbers of those lost for good."""
        with self._lock:
            kept = self._release(job_id)
            lost = sorted(self._lost.get(job_id, ()))
            return [(n, frames) for n, (frames, _) in kept.items()], lost

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._release(job_id)
            self._lost.pop(job_id, None)

    def _release(self, job_id: str) -> dict:
        kept = self._kept.pop(job_id, {})
        self.nbytes -= sum(size for _, size in kept.values())
        return kept

    def _evict(self, size: int, for_job: str, is_final) -> None:
        for job_id in list(self._kept):
            if self.nbytes + size <= self.max_bytes:
                return
            if job_id == for_job or not is_final(job_id):
                continue
            kept = self._kept[job_id]
            while kept and self.nbytes + size > self.max_bytes:
                number, (_, old) = kept.popitem(last=False)
                self.nbytes -= old
                self._lost.setdefault(job_id, set()).add(number)
            if not kept:
                del self._kept[job_id]

    def forget_all_but(self, job_ids) -> None:
        """Drop what belongs to jobs no longer listed (forgotten after they ended)."""
        with self._lock:
            gone = [j for j in set(self._kept) | set(self._lost) if j not in job_ids]
        for job_id in gone:
            self.forget(job_id)
