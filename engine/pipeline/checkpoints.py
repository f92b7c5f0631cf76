"""A shot's saved state and where a run begins from it.

The file format (`save_checkpoint` / `load_checkpoint`: an `.npz` whose JSON header says which
shot, keyframes, backend and line-art files the state belongs to) and the planning of a run's
start around it (`plan_start`: fresh, resumed, warmed up or cold), apart from the spine that
runs the frames (`longanim.engine.pipeline`): what makes a resume safe is decided here, once,
and the frame loop only asks for a plan and hands states to `CheckpointSaver`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from longanim.engine.backends.base import Backend, Keyframe, ShotState
from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import ConfineFn, atomic_write
from longanim.engine.sequences.reader import Sequence as FrameSequence
from longanim.engine.sequences.reader import frame_ranges


CHECKPOINT_FORMAT = "longanim-checkpoint"
CHECKPOINT_VERSION = 2  # of the file: its header and how the state is stored in it (2: line-art file records)


def checkpoint_path(outdir: Path, shot_name: str) -> Path:
    """Hidden, one per shot name in the output folder: the newest saved state of that shot."""
    return Path(outdir) / f".{shot_name}.longanim-checkpoint.npz"


class CheckpointMismatch(InputError):
    """A checkpoint that is not for this shot, these keyframes, this backend or these options."""


@dataclass
class Checkpoint:
    frame: int  # the state is the one after this frame
    done: dict[int, float]  # frames written in the folder by the runs that led here, review fractions
    state: ShotState
    files: dict[str, list] = field(default_factory=dict)  # line art the state was made from (`lineart_records`)


def shot_identity(whole: FrameSequence, keyframes: Sequence[Keyframe], engine: Backend) -> dict:
    """What a saved state belongs to: the line-art sequence (name, frame range, size), the
    keyframes (numbers and pixels), and the backend's code and options (`Backend.state_identity`).
    The line-art files are checked apart, frame by frame (`lineart_records`): only the frames up
    to the checkpoint made its state, and a refusal can then name the frames that changed."""
    keys = hashlib.sha256()
    for key in keyframes:
        keys.update(f"{key.number}:{key.color.shape}".encode() + key.color.tobytes())
        if key.lineart is not None:
            keys.update(key.lineart.tobytes())
        if key.alpha is not None:
            keys.update(b"alpha" + key.alpha.tobytes())
    identity = {
        "lineart": {"name": whole.name, "frames": [whole.frames[0], whole.frames[-1], len(whole.frames)],
                    "size": [whole.width, whole.height]},
        "keyframes": {"frames": [k.number for k in keyframes], "pixels": keys.hexdigest()[:32]},
        "backend_name": engine.name,
        **engine.state_identity(),
    }
    return json.loads(json.dumps(identity, sort_keys=True))  # as it reads back from a file


def save_checkpoint(path: Path, identity: dict, frame: int, done: dict[int, float], state: ShotState,
                    confine: ConfineFn | None = None, files: dict[str, list] | None = None) -> None:
    """Atomically (temp file + rename): a reader sees the old checkpoint or the new, whole."""
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "identity": identity, "frame": frame,
              "done": {str(n): f for n, f in sorted(done.items())}, "files": files or {}}
    arrays = {"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
    arrays.update({f"state/{name}": value for name, value in state.items()})

    def encode(tmp) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(Path(path), encode, confine)


def load_checkpoint(path: Path, identity: dict) -> Checkpoint | None:
    """The checkpoint at `path` (None when there is none), refused (`CheckpointMismatch`) when
    its header does not match `identity`. The header is read and checked before any of the
    state; the file is an `.npz` read with `allow_pickle=False`, so whatever lies in a shared
    output folder is only ever read as arrays of numbers, never run."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointMismatch(f"{path} is not a longanim checkpoint")
            if header.get("version") != CHECKPOINT_VERSION:
                raise CheckpointMismatch(f"{path} is checkpoint version {header.get('version')}; this longanim "
                                         f"reads version {CHECKPOINT_VERSION}")
            differences = _differences(header.get("identity"), identity)
            if differences:
                raise CheckpointMismatch(f"{path} was saved for another run ({'; '.join(differences[:4])})")
            state = {name[len("state/"):]: z[name] for name in z.files if name.startswith("state/")}
            files = header.get("files")
            if not isinstance(files, dict):
                raise CheckpointMismatch(f"{path} holds no record of its line-art files")
            return Checkpoint(int(header["frame"]), {int(n): float(f) for n, f in header["done"].items()}, state,
                              files)
    except CheckpointMismatch:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointMismatch(f"{path} cannot be read as a checkpoint: {exc}") from exc


def lineart_records(whole: FrameSequence, upto: int, known: dict[str, list] | None = None) -> dict[str, list]:
    """[file name, size, modification time (ns), sha256] of the line-art file of every frame up
    to `upto` (key: the frame number; a video: "video", its one file), `known` ones kept as they
    are. Taken when a checkpoint is saved: each file is read once more, from the OS cache."""
    records = dict(known or {})
    wanted = [("video", Path(whole.source))] if whole.is_video else \
        [(str(n), whole.path_for(n)) for n in whole.frames if n <= upto]
    for key, path in wanted:
        if key not in records:
            st = path.stat()
            records[key] = [path.name, st.st_size, st.st_mtime_ns, _file_digest(path)]
    return records


def changed_lineart(whole: FrameSequence, records: dict[str, list]) -> list:
    """The frames (numbers; "video" for a video file) whose line art is no longer what `records`
    says. A file with its recorded size and modification time is taken as unchanged without
    reading it, so resuming a long shot costs a stat per frame; one whose time differs (copied,
    touched) is read and compared, so only a real change refuses the checkpoint."""
    changed: list = []
    for key, record in records.items():
        try:
            name, size, mtime_ns, digest = record
            path = Path(whole.source) if key == "video" else whole.path_for(int(key))
            st = path.stat() if path is not None and path.name == name else None
        except (OSError, ValueError, TypeError, InputError):
            st = None
        if st is None or st.st_size != size or (st.st_mtime_ns != mtime_ns and _file_digest(path) != digest):
            changed.append(key if key == "video" else int(key))
    return changed


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def _differences(saved, current, where: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += _differences(saved.get(key), current.get(key), f"{where}.{key}" if where else key)
        return out
    return [] if saved == current else [f"{where or 'identity'}: {saved!r} there, {current!r} here"]


@dataclass
class StartPlan:
    """Where a run begins: the frame the backend starts at, from which state, and which of the
    run's frames a resumed run already wrote."""

    mode: str  # fresh | resumed | warm-up | cold
    start: int  # first frame the backend colorizes (state: after the frame before it)
    first: int  # first frame written
    state: ShotState | None = None
    done: dict[int, float] = field(default_factory=dict)  # frames of this run already written
    inherited: dict[int, float] = field(default_factory=dict)  # every frame the checkpoint lists
    warm_up: int = 0  # frames colorized and not written
    checkpoint_frame: int | None = None
    identity: dict | None = None
    files: dict[str, list] = field(default_factory=dict)  # the checkpoint's line-art records, checked
    path: Path | None = None
    note: str = ""

    def describe(self) -> dict:
        out = {"mode": self.mode, "from_frame": self.start, "warm_up_frames": self.warm_up}
        if self.checkpoint_frame is not None:
            out["checkpoint_frame"] = self.checkpoint_frame
        return out

    def message(self) -> str:
        if self.mode == "resumed":
            text = (f"resumed from the checkpoint after frame {self.checkpoint_frame}: "
                    f"{len(self.done)} frames were already written")
            if self.warm_up:
                text += f", {self.warm_up} frames run without writing them to reach frame {self.first}"
        elif self.mode == "warm-up":
            text = (f"warm-up: frames {self.start}-{self.first - 1} are run without writing them, so frame "
                    f"{self.first} on equal a whole-shot run (no checkpoint before frame {self.first})")
        elif self.mode == "cold":
            text = (f"starting cold at frame {self.first}: this backend cannot warm up, so these frames may "
                    "differ from a whole-shot run")
        else:
            text = f"starting at frame {self.first}"
        return text + (f"; {self.note}" if self.note else "")


def plan_start(whole, shot, keyframes, engine, outdir, writer, *, resume: bool, checkpointing: bool) -> StartPlan:
    first, shot_start = shot.frames[0], whole.frames[0]
    plan = StartPlan("fresh", first, first)
    before = [n for n in whole.frames if n < first]
    if not engine.resumable:
        if before and engine.causal and not engine.frame_independent:
            # No state to save, but a memory that looks back only: the same warm-up applies.
            plan.mode, plan.start, plan.warm_up = "warm-up", shot_start, len(before)
        elif before and not engine.frame_independent:
            plan.mode = "cold"
        return plan
    plan.identity = shot_identity(whole, keyframes, engine)
    plan.path = checkpoint_path(outdir, shot.name)
    checkpoint = None
    if resume or before:
        try:
            checkpoint = load_checkpoint(plan.path, plan.identity)
        except CheckpointMismatch as exc:
            if resume:
                raise CheckpointMismatch(f"cannot resume: {exc}; delete it to start over, or run without "
                                         "--resume") from None
            plan.note = f"ignored {plan.path.name}: {exc}"
    changed = changed_lineart(whole, checkpoint.files) if checkpoint is not None else []
    if changed:
        frames = "the video file" if changed == ["video"] else f"frame{'s' if len(changed) > 1 else ''} " \
            f"{frame_ranges(changed)}"
        text = (f"{plan.path} was made from other line art: {frames} changed since (its memory holds the old "
                "drawings)")
        if resume:
            raise CheckpointMismatch(f"cannot resume: {text}; delete it to start over, or run without --resume")
        plan.note, checkpoint = f"ignored {plan.path.name}: {text}", None
    if checkpoint is not None and checkpoint.frame in whole:
        c = checkpoint.frame
        covered = [n for n in shot.frames if n <= c]
        written = all(n in checkpoint.done and writer.path_for(n).is_file() for n in covered)
        if c < first or written:
            after = [n for n in whole.frames if n > c]
            plan.mode, plan.state, plan.checkpoint_frame = "resumed", checkpoint.state, c
            plan.start = after[0] if after else c + 1
            plan.warm_up = len([n for n in before if n > c])
            plan.done = {n: checkpoint.done[n] for n in covered}
            plan.inherited = {n: f for n, f in checkpoint.done.items() if n <= c}
            plan.files = checkpoint.files
            return plan
        plan.note = (f"the checkpoint after frame {c} was not used: frames it lists as written are missing "
                     "from the output folder")
    elif checkpoint is not None:
        plan.note = f"the checkpoint after frame {checkpoint.frame} is for a frame outside the shot"
    if before:
        plan.mode, plan.start, plan.warm_up = "warm-up", shot_start, len(before)
    return plan


class CheckpointSaver:
    """Saves the state every `every` frames the backend colorizes, at the end and on a cancel;
    a state is saved only once the frames up to it are on disk, so a checkpoint never lists a
    frame that a kill could have left unwritten. A backend that can stop only at some frames
    (a diffusion model at its segments' ends) hands no state for the others: a save due at
    one of those is made at the next frame that has a state."""

    def __init__(self, plan: StartPlan, every: int | None, guard, whole: FrameSequence) -> None:
        self.plan = plan
        self.whole = whole
        self.files = dict(plan.files)  # line-art records, checked already or taken at a save
        self.every = every if every and plan.identity is not None else 0
        self.guard = guard
        self.done = dict(plan.inherited)
        self.pending: deque = deque()  # (frame, state) waiting for that frame's files
        self.colorized = 0
        self.owed = False  # a save was due at a frame without a state
        self.saved: int | None = None

    def _due(self, snapshot, last: bool = False) -> bool:
        self.colorized += 1
        if self.every and (self.colorized % self.every == 0 or last):
            self.owed = True
        if self.owed and snapshot is not None:
            self.owed = False
            return True
        return False

    def frame_done(self, n: int, snapshot, _unused) -> None:
        """A warm-up frame: nothing of it is written, so its state can be saved at once."""
        if self._due(snapshot):
            self._save(n, snapshot())

    def frame_computed(self, n: int, snapshot, last: bool) -> None:
        if self._due(snapshot, last):
            self.pending.append((n, snapshot()))

    def cancel_at(self, n: int, snapshot) -> None:
        if self.every and snapshot is not None and not (self.pending and self.pending[-1][0] == n):
            self.pending.append((n, snapshot()))

    def written(self, n: int, review_fraction: float) -> None:
        self.done[n] = review_fraction
        while self.pending and self.pending[0][0] <= n:
            frame, state = self.pending.popleft()
            self._save(frame, state)

    def flush(self) -> None:
        while self.pending:
            frame, state = self.pending.popleft()
            self._save(frame, state)

    def _save(self, frame: int, state: ShotState) -> None:
        done = {n: f for n, f in self.done.items() if n <= frame}
        self.files = lineart_records(self.whole, frame, self.files)
        files = {k: r for k, r in self.files.items() if k == "video" or int(k) <= frame}
        save_checkpoint(self.guard(self.plan.path), self.plan.identity, frame, done, state, confine=self.guard,
                        files=files)
        self.saved = frame
