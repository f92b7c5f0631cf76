"""What a worker does with a job: build (or reuse) the backend, feed it frames, send
results, and keep the result cache.

Every cache key covers the backend's identity (its code and weights), so an upgrade or
replaced weights never serve old results. How far a key reaches back is the backend's
kind (`inline_keys`): its own frame, every frame up to it, or the whole input.
"""

from __future__ import annotations

import collections
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from longanim.engine.backends.base import Backend, BackendError, Cancelled, ColoredFrame, Keyframe
from longanim.engine.errors import LonganimError
from longanim.engine.server.inline_keys import InlineKeys
from longanim.engine.server.job import FRAME_WAIT_S, InputPaused, Job, JobFailed
from longanim.engine.server.result_cache import array_digest, digest
from longanim.protocol import messages as M
from longanim.protocol.wire import make_message, serialize

if TYPE_CHECKING:
    from longanim.engine.server.job_queue import JobManager

log = logging.getLogger("longanim.engine")
START_FIELDS = ("mode", "from_frame", "warm_up_frames", "checkpoint_frame", "message", "missing_frames")


class JobRunner:
    """Runs jobs on one device, keeping backends warm between jobs."""

    def __init__(self, manager: JobManager, device: str, push: zmq.Socket):
        self.manager = manager
        self.device = device
        self.push = push
        self.backends: collections.OrderedDict = collections.OrderedDict()

    # -- events -----------------------------------------------------------------------

    def emit(self, job: Job, msg_type: str, content: dict, buffers: list | None = None) -> None:
        if msg_type == M.RESULT:
            while not job.credits.acquire(timeout=FRAME_WAIT_S):
                if job.cancel.is_set():
                    raise Cancelled("cancelled while waiting for the client to take results")
        content = {**content, "event_seq": job.next_event_seq()}
        msg = make_message(msg_type, self.manager.session, content, parent=job.submit_header, buffers=buffers)
        kind = b"r" if msg_type == M.RESULT else b"e"
        number = str(content["number"] if msg_type == M.RESULT else -1).encode()  # the backlog's key
        self.push.send_multipart([job.id.encode(), kind, number, *serialize(msg)], copy=False)

    def progress(self, job: Job, **extra) -> None:
        content = {
            "job_id": job.id,
            "state": job.state,
            "frames_done": job.frames_done,
            "frames_total": job.frames_total,
            "frames_cached": job.frames_cached,
            "eta_s": job.eta_s,
        }
        if job.frames_total:
            content["fraction"] = job.frames_done / job.frames_total
        content.update(extra)
        self.emit(job, M.PROGRESS, content)

    # -- running ----------------------------------------------------------------------

    def run(self, job: Job) -> None:
        with job.lock:
            if job.state != "queued":  # cancelled while it waited
                return
            job.state, job.device = "running", self.device
            job.started = job.started or time.time()
        try:
            self.progress(job)
            if job.content["input"]["kind"] == "inline":
                self._run_inline(job)
            else:
                self._run_path(job)
            job.state = "done"
        except InputPaused as paused:
            self._pause(job, paused.since)
            return
        except Cancelled:
            job.state = "cancelled"
        except (JobFailed, M.ProtocolError) as exc:
            job.state, job.error = "failed", {"code": exc.code, "message": str(exc)}
        except BackendError as exc:
            job.state, job.error = "failed", {"code": "backend_error", "message": str(exc)}
        except LonganimError as exc:
            job.state, job.error = "failed", {"code": "input_error", "message": str(exc)}
        except OSError as exc:  # the files: a path too long, a disk full, permissions
            job.state, job.error = "failed", {"code": "input_error", "message": f"{exc.strerror or exc}: "
                                              f"{exc.filename or ''}"[:500]}
        except Exception as exc:  # a bug or a backend crash: report it, keep serving
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            job.state = "failed"
            job.error = {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}
        self.finish(job)

    def _pause(self, job: Job, since: float) -> None:
        """Off the device until more frames come (`JobManager.append` queues it again)."""
        with job.lock:
            job.state, job.device, job.eta_s = "queued", None, None
            requeue = job.feed is None or job.feed.last_arrival >= since or job.cancel.is_set()
            job.paused = not requeue  # else frames (or a cancel) came while we gave up: go on at once
            # Said while the lock is held: the paused-job watcher may fail the job the moment
            # it is released, and its job_done must not be followed by this "queued".
            self.progress(job, waiting_for_input=True)
        log.info("job %s waits for input; the device goes to the next job", job.id)
        if requeue:
            self.manager.requeue(job)

    def finish(self, job: Job) -> None:
        """A job's end: its final state, inputs released, `job_done` sent."""
        if job.cancel.is_set() and job.state == "done" and job.frames_total != job.frames_done:
            job.state = "cancelled"
        job.finished = time.time()
        job.eta_s = 0.0 if job.state == "done" else None
        job.release_inputs()
        log.info("job %s %s: %d frames (%d cached) in %.2f s on %s%s", job.id, job.state, job.frames_done,
                 job.frames_cached, job.finished - job.started, self.device,
                 f"; {job.error['message']}" if job.error else "")
        try:
            self.emit(job, M.DONE, {**job.summary(), "elapsed_s": job.finished - job.started})
        except Exception:
            log.error("could not report the end of job %s:\n%s", job.id, traceback.format_exc())

    def backend(self, name: str, options: dict):
        from longanim.engine.backends import create_backend

        key = digest(name, options, self.device)
        if key in self.backends:
            self.backends.move_to_end(key)
            return self.backends[key]
        if "device" in options:  # refused at submit: one worker per device holds only if the engine assigns them
            raise JobFailed("invalid_content", "options.device: the engine assigns devices; leave it out")
        try:
            # Backends that place tensors take the worker's device, "cpu" included (a CPU
            # worker on a GPU box must not let a model pick the GPU); paint takes none.
            try:
                backend = create_backend(name, device=self.device, **options)
            except BackendError:
                backend = create_backend(name, **options)
        except (ValueError, TypeError) as exc:  # a backend refusing an option value
            raise JobFailed("backend_error", f"backend {name!r}: {exc}") from None
        self.backends[key] = backend
        while len(self.backends) > 2:  # models are big; keep the two most recent warm
            self.backends.popitem(last=False)
        return backend

    def _run_inline(self, job: Job) -> None:
        from longanim.engine.backends.passthrough import PassthroughBackend

        content = job.content
        buffers = content["_buffers"]
        backend = self.backend(job.backend, content.get("options", {}))
        keyframes = [
            Keyframe(
                kf["number"],
                M.array_from(kf["color"], buffers),
                M.array_from(kf["lineart"], buffers) if kf.get("lineart") else None,
                M.array_from(kf["alpha"], buffers) if kf.get("alpha") else None,
            )
            for kf in content.get("keyframes", [])
        ]
        strict = not isinstance(backend, PassthroughBackend)
        for kf in keyframes:
            _check_rgb8(kf.color, f"keyframe {kf.number} color", strict)
            _check_alpha(kf.alpha, kf.color, f"keyframe {kf.number} alpha")
        use_cache = self.manager.cache.enabled and content.get("cache", True)
        feed = job.feed
        cancelled = job.cancel.is_set
        keying = None
        keys: dict[int, str] = {}
        if use_cache:
            context = digest(
                "inline-v2", job.backend, content.get("options", {}), backend.cache_identity(),
                [[kf.number, array_digest(kf.color), array_digest(kf.lineart) if kf.lineart is not None else None,
                  array_digest(kf.alpha) if kf.alpha is not None else None]
                 for kf in keyframes],
            )
            keying = InlineKeys(context, independent=bool(getattr(backend, "frame_independent", False)),
                                causal=bool(getattr(backend, "causal", False)))
            if not keying.per_frame and feed.complete:
                keys = InlineKeys.whole_keys_of(context, feed.snapshot())
        want_conf = content.get("confidence", False)
        emitted = job.sent  # kept across pauses: a job that starts again sends nothing twice
        t_work = [0.0, 0]  # seconds and frames actually computed, for the ETA

        def send(number: int, rgb, conf, info: dict, cached: bool) -> None:
            bufs: list = []
            result = {"job_id": job.id, "number": number, "rgb": M.array_desc(rgb, bufs), "cached": cached,
                      "info": _plain(info)}
            if want_conf and conf is not None:
                result["confidence"] = M.array_desc(conf, bufs)
            self.emit(job, M.RESULT, result, bufs)
            emitted.add(number)
            job.frames_done += 1
            job.frames_cached += cached
            if job.frames_total and t_work[1]:
                left = job.frames_total - job.frames_done
                job.eta_s = left * t_work[0] / t_work[1]
            self.progress(job, number=number)

        def serve_cached(number: int, key: str | None) -> bool:
            if number in emitted:
                return True
            hit = self.manager.cache.get_arrays(key) if key is not None else None
            if hit is None or "rgb" not in hit[0]:
                return False
            arrays, info = hit
            job.done_keys[number] = key
            send(number, arrays["rgb"], arrays.get("confidence"), info, True)
            return True

        # A whole-input backend with its input complete: serve what the cache has, run only if
        # something is missing.
        if keys:
            served = [serve_cached(n, k) for n, k in keys.items()]
            if all(served):
                return

        def backend_frames():
            held: list = []  # causal: frames served from the cache, given to the backend only if it must run
            running = False
            for number, frame in feed.iterate(cancelled, self.manager.input_timeout_s, self.manager.has_waiting):
                _check_rgb8(frame, f"frame {number}", strict)
                key = keying.add(number, frame) if keying is not None else None
                if key is not None:
                    keys[number] = key
                if keying is not None and keying.kind == "frame" and serve_cached(number, key):
                    continue
                if keying is not None and keying.kind == "prefix" and serve_cached(number, key) and not running:
                    held.append((number, frame))
                    continue
                running = True  # a cached result was sent above; the backend still needs the frame
                yield from held  # the memory needs what came before; their results are already sent
                held.clear()
                yield number, frame
            if keying is not None and not keying.per_frame and not keys:
                keys.update(keying.whole_keys())
                if all(self.manager.cache.get_arrays(k) is not None for k in keys.values()):
                    raise _AllCached

        started = time.perf_counter()
        try:
            for colored in backend.colorize(backend_frames(), keyframes, progress=self._backend_progress(job),
                                            cancelled=cancelled):
                number = colored.number
                t_work[0] += time.perf_counter() - started
                t_work[1] += 1
                if number in emitted:
                    started = time.perf_counter()
                    continue
                rgb = np.asarray(colored.rgb)
                if rgb.dtype.name not in M.DTYPES:  # e.g. float64 from a backend: the wire has float32
                    rgb = rgb.astype(np.float32)
                conf = None if colored.confidence is None else np.asarray(colored.confidence, dtype=np.float32)
                key = keys.get(number)
                if key is not None:
                    self.manager.cache.put_arrays(key, {"rgb": rgb, "confidence": conf}, _plain(colored.info))
                    job.done_keys[number] = key
                send(number, rgb, conf, colored.info, False)
                if cancelled():
                    raise Cancelled(f"cancelled after frame {number}")
                started = time.perf_counter()
        except _AllCached:  # the whole streamed input was colorized before: nothing to compute
            for number, key in keys.items():
                if number not in emitted and not serve_cached(number, key):
                    raise JobFailed("internal", f"frame {number}'s cached result vanished; submit again") from None

    def _backend_progress(self, job: Job):
        last = [0.0]

        def progress(info: dict) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1:  # at most 10 events a second per job
                last[0] = now
                self.progress(job, stage=_plain(info))

        return progress

    def _run_path(self, job: Job) -> None:
        """Files on shared storage go through the same pipeline as `longanim colorize`, so
        the engine writes byte-identical files; paths were confined at submit."""
        from longanim.engine import pipeline
        from longanim.engine.sequences.reader import open_sequence

        paths = job.content["_paths"]
        roots = self.manager.roots
        # Checked again now: the folders may have changed (a planted symlink) since submit.
        roots.resolve_output(str(paths["output"]))
        for path, _ in paths["refs"]:
            roots.check_file(path)
        refs = [pipeline.RefSpec(path, frame) for path, frame in paths["refs"]]
        rng = job.content["input"].get("frames")
        frames = tuple(rng) if rng else None
        options = job.content.get("options", {})
        output = job.content["output"]
        resume, every = bool(output.get("resume", False)), int(output.get("checkpoint_every", 0))
        backend = self.backend(job.backend, options)
        with open_sequence(paths["lineart"], frames, check=roots.check_input_file) as shot:
            job.frames_total = len(shot.frames)
            whole = None
            if self.manager.cache.enabled and job.content.get("cache", True):
                video = None if shot.path_for(shot.frames[0]) else _file_digest(paths["lineart"])
                whole = digest("path-v1", [[n, video or _file_digest(roots.check_input_file(shot.path_for(n)))] for n in shot.frames])
        caching = _CachingBackend(backend, self, job, whole, checkpoints=resume or every > 0)
        throttled = self._backend_progress(job)

        def progress(info: dict) -> None:
            if info.get("stage") == "plan" and "mode" in info:  # the pipeline's plan: always sent, once
                job.start = {k: _plain(info[k]) for k in START_FIELDS if k in info}
                self.progress(job, start=job.start)
            else:
                throttled(info)

        reused = [0]  # frames a resumed job found written already: not computed, not in the ETA

        def on_frame(result, path) -> None:
            cached = bool(result.info.get("cached"))
            reused[0] += bool(result.info.get("resumed"))
            job.frames_done += 1
            job.frames_cached += cached
            computed = job.frames_done - job.frames_cached - reused[0]
            if computed:
                job.eta_s = (time.time() - job.started) / computed * (job.frames_total - job.frames_done)
            self.emit(job, M.RESULT, {"job_id": job.id, "number": result.number, "path": str(path),
                                      "cached": cached, "info": _plain(result.info)})
            self.progress(job, number=result.number)

        pipeline.colorize_shot(
            paths["lineart"], refs, paths["output"],
            backend=caching if whole is not None else backend,
            frames=frames,
            out_ext=output.get("ext"),
            allow_gaps=bool(job.content["input"].get("allow_gaps", False)),
            resume=resume,
            checkpoint_every=every,
            progress=progress,
            cancelled=job.cancel.is_set,
            on_frame=on_frame,
            confine=roots.check_file,  # every folder and file the job writes, at the moment it does
            confine_read=roots.check_input_file,  # every file it reads, likewise
        )


class _CachingBackend(Backend):
    """Wraps the real backend inside the pipeline: results come from the cache when the
    same frames were colorized before, and new results are stored as they finish.

    A job that keeps checkpoints (`checkpoints`) needs the backend's state after its frames,
    which only running it gives: the wrapper is then resumable like the backend, serves a
    job from the cache only when every frame is there (nothing then needs a state), and
    otherwise runs the backend, storing what it makes. Checkpoints belong to the backend
    (`state_identity`), so one saved in-process resumes here and back."""

    def __init__(self, inner, runner: JobRunner, job: Job, whole: str | None, checkpoints: bool = False):
        self.inner, self.runner, self.job, self.whole = inner, runner, job, whole
        self.name = inner.name
        # The pipeline plans a frame range by what the backend is (a warm-up for a causal one).
        self.causal = getattr(inner, "causal", False)
        self.frame_independent = getattr(inner, "frame_independent", False)
        self.resumable = bool(checkpoints and getattr(inner, "resumable", False))

    def state_identity(self) -> dict:
        return self.inner.state_identity()

    def cache_identity(self) -> dict:
        return self.inner.cache_identity()

    def _context(self, keyframes) -> str:
        return digest(self.whole, self.name, self.job.content.get("options", {}), self.inner.cache_identity(),
                      [[k.number, array_digest(k.color),
                        array_digest(k.lineart) if k.lineart is not None else None] for k in keyframes])

    def colorize_resumable(self, frames, keyframes, state=None, *, progress=None, cancelled=None):
        if self.whole is None:  # no cache for this job
            yield from self.inner.colorize_resumable(frames, keyframes, state, progress=progress,
                                                     cancelled=cancelled)
            return
        cache = self.runner.manager.cache
        context = self._context(keyframes)
        buffered = []
        for number, frame in frames:
            buffered.append((number, frame))
            if cache.get_arrays(digest(context, number)) is None:
                break
        else:  # every frame cached: no state is needed past the last one
            for number, _ in buffered:
                yield _colored(number, *cache.get_arrays(digest(context, number))), None
            return
        from itertools import chain

        for result, snapshot in self.inner.colorize_resumable(chain(buffered, frames), keyframes, state,
                                                              progress=progress, cancelled=cancelled):
            key = digest(context, result.number)
            if cache.get_arrays(key) is None:
                cache.put_arrays(key, {"rgb": np.asarray(result.rgb), "confidence": result.confidence},
                                 _plain(result.info))
            yield result, snapshot

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        cache = self.runner.manager.cache
        context = self._context(keyframes)
        independent = bool(getattr(self.inner, "frame_independent", False))
        buffered = []
        for number, frame in frames:
            hit = cache.get_arrays(digest(context, number))
            if hit is None:
                buffered.append((number, frame))
                break
            buffered.append((number, frame))
        else:  # everything cached: the pipeline still reads every frame (it keeps their alpha)
            for number, _ in buffered:
                arrays, info = cache.get_arrays(digest(context, number))
                yield _colored(number, arrays, info)
            return
        # Something is missing. A frame-independent backend computes only the missing frames;
        # any other needs every frame as context, and finished frames are still served from the cache.
        from itertools import chain

        source = chain(buffered, frames)
        if independent:
            yield from self._independent(source, keyframes, context, progress, cancelled)
            return
        for result in self.inner.colorize(source, keyframes, progress=progress, cancelled=cancelled):
            key = digest(context, result.number)
            hit = cache.get_arrays(key)
            if hit is not None:  # finished before (e.g. by an engine that was killed): keep that
                yield _colored(result.number, *hit)
                continue
            cache.put_arrays(key, {"rgb": np.asarray(result.rgb), "confidence": result.confidence},
                             _plain(result.info))
            yield result

    def _independent(self, source, keyframes, context, progress, cancelled):
        """Only uncached frames reach the backend; cached ones are slotted back in order."""
        cache = self.runner.manager.cache
        waiting: collections.deque = collections.deque()

        def uncached():
            for number, frame in source:
                hit = cache.get_arrays(digest(context, number))
                if hit is None:
                    yield number, frame
                else:
                    waiting.append(_colored(number, *hit))

        for result in self.inner.colorize(uncached(), keyframes, progress=progress, cancelled=cancelled):
            while waiting and waiting[0].number < result.number:
                yield waiting.popleft()
            cache.put_arrays(digest(context, result.number),
                             {"rgb": np.asarray(result.rgb), "confidence": result.confidence}, _plain(result.info))
            yield result
        yield from waiting


class _AllCached(Exception):
    """Raised through a whole-input backend when its input turned out to be cached entirely."""


def _colored(number: int, arrays: dict, info: dict):
    return ColoredFrame(number, arrays["rgb"], arrays.get("confidence"), {**info, "cached": True})


def _file_digest(path) -> str:
    import hashlib

    from longanim.engine.sequences.image_files import open_regular

    h = hashlib.sha256()
    with open_regular(path) as f:  # a FIFO swapped in for a frame must not block the worker
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_rgb8(array: np.ndarray, what: str, strict: bool) -> None:
    if strict and (array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3):
        raise JobFailed(
            "invalid_content",
            f"{what}: this backend takes HxWx3 uint8 sRGB, got {array.dtype} {list(array.shape)} "
            "(send 8-bit RGB, or use a path input so the pipeline converts)",
        )


def _check_alpha(alpha: np.ndarray | None, color: np.ndarray, what: str) -> None:
    if alpha is not None and (alpha.dtype != np.uint8 or alpha.shape != color.shape[:2]):
        raise JobFailed(
            "invalid_content",
            f"{what}: expected {list(color.shape[:2])} uint8 (the color's height and width), "
            f"got {alpha.dtype} {list(alpha.shape)}",
        )


def _plain(value: Any) -> Any:
    """Backend info dicts may hold numpy scalars; keep what msgpack can carry."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool, bytes)) or value is None:
        return value
    return str(value)
