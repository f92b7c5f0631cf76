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
- Scripts: `scriptSave(path)` writes a .nk script as Nuke does (its syntax: nk_syntax.py):
  the `#!` line and `version`, a `Root { ... }` block (name, format, frame range, colour
  management), then each node as `Class { knob value ... }` in an order where its inputs
  come first, connected through Nuke's node stack (a node pops its `inputs` from the stack,
  input 0 from the top, and is pushed; `set N.. [stack 0]` names a node, `push $N..` and
  `push 0` put a node or no input back), a Group's nodes after it, one level deeper, up to
  `end_group`. Inside a node: `inputs N` where N is not the class's default, the built-in
  knobs whose value differs from the default, `name`, `xpos`, `ypos`, then each user knob
  as `addUserKnob {ID name l label t tooltip M {items} T text +FLAG -FLAG}` (IDs: 1 String,
  2 File, 3 Int, 4 Enumeration, 6 Boolean, 20 Tab, 22 PyScript, 26 Text; `l` only when the
  label is not the name; a Text knob's text and a button's command in T) followed by
  `name value` where the value is not the kind's default. Values are Tcl words (bare,
  quoted with escapes, booleans `true`/`false`). `scriptClear()`; `scriptOpen(path)` runs
  such a script again into new node objects (Python state kept on old ones is gone); an
  unknown command, node class or knob is an error, as Nuke reports one. Not modelled:
  expressions, animation, clones, layouts, knobs the plug-in does not use.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nk_syntax
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
    default_flags = STARTLINE  # a knob starts a new line of the panel, except a button
    user_id = 0  # its type in an addUserKnob line

    def __init__(self, name: str, label: str | None = None, value: Any = None):
        _main_only("Knob")
        self._name, self._label = name, name if label is None else label
        self._value = self.default if value is None else value
        self._flags = self.default_flags
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

    def _to_text(self) -> str:
        """The value as the .nk writes it (before quoting)."""
        return str(self._value)

    def _from_text(self, text: str) -> Any:
        return self._coerce(text)


class String_Knob(Knob):
    user_id = 1


class File_Knob(Knob):
    user_id = 2


class Text_Knob(Knob):
    user_id = 26

    def __init__(self, name: str, label: str | None = None, text: str = ""):
        super().__init__(name, label, text)


class Tab_Knob(Knob):
    user_id = 20


class Int_Knob(Knob):
    default = 0
    user_id = 3

    def _coerce(self, value: Any) -> int:
        return int(value)


class Boolean_Knob(Knob):
    default = False
    user_id = 6

    def _coerce(self, value: Any) -> bool:
        return bool(value)

    def _to_text(self) -> str:
        return "true" if self._value else "false"

    def _from_text(self, text: str) -> bool:
        if text not in ("true", "false", "1", "0"):
            raise ValueError(f"{self._name}: '{text}' is not a boolean (true or false)")
        return text in ("true", "1")


class Enumeration_Knob(Knob):
    user_id = 4

    def __init__(self, name: str, label: str | None = None, items: list[str] | None = None):
        self.items = list(items or [])
        super().__init__(name, label, self.items[0] if self.items else "")

    def _coerce(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return self.items[value]
        if value not in self.items:
            raise ValueError(f"{self._name}: '{value}' is not one of {self.items}")
        return str(value)


class Script_Knob(Knob):
    """A button (a Read's reload is one)."""

    default_flags = 0

    def execute(self) -> None:
        raise NotImplementedError


class PyScript_Knob(Script_Knob):
    """A button: `execute()` runs its Python with `thisNode()` the knob's node."""

    user_id = 22

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


_USER_KNOBS = {k.user_id: k for k in (String_Knob, File_Knob, Text_Knob, Tab_Knob, Int_Knob, Boolean_Knob,
                                      Enumeration_Knob, PyScript_Knob)}
_FLAG_NAMES = {"INVISIBLE": INVISIBLE, "STARTLINE": STARTLINE, "READ_ONLY": READ_ONLY}


# -- nodes ----------------------------------------------------------------------------------------

class Node:
    _class = "Node"
    max_inputs: int | None = None  # (None: as many as connected)

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
        self._defaults = {name: knob._value for name, knob in self._knobs.items()}  # not written to a .nk

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
        self._defaults = {name: knob._value for name, knob in self._knobs.items()}


class Input(Node):
    _class = "Input"
    max_inputs = 0

    def __init__(self, parent: Group | None):
        super().__init__(parent)
        self._defaults["number"] = 0  # a .nk names every Input's number but the first's

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
    max_inputs = 0

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


# -- saving and opening scripts (.nk) ---------------------------------------------------------------

_NK_VERSION = "16.0 v2"


def scriptSave(path: str) -> bool:
    _main_only("scriptSave")
    _root["name"].setValue(str(path))
    lines = [f"#! {EXE_PATH} -nx", f"version {_NK_VERSION}", *_root_lines(), *_group_lines(_root, 0, {})]
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, target)  # (Nuke too writes a new file, then renames it over the script)
    return True


def _root_lines() -> list[str]:
    w, h = _root.format
    lines = ["Root {", " inputs 0", f" name {nk_syntax.word(_root['name'].value())}",
             f" format {nk_syntax.word(f'{w} {h} 0 0 {w} {h} 1')}"]
    for name, knob in _root._knobs.items():
        if name not in ("name", "label", "xpos", "ypos", "disable") and knob._value != _root._defaults.get(name):
            lines.append(f" {name} {nk_syntax.word(knob._to_text())}")
    return [*lines, "}"]


def _write_order(group: Group) -> list[Node]:
    """The group's nodes with each one's inputs before it (creation order otherwise)."""
    order: list[Node] = []
    seen: set[int] = set()

    def visit(n: Node) -> None:
        if id(n) in seen or n.parent is not group:
            return
        seen.add(id(n))
        for up in n._inputs:
            if up is not None:
                visit(up)
        order.append(n)

    for n in group._children:
        visit(n)
    return order


def _group_lines(group: Group, depth: int, var: dict[int, str]) -> list[str]:
    """The group's nodes; `var` names (script-wide) the nodes that are pushed again."""
    pad = " " * depth
    order = _write_order(group)
    # A node's single input written just before it is on the stack already; every other
    # input is pushed again by name (input 0 last: the top of the stack).
    pushes = [[] if len(n._inputs) == 1 and i > 0 and n._inputs[0] is order[i - 1] else list(reversed(n._inputs))
              for i, n in enumerate(order)]
    for up in (up for ups in pushes for up in ups if up is not None):
        var.setdefault(id(up), f"N{len(var):08x}")
    lines: list[str] = []
    for n, ups in zip(order, pushes, strict=True):
        lines += [f"{pad}push {'$' + var[id(up)] if up is not None else '0'}" for up in ups]
        lines += _node_lines(n, pad)
        if isinstance(n, Group):
            lines += _group_lines(n, depth + 1, var)
            lines.append(f"{pad}end_group")
        if id(n) in var:
            lines.append(f"{pad}set {var[id(n)]} [stack 0]")
    return lines


def _node_lines(n: Node, pad: str) -> list[str]:
    w = nk_syntax.word
    lines = [f"{pad}{n.Class()} {{"]
    if len(n._inputs) != 1:  # (Nuke writes `inputs 0` for a Read too)
        lines.append(f"{pad} inputs {len(n._inputs)}")
    for name, knob in n._knobs.items():
        if (name not in n._user and name not in ("name", "xpos", "ypos") and not isinstance(knob, _Button)
                and knob._value != n._defaults.get(name, _user_default(knob))):  # (or added later: a Write's datatype)
            lines.append(f"{pad} {name} {w(knob._to_text())}")
    lines += [f"{pad} name {w(n.name())}", f"{pad} xpos {n.xpos()}", f"{pad} ypos {n.ypos()}"]
    for name in n._user:
        knob = n._knobs[name]
        spec = [str(knob.user_id), w(name)]
        if knob._label != name:
            spec += ["l", w(knob._label)]
        if knob._tooltip:
            spec += ["t", w(knob._tooltip)]
        if isinstance(knob, Enumeration_Knob):
            spec += ["M", nk_syntax.words_list(knob.items)]
        if isinstance(knob, (Text_Knob, PyScript_Knob)):
            spec += ["T", w(knob._value)]
        for flag_name, flag in _FLAG_NAMES.items():
            if knob.getFlag(flag) != bool(knob.default_flags & flag):
                spec.append(("+" if knob.getFlag(flag) else "-") + flag_name)
        lines.append(f"{pad} addUserKnob {{{' '.join(spec)}}}")
        if not isinstance(knob, (Text_Knob, Script_Knob, Tab_Knob)) and knob._value != _user_default(knob):
            lines.append(f"{pad} {name} {w(knob._to_text())}")
    return [*lines, f"{pad}}}"]


def _user_default(knob: Knob) -> Any:
    return knob.items[0] if isinstance(knob, Enumeration_Knob) and knob.items else knob.default


def scriptClear() -> None:
    _main_only("scriptClear")
    global _root
    _root = Root()
    _context[:] = [_root]


def scriptOpen(path: str) -> None:
    """Runs the .nk at `path` into a cleared session; a line Nuke would not understand
    raises RuntimeError naming the file and what is wrong."""
    _main_only("scriptOpen")
    scriptClear()
    try:
        _run_script(nk_syntax.commands(Path(path).read_text()))
    except (nk_syntax.NkSyntaxError, ValueError, KeyError, IndexError) as exc:
        raise RuntimeError(f"{path}: {exc}") from exc
    _root["name"].setValue(str(path))


def _run_script(script: list[list[str]]) -> None:
    groups: list[Group] = [_root]
    stacks: list[list[Node | None]] = [[]]
    names: dict[str, Node | None] = {}
    for words in script:
        head = words[0]
        if head == "version":
            continue
        if head == "Root":
            _root_knobs(words[1])
        elif head == "set":
            if words[2:] != ["[stack 0]"]:
                raise ValueError(f"set {' '.join(words[1:])}: only `set NAME [stack 0]` is modelled")
            names[words[1]] = stacks[-1][-1]
        elif head == "push":
            stacks[-1].append(None if words[1] == "0" else names[words[1].lstrip("$")])
        elif head == "end_group":
            if len(groups) == 1:
                raise ValueError("end_group outside a group")
            groups.pop()
            stacks.pop()
        elif head in _CLASSES and len(words) == 2:
            made = _run_node(head, words[1], groups[-1], stacks[-1])
            if isinstance(made, Group):
                groups.append(made)
                stacks.append([])
        else:
            raise ValueError(f"{head}: unknown command")
    if len(groups) > 1:
        raise ValueError(f"group {groups[-1].name()} has no end_group")


def _root_knobs(body: str) -> None:
    for words in nk_syntax.commands(body):
        name, value = words[0], words[1]
        if name == "inputs":
            continue
        if name == "format":
            w, h = (int(v) for v in value.split()[:2])
            _root.format = (w, h)
        elif name in _root._knobs:
            _root._knobs[name]._value = _root._knobs[name]._from_text(value)
        else:
            raise ValueError(f"Root: no knob named {name}")


def _run_node(cls: str, body: str, group: Group, stack: list[Node | None]) -> Node:
    """One `Class { ... }` command: the node is made in `group`, takes its inputs off the
    stack (input 0 first) and goes on it."""
    _context.append(group)
    try:
        node = _CLASSES[cls](group)
        group._children.append(node)
        inputs = 1
        for words in nk_syntax.commands(body):
            name = words[0]
            if name == "inputs":
                inputs = int(words[1])
            elif name == "addUserKnob":
                node.addKnob(_user_knob(nk_syntax.commands(words[1])[0]))
            elif name in node._knobs and len(words) == 2:
                knob = node._knobs[name]
                knob._value = knob._from_text(words[1])
                node._knob_changed(knob)
            else:
                raise ValueError(f"{cls}: no knob named {name}")
    finally:
        _context.pop()
    if node.max_inputs is not None:
        inputs = min(inputs, node.max_inputs)
    taken = [stack.pop() if stack else None for _ in range(inputs)]
    while taken and taken[-1] is None:
        taken.pop()
    node._inputs = taken
    stack.append(node)
    return node


def _user_knob(spec: list[str]) -> Knob:
    kind = _USER_KNOBS.get(int(spec[0]))
    if kind is None:
        raise ValueError(f"addUserKnob: knob type {spec[0]} is not one the fake models")
    name, label, tooltip, items, text, flags = spec[1], None, "", [], "", []
    rest = iter(spec[2:])
    for key in rest:
        if key in ("l", "t", "M", "T"):
            value = next(rest)
            if key == "l":
                label = value
            elif key == "t":
                tooltip = value
            elif key == "M":
                items = nk_syntax.commands(value)[0] if value.strip() else []
            else:
                text = value
        elif key[:1] in "+-" and key[1:] in _FLAG_NAMES:
            flags.append(key)
        else:
            raise ValueError(f"addUserKnob {name}: '{key}' is not understood")
    if kind is Enumeration_Knob:
        knob: Knob = Enumeration_Knob(name, label, items)
    elif kind in (Text_Knob, PyScript_Knob):
        knob = kind(name, label, text)
    else:
        knob = kind(name, label)
    knob._tooltip = tooltip
    for flag in flags:
        (knob.setFlag if flag[0] == "+" else knob.clearFlag)(_FLAG_NAMES[flag[1:]])
    return knob


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
