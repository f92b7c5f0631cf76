"""What the node's buttons do in a Nuke session, without freezing it.

Colorize (main thread): read the knobs, render the inputs (Nuke's own render, `render.py`),
then hand the engine run to a worker thread and return. The worker owns its engine
client, reports through a `nuke.ProgressTask`, and sends every change to the node through
`nuke.executeInMainThread` (node names, never node objects: the node may be gone by then).
Cancel, or the progress window's cancel, cancels the engine's job. No call on the main
thread waits on the engine.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import nuke
from longanim.engine.errors import LonganimError

from longanim_nuke import colour, node
from longanim_nuke.render import Rendered, render_inputs
from longanim_nuke.run import ColorizeRun, Outcome, Progress
from longanim_nuke.settings import Settings, check

STATUS_EVERY_S = 0.5  # status line updates from the worker, at most this often


@dataclass
class _Active:
    name: str
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


_ACTIVE: dict[str, _Active] = {}  # by node full name; one run per node


def colorize(clicked: nuke.Node) -> None:
    """The Colorize button."""
    name = clicked.fullName()
    if name in _ACTIVE:
        node.set_status(clicked, "already colorizing: Cancel first to start again")
        return
    try:
        group = node.as_group(clicked)
        settings, transform = prepare(group)
        rendered = render_inputs(group, settings)
    except (LonganimError, RuntimeError, OSError) as exc:  # bad knobs; a cancelled or failed render; disk
        _report(clicked, f"not started: {exc}")
        return
    active = _Active(name)
    run = ColorizeRun(settings, rendered.lineart, rendered.keyframes, transform, label=f"nuke {name}")
    active.thread = threading.Thread(target=_work, args=(active, run, rendered), name=f"longanim {name}",
                                     daemon=True)
    _ACTIVE[name] = active
    node.set_status(group, f"colorizing {settings.first}-{settings.last} via {settings.engine}; "
                           f"colour: {transform.description}")
    active.thread.start()


def cancel(group: nuke.Node) -> None:
    """The Cancel button: returns at once; the worker cancels the engine's job."""
    active = _ACTIVE.get(group.fullName())
    if active is None:
        node.set_status(group, "nothing to cancel")
        return
    active.cancel.set()
    node.set_status(group, "cancelling...")


def bake(group: nuke.Node) -> None:
    """The Bake button (see `farm.bake`)."""
    from longanim_nuke import farm

    try:
        farm.bake(group)
    except LonganimError as exc:
        _report(group, f"not baked: {exc}")


def prepare(group: nuke.Node) -> tuple[Settings, colour.DisplayTransform]:
    settings = node.settings_of(group)
    check(settings)
    transform = colour.transform_for(node.ocio_config(), node.working_space(), str(group["display_space"].value()))
    return settings, transform


def running(group: nuke.Node) -> bool:
    return group.fullName() in _ACTIVE


# -- the worker thread ------------------------------------------------------------------------

def _work(active: _Active, run: ColorizeRun, rendered: Rendered) -> None:
    # Nuke closes a task's window when the object is deleted: the list is its only holder.
    tasks = [nuke.ProgressTask(f"LongAnimation: {active.name}")]
    last_status = [0.0]
    shown = [False]

    def progress(p: Progress) -> None:
        for task in tasks:
            task.setProgress(p.percent)
            task.setMessage(p.message)
        now = time.monotonic()
        if now - last_status[0] >= STATUS_EVERY_S:
            last_status[0] = now
            nuke.executeInMainThread(_status, (active.name, p.message))
        if run.written and not shown[0]:  # the first frames are there: show them as they come
            shown[0] = True
            nuke.executeInMainThread(_show, (active.name, run.settings.first, run.settings.last))

    def cancelled() -> bool:
        return active.cancel.is_set() or any(task.isCancelled() for task in tasks)

    try:
        outcome = run.run(cancelled=cancelled, progress=progress)
    except BaseException as exc:  # noqa: BLE001  a bug must still end the run and say so on the node
        outcome = Outcome("failed", len(run.written), run.total, f"{type(exc).__name__}: {exc}")
    finally:
        tasks.clear()
        rendered.discard()
    nuke.executeInMainThread(_finish, (active.name, outcome, run.settings.first, run.settings.last))


# -- on the main thread (queued by the worker) ---------------------------------------------------

def _status(name: str, text: str) -> None:
    group = nuke.toNode(name)
    if group is not None:
        node.set_status(group, text)


def _show(name: str, first: int, last: int) -> None:
    group = nuke.toNode(name)
    if isinstance(group, nuke.Group):
        node.show_results(group, first, last)


def _finish(name: str, outcome: Outcome, first: int, last: int) -> None:
    _ACTIVE.pop(name, None)
    group = nuke.toNode(name)
    if not isinstance(group, nuke.Group):
        return  # deleted while it ran; its files stay in the cache folder
    if outcome.written:
        node.show_results(group, first, last)
    text = {"done": "done", "cancelled": "cancelled", "failed": "failed"}[outcome.state]
    job = f" (engine job {outcome.job_id})" if outcome.job_id else ""
    node.set_status(group, f"{text}: {outcome.message}{job}")
    if outcome.state == "failed":
        _report(group, f"failed: {outcome.message}")


def _report(group: nuke.Node, text: str) -> None:
    node.set_status(group, text)
    if nuke.GUI:
        nuke.message(f"{group.name()}: {text}")


def wait_all(timeout: float = 600.0) -> None:
    """For scripts and tests: join the running workers (not for use on a GUI's main thread)."""
    deadline = time.monotonic() + timeout
    for active in list(_ACTIVE.values()):
        if active.thread is not None:
            active.thread.join(max(0.0, deadline - time.monotonic()))

