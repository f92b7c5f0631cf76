"""A fake of exactly the part of Nuke's Python API the LongAnimation plug-in uses.

Nuke is commercial and cannot be installed here, so the plug-in's Nuke layer
(plugins/nuke/longanim_nuke/{node,render,actions,farm}.py, init.py, menu.py) is tested
against this module, put on sys.path as `nuke` by the tests only. Each piece follows what
Foundry's Python developer guide and reference (Nuke 15/16) document; where this fake is
stricter than Nuke or simpler, it says so. What it models:

- Nodes, knobs and Groups (`nuke.nodes.X(**knobs)`, `createNode`, `toNode`, `allNodes`,
  `delete`, `Group.begin/end/with`, `Group.node`): nodes are created in the current
  group context; a knob name a node does not have raises ValueError, as
  `nuke.nodes.X(bad=1)` does; a Write's EXR knobs (`datatype`) exist only once
  `file_type` is exr, as in Nuke's Write panel; `setName(..., uncollide=True)` appends
  the smallest free number to a taken name.
- Images: a Read reads its EXR (frame clamped to first-last; `####` / `%04d`),
  `on_error black` gives black for a missing frame, anything else raises; EXR channels
  `layer.R` appear as Nuke names them (`layer.red`); a Read keeps the frames it has read
  until its `reload` button runs (Nuke caches; a rewritten file needs a reload). Input
  nodes take the group's inputs (unconnected: black); Switch, Output and Group pass on.
- `execute(write, first, last)`: runs the beforeRender callbacks (registered with
  `addBeforeRender`, nodeClass "Write") with `thisNode()` the Write; an exception there
  aborts the render ("If they throw an exception, the render aborts") and `execute`
  raises RuntimeError, as a failed render does. Then each frame is written with the
  Write's channels (a channel the input lacks is written as zeros) and datatype. Only
  `raw` writes are modelled (the plug-in always writes raw); a non-raw Write raises.
- Threads: Nuke's Python API may only be used from the main thread, except
  `executeInMainThread` and `ProgressTask`. Here every other call made from another
  thread raises RuntimeError (Nuke would not raise, it would crash or corrupt: stricter).
- `executeInMainThread(call, args, kwargs)`: queues the call for Nuke's event loop and
  returns None at once, from any thread; the call runs later on the main thread. Tests
  play the event loop with `process_events()`.
- `ProgressTask(title)`: usable from any thread; `setProgress(int)`, `setMessage(str)`;
  `isCancelled()` is True once the user pressed the task's cancel button, which tests do
  with `user_cancel()`; the task's window closes when the object is deleted.
- `message()` records what a GUI dialog would show; `GUI` is a plain flag (tests set it:
  False is `nuke -x` / `nuke -t`); `menu(name).addCommand` records entries.
- Scripts: `scriptSave(path)` writes every node, its knobs (user knobs with their kind,
  label, flags and value) and its inputs; `scriptClear()`; `scriptOpen(path)` builds them
  again as new node objects (Python state kept on old ones is gone). This is a JSON file,
  not .nk syntax: it models what the plug-in relies on, that every value lives in a knob.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

GUI = True
EXE_PATH = "/usr/local/Nuke16.0v2/Nuke16.0"
INVISIBLE, STARTLINE, READ_ONLY = 0x400, 0x1000, 0x10000000
INPUTS, HIDDEN_INPUTS = 0x1, 0x2

_MAIN = threading.main_thread()


def _main_only(what: str) -> None:
    if threading.current_thread() is not _MAIN:
        raise RuntimeError(f"nuke.{what} called from thread {threading.current_thread().name}; Nuke's Python API "
                           "is for the main thread only (use nuke.executeInMainThread)")


# -- knobs ----------------------------------------------------------------------------------------

class Knob:
    default: Any = ""

    def __init__(self, name: str, label: str | None = None, value: Any = None):
        _main_only("Knob")
        self._name, self._label = name, name if label is None else label
        self._value = self.default if value is None else value
        self._flags = 0
        self._tooltip = ""
        self.node: Node | None = None

    def name(self) -> str:
        return self._name

    def label(self) -> str:
        return self._label

    def value(self) -> Any:
        _main_only("Knob.value")
        return self._value

    getValue = value

    def setValue(self, value: Any) -> bool:
        _main_only("Knob.setValue")
        self._value = self._coerce(value)
        if self.node is not None:
            self.node._knob_changed(self)
        return True

    def _coerce(self, value: Any) -> Any:
        return str(value)

    def setFlag(self, flag: int) -> None:
        self._flags |= flag

    def clearFlag(self, flag: int) -> None:
        self._flags &= ~flag

    def getFlag(self, flag: int) -> bool:
        return bool(self._flags & flag)

    def setTooltip(self, text: str) -> None:
        self._tooltip = text

    def _state(self) -> dict:
        return {"kind": type(self).__name__, "label": self._label, "value": self._value, "flags": self._flags}


class String_Knob(Knob):
    pass


class File_Knob(Knob):
    pass


class Text_Knob(Knob):
    def __init__(self, name: str, label: str | None = None, text: str = ""):
        super().__init__(name, label, text)


class Tab_Knob(Knob):
    pass


class Int_Knob(Knob):
    default = 0

    def _coerce(self, value: Any) -> int:
        return int(value)


class Boolean_Knob(Knob):
    default = False

    def _coerce(self, value: Any) -> bool:
        return bool(value)


class Enumeration_Knob(Knob):
    def __init__(self, name: str, label: str | None = None, items: list[str] | None = None):
        self.items = list(items or [])
        super().__init__(name, label, self.items[0] if self.items else "")

    def _coerce(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return self.items[value]
        if value not in self.items:
            raise ValueError(f"{self._name}: '{value}' is not one of {self.items}")
        return str(value)

    def _state(self) -> dict:
        return {**super()._state(), "items": self.items}


class Script_Knob(Knob):
    """A button (a Read's reload is one)."""

    def execute(self) -> None:
        raise NotImplementedError


class PyScript_Knob(Script_Knob):
    """A button: `execute()` runs its Python with `thisNode()` the knob's node."""

    def __init__(self, name: str, label: str | None = None, command: str = ""):
        super().__init__(name, label, command)

    def execute(self) -> None:
        _main_only("PyScript_Knob.execute")
        with _this(self.node):
            exec(self._value, {"nuke": __import__("nuke")})


class _Button(Script_Knob):
    """A built-in button (a Read's reload) that calls back into its node."""

    def __init__(self, name: str, action: Callable[[], None]):
        super().__init__(name)
        self._action = action

    def execute(self) -> None:
        _main_only("Knob.execute")
        self._action()


_KNOB_KINDS = {k.__name__: k for k in (String_Knob, File_Knob, Text_Knob, Tab_Knob, Int_Knob, Boolean_Knob,
                                       Enumeration_Knob, PyScript_Knob)}


# -- nodes ----------------------------------------------------------------------------------------

class Node:
    _class = "Node"

    def __init__(self, parent: Group | None):
        _main_only("createNode")
        self._knobs: dict[str, Knob] = {}
        self._user: list[str] = []
        self._inputs: list[Node | None] = []
        self.parent = parent
        self.deleted = False
        for knob in (String_Knob("name"), String_Knob("label"), Int_Knob("xpos"), Int_Knob("ypos"),
                     Boolean_Knob("disable"), *self._builtin_knobs()):
            self._attach(knob)

    def _builtin_knobs(self) -> list[Knob]:
        return []

    def _attach(self, knob: Knob) -> None:
        knob.node = self
        self._knobs[knob.name()] = knob

    def _knob_changed(self, knob: Knob) -> None:
        pass

    def _alive(self) -> None:
        _main_only("Node")
        if self.deleted:
            raise ValueError("A PythonObject is not attached to a node")

    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        self._alive()
        return self._knobs["name"].value()

    def fullName(self) -> str:
        self._alive()
        if self.parent is None or self.parent is _root:
            return self.name()
        return f"{self.parent.fullName()}.{self.name()}"

    def setName(self, name: str, uncollide: bool = True, updateExpressions: bool = False) -> None:
        self._alive()
        siblings = {n.name() for n in (self.parent._children if self.parent else []) if n is not self}
        if name in siblings:
            if not uncollide:
                raise ValueError(f"name '{name}' is already in use")
            stem = re.sub(r"\d+$", "", name)
            i = 1
            while f"{stem}{i}" in siblings:
                i += 1
            name = f"{stem}{i}"
        self._knobs["name"].setValue(name)

    def knob(self, name: str) -> Knob | None:
        self._alive()
        return self._knobs.get(name)

    def knobs(self) -> dict[str, Knob]:
        self._alive()
        return dict(self._knobs)

    def __getitem__(self, name: str) -> Knob:
        knob = self.knob(name)
        if knob is None:
            raise NameError(f"knob {name} does not exist")
        return knob

    def addKnob(self, knob: Knob) -> None:
        self._alive()
        self._attach(knob)
        self._user.append(knob.name())

    def input(self, i: int) -> Node | None:
        self._alive()
        return self._inputs[i] if i < len(self._inputs) else None

    def inputs(self) -> int:
        self._alive()
        return len(self._inputs)

    def setInput(self, i: int, node: Node | None) -> bool:
        self._alive()
        while len(self._inputs) <= i:
            self._inputs.append(None)
        self._inputs[i] = node
        while self._inputs and self._inputs[-1] is None:
            self._inputs.pop()
        return True

    def dependencies(self, what: int = INPUTS | HIDDEN_INPUTS) -> list[Node]:
        self._alive()
        return [n for n in self._inputs if n is not None]

    def dependent(self, what: int = INPUTS | HIDDEN_INPUTS, forceEvaluate: bool = True) -> list[Node]:
        self._alive()
        siblings = self.parent._children if self.parent else []
        return [n for n in siblings if any(i is self for i in n._inputs)]

    def xpos(self) -> int:
        return int(self["xpos"].value())

    def ypos(self) -> int:
        return int(self["ypos"].value())

    def setXYpos(self, x: int, y: int) -> None:
        self["xpos"].setValue(x)
        self["ypos"].setValue(y)

    def channels(self) -> list[str]:
        self._alive()
        return _channel_names(self._image(int(_root["first_frame"].value())))

    # what the node outputs at a frame: {nuke channel: HxW float32}
    def _image(self, frame: int) -> dict[str, np.ndarray]:
        up = self.input(0)
        return up._image(frame) if up is not None else _black()


def _black() -> dict[str, np.ndarray]:
    w, h = _root.format
    return {c: np.zeros((h, w), np.float32) for c in RGBA}


RGBA = ("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha")
_EXR_TO_NUKE = {"R": "red", "G": "green", "B": "blue", "A": "alpha"}


def _channel_names(image: dict) -> list[str]:
    return sorted(image)


class Group(Node):
    _class = "Group"

    def __init__(self, parent: Group | None):
        self._children: list[Node] = []
        super().__init__(parent)

    def begin(self) -> Group:
        _main_only("Group.begin")
        _context.append(self)
        return self

    def end(self) -> None:
        _main_only("Group.end")
        assert _context[-1] is self, "Group.end() without its begin()"
        _context.pop()

    def __enter__(self) -> Group:
        return self.begin()

    def __exit__(self, *exc) -> None:
        self.end()

    def node(self, name: str) -> Node | None:
        self._alive()
        return next((n for n in self._children if n.name() == name), None)

    def nodes(self) -> list[Node]:
        self._alive()
        return list(self._children)

    def _image(self, frame: int) -> dict[str, np.ndarray]:
        out = next((n for n in self._children if n.Class() == "Output"), None)
        return out._image(frame) if out is not None else _black()


class Root(Group):
    _class = "Root"

    def __init__(self) -> None:
        super().__init__(None)
        self.format = (64, 48)
        for knob in (Int_Knob("first_frame", value=1), Int_Knob("last_frame", value=100),
                     Enumeration_Knob("colorManagement", items=["Nuke", "OCIO"]),
                     String_Knob("OCIO_config"), File_Knob("customOCIOConfigPath"), String_Knob("workingSpaceLUT")):
            self._attach(knob)
        self._knobs["name"].setValue("")


class Input(Node):
    _class = "Input"

    def _builtin_knobs(self) -> list[Knob]:
        number = sum(1 for n in (self.parent._children if self.parent else []) if n.Class() == "Input")
        return [Int_Knob("number", value=number)]

    def _image(self, frame: int) -> dict[str, np.ndarray]:
        group = self.parent
        up = group.input(int(self["number"].value())) if group is not None and group is not _root else None
        return up._image(frame) if up is not None else _black()


class Output(Node):
    _class = "Output"


class Switch(Node):
    _class = "Switch"

    def _builtin_knobs(self) -> list[Knob]:
        return [Int_Knob("which")]

    def _image(self, frame: int) -> dict[str, np.ndarray]:
        if not self._inputs:
            return _black()
        up = self._inputs[max(0, min(int(self["which"].value()), len(self._inputs) - 1))]
        return up._image(frame) if up is not None else _black()


def _frame_file(pattern: str, frame: int) -> Path:
    if "%0" in pattern:
        return Path(pattern % frame)
    hashes = re.search(r"#+", pattern)
    if not hashes:
        return Path(pattern)
    return Path(pattern[:hashes.start()] + f"{frame:0{len(hashes[0])}d}" + pattern[hashes.end():])


class Read(Node):
    _class = "Read"

    def _builtin_knobs(self) -> list[Knob]:
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self.reloads = 0
        return [File_Knob("file"), Int_Knob("first", value=1), Int_Knob("last", value=1),
                Int_Knob("origfirst", value=1), Int_Knob("origlast", value=1), Boolean_Knob("raw"),
                Enumeration_Knob("on_error", items=["error", "black", "checkerboard", "nearest frame"]),
                _Button("reload", self._reload)]

    def _reload(self) -> None:
        self._cache.clear()
        self.reloads += 1

    def _knob_changed(self, knob: Knob) -> None:
        if knob.name() == "file":
            self._cache.clear()

    def _image(self, frame: int) -> dict[str, np.ndarray]:
        frame = max(int(self["first"].value()), min(int(self["last"].value()), frame))
        if frame not in self._cache:
            path = _frame_file(str(self["file"].value()), frame)
            if not path.is_file():
                if self["on_error"].value() == "black":
                    return _black()
                raise RuntimeError(f"{self.name()}: Read error: {path}: No such file or directory")
            self._cache[frame] = _read_exr(path)
        return self._cache[frame]


def _read_exr(path: Path) -> dict[str, np.ndarray]:
    import OpenEXR

    out = {}
    for name, channel in OpenEXR.File(str(path), separate_channels=True).channels().items():
        layer, _, chan = name.rpartition(".")
        nuke_name = f"{layer or 'rgba'}.{_EXR_TO_NUKE.get(chan, chan)}"
        out[nuke_name] = np.asarray(channel.pixels, dtype=np.float32)
    return out


class Write(Node):
    _class = "Write"

    def _builtin_knobs(self) -> list[Knob]:
        return [File_Knob("file"), Enumeration_Knob("file_type", items=["", "exr", "png", "tiff", "jpeg"]),
                Boolean_Knob("raw"), String_Knob("channels", value="rgb"), String_Knob("beforeRender")]

    def _knob_changed(self, knob: Knob) -> None:
        if knob.name() == "file_type" and knob.value() == "exr" and "datatype" not in self._knobs:
            self._attach(Enumeration_Knob("datatype", items=["16 bit half", "32 bit float"]))

    def _render(self, frame: int) -> None:
        from longanim.engine.sequences.image_files import write_image

        if self["file_type"].value() != "exr" or not self["raw"].value():
            raise NotImplementedError("the fake models raw EXR Writes only")
        image = self._image(frame)
        wanted = {"rgb": RGBA[:3], "rgba": RGBA}[str(self["channels"].value())]
        dtype = np.float32 if self["datatype"].value() == "32 bit float" else np.float16
        h, w = next(iter(image.values())).shape
        planes = [image.get(c, np.zeros((h, w), np.float32)) for c in wanted]
        write_image(_frame_file(str(self["file"].value()), frame), np.stack(planes, axis=-1).astype(dtype))


_CLASSES: dict[str, type[Node]] = {c._class: c for c in (Group, Input, Output, Switch, Read, Write)}


# -- the script -------------------------------------------------------------------------------------

_root = Root()
_context: list[Group] = [_root]
_this_stack: list[Node | None] = []
_before_render: list[tuple[Callable, tuple, dict, str]] = []
_main_queue: deque = deque()
_queue_lock = threading.Lock()
messages: list[str] = []
menus: dict[str, list[tuple[str, str]]] = {}
plugin_paths: list[str] = []
_executing = [0]


class _this:
    def __init__(self, node: Node | None):
        self.node = node

    def __enter__(self) -> None:
        _this_stack.append(self.node)

    def __exit__(self, *exc) -> None:
        _this_stack.pop()


def root() -> Root:
    _main_only("root")
    return _root


def thisNode() -> Node:
    _main_only("thisNode")
    if not _this_stack or _this_stack[-1] is None:
        raise RuntimeError("nuke.thisNode() outside a callback or knob")
    return _this_stack[-1]


def _create(cls: str, knobs: dict) -> Node:
    if cls not in _CLASSES:
        raise RuntimeError(f"{cls}: unknown command (the fake has {sorted(_CLASSES)})")
    parent = _context[-1]
    node = _CLASSES[cls](parent)
    parent._children.append(node)
    node.setName(f"{cls}1" if "name" not in knobs else knobs.pop("name"), uncollide=True)
    for name, value in knobs.items():
        knob = node.knob(name)
        if knob is None:
            raise ValueError(f"{cls}: {name} is not a knob")
        knob.setValue(value)
    return node


class _Nodes:
    def __getattr__(self, cls: str) -> Callable[..., Node]:
        return lambda **knobs: _create(cls, dict(knobs))


nodes = _Nodes()


def createNode(cls: str, knobs: str = "", inpanel: bool = True) -> Node:
    _main_only("createNode")
    return _create(cls, {})


def toNode(name: str) -> Node | None:
    _main_only("toNode")
    group: Group = _root
    *path, last = name.split(".")
    for part in path:
        child = group.node(part)
        if not isinstance(child, Group):
            return None
        group = child
    return group.node(last)


def allNodes(filter: str | None = None, group: Group | None = None, recurseGroups: bool = False) -> list[Node]:
    _main_only("allNodes")
    out: list[Node] = []

    def walk(g: Group) -> None:
        for n in g._children:
            if filter is None or n.Class() == filter:
                out.append(n)
            if recurseGroups and isinstance(n, Group):
                walk(n)

    walk(group or _context[-1])
    return out


def delete(node: Node) -> None:
    _main_only("delete")
    node._alive()
    if node.parent is not None:
        node.parent._children.remove(node)
        for other in node.parent._children:
            other._inputs = [None if i is node else i for i in other._inputs]
    node.deleted = True


def addBeforeRender(call: Callable, args: tuple = (), kwargs: dict | None = None, nodeClass: str = "Write") -> None:
    _before_render.append((call, tuple(args), dict(kwargs or {}), nodeClass))


def pluginAddPath(path: str, addToSysPath: bool = True) -> None:
    plugin_paths.append(path)


def execute(node: Node, start: int, end: int, incr: int = 1) -> None:
    _main_only("execute")
    node._alive()
    if not isinstance(node, Write):
        raise RuntimeError(f"{node.name()} cannot be executed")
    _executing[0] += 1
    try:
        with _this(node):
            try:
                for call, args, kwargs, cls in _before_render:
                    if cls in ("*", node.Class()):
                        call(*args, **kwargs)
                if node["beforeRender"].value():
                    exec(node["beforeRender"].value(), {"nuke": __import__("nuke")})
            except Exception as exc:
                raise RuntimeError(f"{node.name()}: beforeRender: {exc}") from exc
        for frame in range(start, end + 1, incr):
            node._render(frame)
    finally:
        _executing[0] -= 1


def executing() -> bool:
    return _executing[0] > 0


def message(text: str) -> None:
    _main_only("message")
    messages.append(text)


class _Menu:
    def __init__(self, name: str):
        self.name = name

    def addCommand(self, name: str, command: str, *args: Any, **kwargs: Any) -> None:
        menus.setdefault(self.name, []).append((name, command))


def menu(name: str) -> _Menu:
    _main_only("menu")
    return _Menu(name)


# -- threads ----------------------------------------------------------------------------------------

def executeInMainThread(call: Callable, args: tuple = (), kwargs: dict | None = None) -> None:
    with _queue_lock:
        _main_queue.append((call, tuple(args), dict(kwargs or {})))


def process_events(until: Callable[[], bool] = lambda: False, timeout: float = 30.0, tick: float = 0.01) -> list[float]:
    """The fake's event loop (tests only, main thread): run queued calls until `until()`
    holds; returns how long each queued call took on the main thread."""
    _main_only("process_events")
    took: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        while True:
            with _queue_lock:
                item = _main_queue.popleft() if _main_queue else None
            if item is None:
                break
            t0 = time.perf_counter()
            item[0](*item[1], **item[2])
            took.append(time.perf_counter() - t0)
        if until():
            return took
        if time.monotonic() > deadline:
            raise TimeoutError("process_events: not done in time")
        time.sleep(tick)


class ProgressTask:
    instances: list[ProgressTask] = []

    def __init__(self, title: str = "", maximum: int = 100):
        self.title, self.progress, self.message = title, 0, ""
        self.thread = threading.current_thread().name
        self._cancelled = False
        self.closed = [False]
        ProgressTask.instances.append(_TaskView(self))

    def setProgress(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise ValueError(f"ProgressTask.setProgress: {value!r} is not an int in 0-100")
        self.progress = value

    def setMessage(self, text: str) -> None:
        self.message = str(text)

    def isCancelled(self) -> bool:
        return self._cancelled

    def __del__(self) -> None:
        self.closed[0] = True


class _TaskView:
    """What a test sees of a task: its state, without keeping the task alive."""

    def __init__(self, task: ProgressTask):
        import weakref

        self._task = weakref.ref(task)
        self.title, self.thread, self._closed = task.title, task.thread, task.closed

    @property
    def closed(self) -> bool:
        return self._closed[0]

    def task(self) -> ProgressTask | None:
        return self._task()

    def user_cancel(self) -> None:
        task = self._task()
        assert task is not None, "the task's window is already closed"
        task._cancelled = True


# -- saving and opening scripts ---------------------------------------------------------------------

def scriptSave(path: str) -> bool:
    _main_only("scriptSave")
    _root["name"].setValue(str(path))
    Path(path).write_text(json.dumps(_save_group(_root), indent=1))
    return True


def _save_group(group: Group) -> dict:
    ids = {id(n): i for i, n in enumerate(group._children)}
    saved = []
    for n in group._children:
        entry = {"class": n.Class(), "knobs": {k: n._knobs[k]._state() for k in n._knobs if k not in n._user},
                 "user": [[k, n._knobs[k]._state()] for k in n._user],
                 "inputs": [ids.get(id(i)) for i in n._inputs]}
        entry["knobs"] = {k: v["value"] for k, v in entry["knobs"].items() if not isinstance(n._knobs[k], _Button)}
        if isinstance(n, Group):
            entry["children"] = _save_group(n)
        saved.append(entry)
    return {"nodes": saved, "root": {k: _root._knobs[k].value() for k in _root._knobs} if group is _root else None}


def scriptClear() -> None:
    _main_only("scriptClear")
    global _root
    _root = Root()
    _context[:] = [_root]


def scriptOpen(path: str) -> None:
    _main_only("scriptOpen")
    scriptClear()
    data = json.loads(Path(path).read_text())
    for name, value in data["root"].items():
        _root._knobs[name]._value = value
    _root["name"].setValue(str(path))
    _load_group(_root, data)


def _load_group(group: Group, data: dict) -> None:
    made = []
    _context.append(group)
    try:
        for entry in data["nodes"]:
            node = _CLASSES[entry["class"]](group)
            group._children.append(node)
            for name, state in entry["user"]:
                kind = _KNOB_KINDS[state["kind"]]
                extra = [state["items"]] if kind is Enumeration_Knob else []
                knob = kind(name, state["label"], *extra)
                knob._value, knob._flags = state["value"], state["flags"]
                node.addKnob(knob)
            for name, value in entry["knobs"].items():
                if name in node._knobs:
                    node._knobs[name]._value = value
                    node._knob_changed(node._knobs[name])
            if "children" in entry:
                _load_group(node, entry["children"])
            made.append(node)
        for node, entry in zip(made, data["nodes"], strict=True):
            node._inputs = [made[i] if i is not None else None for i in entry["inputs"]]
    finally:
        _context.pop()


def reset() -> None:
    """Tests: a new empty session (callbacks, queue, records)."""
    scriptClear()
    _before_render.clear()
    _main_queue.clear()
    messages.clear()
    menus.clear()
    plugin_paths.clear()
    ProgressTask.instances.clear()
    global GUI
    GUI = True
