"""The operators: Colorize shot (modal on a window-manager timer; a blocking loop in
background mode), Cancel, Check engine, and Start / Stop / Open Log of a local engine.

The modal operator is thin (Blender's operator_modal_timer template): `invoke` starts a
`ColorizeSession` and a timer, `modal` steps the session on TIMER events, cancels it on
Esc and passes every other event through, so Blender stays usable while the engine works.
"""

from __future__ import annotations

import os
import time

import bpy

from . import local_engine, preferences
from .session import ColorizeSession, Settings

TICK_S = 0.05
_active: dict[str, ColorizeSession] = {}  # scene name -> the run in progress (the panel reads it)
_engine_state = {"text": "not checked"}
last_run: dict = {}  # scene name -> the last session that ended (scripts read its figures)


def active_session(scene) -> ColorizeSession | None:
    return _active.get(scene.name)


def connection_state() -> str:
    return _engine_state["text"]


def parse_frames(text: str) -> list[int]:
    """'1001, 1040' (commas or spaces) -> [1001, 1040]; raises ValueError naming the bad part."""
    numbers = []
    for part in text.replace(",", " ").split():
        try:
            numbers.append(int(part))
        except ValueError:
            raise ValueError(f"key frames: {part!r} is not a frame number (write e.g. 1001, 1040)") from None
    return numbers


def settings_from(context, obj_name: str | None = None) -> Settings:
    scene = context.scene
    props = scene.longanim
    prefs = preferences.get(context)
    obj = bpy.data.objects.get(obj_name) if obj_name else context.active_object
    name = obj.name if obj is not None else (obj_name or "")
    first, last = ((scene.frame_start, scene.frame_end) if props.use_scene_range
                   else (props.frame_start, props.frame_end))
    out_dir = props.output_dir or "//"
    if out_dir.startswith("//") and not bpy.data.filepath:
        out_dir = ""  # relative to an unsaved .blend: nowhere yet
    else:
        out_dir = os.path.normpath(bpy.path.abspath(out_dir))
    return Settings(
        url=prefs.engine_url, object_name=name, frame_start=first, frame_end=last,
        key_frames=parse_frames(props.key_frames),
        key_image=bpy.path.abspath(props.key_image) if props.key_source == "IMAGE" else "",
        output_dir=out_dir, output_name=bpy.path.clean_name(props.output_name or name),
        output_ext=props.output_format.lower(),
        backend=prefs.backend, timeout=prefs.timeout, curve_dir=bpy.path.abspath(prefs.curve_dir),
        use_cache=props.use_cache, path_roots=[bpy.path.abspath(r) for r in prefs.roots()])


class LONGANIM_OT_colorize_shot(bpy.types.Operator):
    """Colorize the Grease Pencil object's frame range through the longanim engine, from a painted keyframe"""

    bl_idname = "longanim.colorize_shot"
    bl_label = "Colorize Shot"
    bl_options = {"REGISTER"}

    object_name: bpy.props.StringProperty(name="Object", default="",
                                          description="Grease Pencil object (empty: the active object)")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.name not in _active

    def _start(self, context) -> ColorizeSession | None:
        try:
            settings = settings_from(context, self.object_name or None)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        session = ColorizeSession(settings, context.scene, report=lambda kind, text: self.report({kind}, text))
        self._session = session
        if not session.finished:
            _active[context.scene.name] = session
        return session

    def execute(self, context):
        """Background mode and scripts: the same steps, in a loop, until the frames exist."""
        session = self._start(context)
        if session is None:
            return {"CANCELLED"}
        last_print = 0.0
        while not session.finished:
            session.tick()
            if session.state in ("connect", "drain", "finish", "cancelling"):
                time.sleep(0.01)
            if time.monotonic() - last_print > 1.0 or session.finished:
                print(session.status_text(), flush=True)
                last_print = time.monotonic()
        return self._finish(context)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        session = self._start(context)
        if session is None:
            return {"CANCELLED"}
        if session.finished:
            return self._finish(context)
        self._begin_modal(context)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _begin_modal(self, context) -> None:
        """The timer whose TIMER events step the session, and the progress bar."""
        wm = context.window_manager
        self._timer = wm.event_timer_add(TICK_S, window=context.window)
        wm.progress_begin(0, 100)

    def modal(self, context, event):
        session = self._session
        if event.type == "ESC" and event.value == "PRESS":
            session.cancel()
        elif event.type == "TIMER":
            session.tick()
            self._show(context, session)
        if session.finished:
            return self._finish(context)
        return {"PASS_THROUGH"}

    def cancel(self, context):  # Blender ends the operator (file load, window closed)
        self._session.cancel()
        self._session.close()
        self._finish(context)

    def _show(self, context, session) -> None:
        wm = context.window_manager
        wm.progress_update(int(100 * session.progress))
        if context.workspace is not None:
            context.workspace.status_text_set(session.status_text())
        for area in getattr(context.screen, "areas", ()):
            if area.type in ("VIEW_3D", "PROPERTIES", "NODE_EDITOR"):
                area.tag_redraw()

    def _finish(self, context):
        session = self._session
        _active.pop(context.scene.name, None)
        last_run[context.scene.name] = session
        timer = getattr(self, "_timer", None)
        if timer is not None:
            context.window_manager.event_timer_remove(timer)
            self._timer = None
            context.window_manager.progress_end()
            if context.workspace is not None:
                context.workspace.status_text_set(None)
        return {"FINISHED"} if session.outcome == "done" else {"CANCELLED"}


class LONGANIM_OT_cancel_colorize(bpy.types.Operator):
    """Cancel the colorize job of this scene (the engine job too)"""

    bl_idname = "longanim.cancel_colorize"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.name in _active

    def execute(self, context):
        _active[context.scene.name].cancel()
        return {"FINISHED"}


class LONGANIM_OT_check_engine(bpy.types.Operator):
    """Ask the engine for its version (the answer shows in the preferences and the panel)"""

    bl_idname = "longanim.check_engine"
    bl_label = "Check Engine"

    def execute(self, context):
        from .protocol.client import EngineClient

        prefs = preferences.get(context)
        client = EngineClient(prefs.engine_url, timeout=min(prefs.timeout, 3.0), client_name="longanim-blender")
        hello = client.hello(wait=False)
        _engine_state["text"] = f"checking {prefs.engine_url}..."

        def poll_hello():  # bpy.app.timers: returns at once each call
            client.poll()
            if not hello.done:
                return 0.1
            if hello.error is None:
                info = client.engine_info
                _engine_state["text"] = (f"up: engine {info.get('engine_version', '?')}, protocol "
                                         f"{info.get('protocol_version', '?')}")
            elif hello.error.code == "incompatible_version":
                _engine_state["text"] = f"version mismatch: {hello.error.message}"
            else:
                _engine_state["text"] = f"down: nothing answers at {prefs.engine_url}"
            client.close()
            return None

        bpy.app.timers.register(poll_hello)
        return {"FINISHED"}


class LONGANIM_OT_start_engine(bpy.types.Operator):
    """Start `longanim serve` on this machine at the engine address (stopped again on Stop,
    when the add-on is disabled and when Blender quits)"""

    bl_idname = "longanim.start_engine"
    bl_label = "Start Local Engine"

    wait_s: bpy.props.FloatProperty(name="Wait", default=60.0, min=0.0,
                                    description="Background mode: seconds to wait until the engine answers")

    def execute(self, context):
        prefs = preferences.get(context)
        if not prefs.engine_url.startswith(("tcp://127.0.0.1:", "tcp://localhost:", "ipc://")):
            self.report({"ERROR"}, f"a local engine listens on this machine only; set the engine address to "
                        f"tcp://127.0.0.1:PORT (it is {prefs.engine_url})")
            return {"CANCELLED"}
        try:
            local_engine.start(bpy.path.abspath(prefs.engine_python), prefs.engine_url,
                               [bpy.path.abspath(r) for r in prefs.roots()], engine_folder())
        except (ValueError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.app.background:  # a script goes on to colorize: wait until it answers
            error = wait_until_up(prefs.engine_url, self.wait_s)
            if error:
                self.report({"ERROR"}, error)
                return {"CANCELLED"}
            self.report({"INFO"}, f"Local engine up at {prefs.engine_url} (log {local_engine.log_path()})")
        else:
            bpy.ops.longanim.check_engine()
        return {"FINISHED"}


def engine_folder():
    """Where the local engine's log and shutdown token go (the extension's user folder)."""
    from pathlib import Path

    return Path(bpy.utils.extension_path_user(__package__, create=True))


def wait_until_up(url: str, wait_s: float) -> str | None:
    """Blocking (background mode only): None once the engine answers, else why not."""
    from .protocol.client import EngineClient, EngineError

    deadline = time.monotonic() + wait_s
    with EngineClient(url, timeout=1.0, client_name="longanim-blender") as client:
        while time.monotonic() < deadline:
            if not local_engine.running():
                return f"the local engine {local_engine.state()}:\n" + "\n".join(local_engine.log_tail())
            try:
                client.ping(timeout=1.0)
                return None
            except EngineError:
                continue
    return f"the local engine did not answer within {wait_s:.0f} s; see {local_engine.log_path()}"


class LONGANIM_OT_stop_engine(bpy.types.Operator):
    """Stop the engine started with Start"""

    bl_idname = "longanim.stop_engine"
    bl_label = "Stop Local Engine"

    def execute(self, context):
        code = local_engine.stop()
        _engine_state["text"] = "not checked"
        self.report({"INFO"}, "no local engine was started" if code is None else f"local engine stopped ({code})")
        return {"FINISHED"}


class LONGANIM_OT_open_engine_log(bpy.types.Operator):
    """Open the local engine's log in the system's text viewer"""

    bl_idname = "longanim.open_engine_log"
    bl_label = "Open Engine Log"

    def execute(self, context):
        path = local_engine.log_path()
        if path is None:
            self.report({"ERROR"}, "no local engine was started")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=str(path))
        return {"FINISHED"}


classes = (LONGANIM_OT_colorize_shot, LONGANIM_OT_cancel_colorize, LONGANIM_OT_check_engine,
           LONGANIM_OT_start_engine, LONGANIM_OT_stop_engine, LONGANIM_OT_open_engine_log)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    for session in list(_active.values()):
        session.cancel()
        session.close()
    _active.clear()
    local_engine.stop()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
