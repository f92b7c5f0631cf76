"""The operators: Colorize shot (modal on a window-manager timer; a blocking loop in
background mode), Cancel, and Check engine.

The modal operator is thin (Blender's operator_modal_timer template): `invoke` starts a
`ColorizeSession` and a timer, `modal` steps the session on TIMER events, cancels it on
Esc and passes every other event through, so Blender stays usable while the engine works.
"""

from __future__ import annotations

import os
import sys
import time

import bpy

from . import preferences
from .session import ColorizeSession, Settings

TICK_S = 0.05
_active: dict[str, ColorizeSession] = {}  # scene name -> the run in progress (the panel reads it)
_engine_state = {"text": "not checked"}
last_run: dict = {}  # scene name -> the last session that ended (scripts read its figures)


def active_session(scene) -> ColorizeSession | None:
    return _active.get(scene.name)


def connection_state() -> str:
    return _engine_state["text"]


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
        key_frame=props.key_frame,
        key_image=bpy.path.abspath(props.key_image) if props.key_source == "IMAGE" else "",
        output_dir=out_dir, output_name=bpy.path.clean_name(props.output_name or name),
        backend=prefs.backend, timeout=prefs.timeout, curve_dir=bpy.path.abspath(prefs.curve_dir),
        use_cache=props.use_cache)


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

    def _start(self, context) -> ColorizeSession:
        session = ColorizeSession(settings_from(context, self.object_name or None), context.scene,
                                  report=lambda kind, text: self.report({kind}, text))
        self._session = session
        if not session.finished:
            _active[context.scene.name] = session
        return session

    def execute(self, context):
        """Background mode and scripts: the same steps, in a loop, until the frames exist."""
        session = self._start(context)
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
        if session.finished:
            return self._finish(context)
        wm = context.window_manager
        self._timer = wm.event_timer_add(TICK_S, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

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


classes = (LONGANIM_OT_colorize_shot, LONGANIM_OT_cancel_colorize, LONGANIM_OT_check_engine)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    for session in list(_active.values()):
        session.cancel()
        session.close()
    _active.clear()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
