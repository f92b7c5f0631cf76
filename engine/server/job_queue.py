"""The job queue: one worker thread per device, cancel, and the bookkeeping that lets a
client reattach to a job by id.

Workers never touch the ROUTER socket (ZeroMQ sockets belong to one thread): each
worker pushes finished events over an inproc socket to the server's control loop, which
owns the client identity of every job and forwards them. What a worker does with a job
is `job_runner`'s.
"""

from __future__ import annotations

import queue
import threading
import time

import zmq

from longanim.engine.server.job import Job
from longanim.engine.server.job_runner import JobRunner
from longanim.engine.server.result_cache import ResultCache
from longanim.protocol import messages as M

EVENTS_ENDPOINT = "inproc://longanim-events"
KEEP_FINISHED_JOBS = 1000
PAUSED_CHECK_S = 0.2  # how late past its stall timeout a paused job may fail


class JobManager:
    """Owns all jobs; `submit`/`cancel`/`get` run on the control loop, `_work` on workers."""

    def __init__(self, ctx: zmq.Context, devices: list[str], cache: ResultCache, roots, session: str,
                 input_timeout_s: float = 30.0):
        self.ctx = ctx
        self.input_timeout_s = input_timeout_s
        self.devices = devices or ["cpu"]
        self.cache = cache
        self.roots = roots
        self.session = session
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for device in self.devices:
            t = threading.Thread(target=self._work, args=(device,), name=f"worker-{device}", daemon=True)
            t.start()
            self._threads.append(t)
        # Paused jobs are on no worker, and a worker busy with another job never looks at
        # them: their stall timeout is kept by a thread of its own.
        t = threading.Thread(target=self._watch_paused, name="paused-jobs", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancel everything and wait for the workers; False if one is still busy
        (a backend step that does not check its cancel flag)."""
        self._stop.set()
        for job in list(self.jobs.values()):
            job.cancel.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- control loop side ------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._lock:
            self.jobs[job.id] = job
            self._forget_old()
        self._queue.put(job)

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise M.ProtocolError("not_found", f"no job {job_id[:80]!r} on this engine")
        return job

    def list(self) -> list[Job]:
        return list(self.jobs.values())

    def queue_position(self) -> int:
        return self._queue.qsize()

    def append(self, job: Job, frames: list, more: bool) -> None:
        """More inline frames; a job that gave up the device for want of them is queued again."""
        with job.lock:
            job.feed.append(frames, more)
            resume, job.paused = job.paused, False
        if resume:
            self._queue.put(job)

    # -- either side ------------------------------------------------------------------

    def has_waiting(self) -> bool:
        return not self._queue.empty()

    def requeue(self, job: Job) -> None:
        self._queue.put(job)

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.final]
        for job in sorted(finished, key=lambda j: j.finished or 0)[: max(0, len(finished) - KEEP_FINISHED_JOBS)]:
            del self.jobs[job.id]

    # -- worker side ------------------------------------------------------------------

    def _expire_paused(self, runner: JobRunner) -> None:
        """A paused job whose client sent nothing for the input timeout fails, as a running one would."""
        now = time.monotonic()
        for job in self.list():
            if not job.paused or job.feed is None or now - job.feed.last_arrival <= self.input_timeout_s:
                continue
            with job.lock:
                if not job.paused:
                    continue
                job.paused, job.state = False, "failed"
                job.error = {"code": "input_timeout", "message": f"no more frames arrived for "
                             f"{self.input_timeout_s:.0f} s although the input was not closed (more: false)"}
            runner.finish(job)

    def _watch_paused(self) -> None:
        push = self._events_socket()
        runner = JobRunner(self, "none (waiting for input)", push)
        try:
            while not self._stop.wait(PAUSED_CHECK_S):
                self._expire_paused(runner)
        finally:
            push.close()

    def _events_socket(self) -> zmq.Socket:
        push = self.ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(EVENTS_ENDPOINT)
        return push

    def _work(self, device: str) -> None:
        push = self._events_socket()
        runner = JobRunner(self, device, push)
        try:
            while not self._stop.is_set():
                try:
                    job = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                runner.run(job)
        finally:
            push.close()
