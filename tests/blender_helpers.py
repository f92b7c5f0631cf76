"""Real Blender for the extension's tests: a Python with `bpy` (Blender as a module), and the
Blender-side driver that runs inside it.

bpy (5.0.1 and 4.5.15 LTS) needs numpy < 2 while the project's environment has numpy >= 2
(opencv), so each bpy lives in a virtual environment of its own, as Blender's Python lives
apart from the engine's in real use: `$LONGANIM_BPY_PYTHON` if set, else
plugins/blender/build/bpy-VERSION (made here with `pip install bpy==VERSION` on first use;
`LONGANIM_BPY_INSTALL=0` forbids that). Those venvs have no pyzmq or msgpack: the extension
installs them from its own wheels.

Run as a script by that Python (`python blender_helpers.py SPEC.json`), this file is the
driver: it installs the built extension zip, builds a Grease Pencil scene, and runs the
scenarios the spec names, writing what it saw to the spec's `out` JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BPY_VERSIONS = ("5.0.1", "4.5.15")  # Blender 5.x and 4.5 LTS, both on Python 3.11 as modules
BUILD = REPO / "plugins" / "blender" / "build"
OBJECT = "Character"
FRAMES = (1001, 1024)  # 24 frames, film-style numbering
RESOLUTION = (320, 180)
# Fills of the painted keyframe (sRGB 0-255); lines are black.
SKIN = (240, 170, 120)
SHIRT = (40, 90, 200)
BALL = (60, 180, 70)  # a ball that appears at BALL_FROM: only the second keyframe shows its color
BALL_FROM = 1013
KEY_FRAMES = (FRAMES[0], FRAMES[1])  # both painted (rendered with fills on)


def bpy_versions() -> list[str]:
    """The Blender versions the tests run in: `$LONGANIM_BPY_VERSIONS` (comma-separated), else
    5.0 and 4.5 LTS; with `$LONGANIM_BPY_PYTHON` only that Python ("env")."""
    if os.environ.get("LONGANIM_BPY_PYTHON"):
        return ["env"]
    return [v.strip() for v in os.environ.get("LONGANIM_BPY_VERSIONS", ",".join(BPY_VERSIONS)).split(",") if v.strip()]


def bpy_python(version: str = BPY_VERSIONS[0]) -> tuple[str | None, str]:
    """(path of a Python that imports bpy `version`, or None, and why not / how it was found)."""
    explicit = os.environ.get("LONGANIM_BPY_PYTHON")
    if explicit:
        return explicit, "LONGANIM_BPY_PYTHON"
    venv = BUILD / f"bpy-{version}"
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if py.exists() and _imports_bpy(py):
        return str(py), f"{venv}"
    if os.environ.get("LONGANIM_BPY_INSTALL") == "0":
        return None, "no bpy Python (set LONGANIM_BPY_PYTHON, or allow installing with LONGANIM_BPY_INSTALL=1)"
    t0 = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", f"bpy=={version}"],
                              capture_output=True, text=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not make a bpy venv: {exc}"
    if proc.returncode != 0 or not _imports_bpy(py):
        return None, f"pip install bpy=={version} failed (registry unreachable?): {proc.stderr.strip()[-500:]}"
    return str(py), f"installed bpy {version} into {venv} in {time.monotonic() - t0:.0f} s"


def _imports_bpy(py: Path) -> bool:
    try:
        return subprocess.run([str(py), "-c", "import bpy"], capture_output=True, timeout=120).returncode == 0
    except (subprocess.SubprocessError, OSError):
        return False


class BlenderCrashed(AssertionError):
    """Blender itself died of a signal (bpy 4.5.15 on software OpenGL now and then segfaults
    after EGL_BAD_MATCH, here as on CI), as opposed to a step that failed."""


def run_driver(python: str, spec: dict, tmp: Path, timeout: float = 170.0) -> dict:
    """Run this file in the bpy Python with `spec`; returns the JSON it wrote."""
    spec_path = tmp / "spec.json"
    spec = {**spec, "out": str(tmp / "driver-out.json")}
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp / "blender-user"), "PYTHONNOUSERSITE": "1",
           "XDG_CACHE_HOME": str(tmp / "xdg-cache")}  # a local engine's result cache stays in tmp
    env.pop("PYTHONPATH", None)  # nothing of the project's environment: the extension brings its own
    proc = subprocess.run([python, str(Path(__file__)), str(spec_path)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(tmp))
    log = (proc.stdout + proc.stderr)[-6000:]
    (tmp / "driver.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode < 0:
        raise BlenderCrashed(f"Blender died of signal {-proc.returncode}:\n{log}")
    if proc.returncode != 0:
        raise AssertionError(f"the Blender driver failed ({proc.returncode}):\n{log}")
    out = json.loads(Path(spec["out"]).read_text())
    out["log"] = log
    return out


# ---- everything below runs inside Blender -------------------------------------------------

def _build_scene(bpy, folder: Path):
    """A character (head + body, black strokes, filled) walking right and bobbing over 24 frames."""
    import math

    for leftover in list(bpy.data.objects):  # the startup file's cube, light and camera
        bpy.data.objects.remove(leftover)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = FRAMES
    scene.render.resolution_x, scene.render.resolution_y = RESOLUTION
    scene.render.resolution_percentage = 100
    data = bpy.data.grease_pencils_v3.new(OBJECT) if hasattr(bpy.data, "grease_pencils_v3") \
        else bpy.data.grease_pencils.new(OBJECT)
    obj = bpy.data.objects.new(OBJECT, data)
    scene.collection.objects.link(obj)
    for name, fill in (("Skin", SKIN), ("Shirt", SHIRT), ("Ball", BALL)):
        mat = bpy.data.materials.new(name)
        bpy.data.materials.create_gpencil_data(mat)
        gp = mat.grease_pencil
        gp.show_stroke, gp.show_fill = True, True
        gp.color = (0, 0, 0, 1)
        gp.fill_color = tuple(_linear(c / 255.0) for c in fill) + (1.0,)
        data.materials.append(mat)
    layer = data.layers.new("Ink")
    for i, number in enumerate(range(FRAMES[0], FRAMES[1] + 1)):
        drawing = layer.frames.new(number).drawing
        x = -1.6 + 0.12 * i
        z = 0.08 * math.sin(i * 0.8)
        head = [(x + 0.45 * math.cos(2 * math.pi * k / 32), 0, 0.85 + z + 0.45 * math.sin(2 * math.pi * k / 32))
                for k in range(32)]
        body = [(x - 0.5, 0, 0.3 + z), (x + 0.5, 0, 0.3 + z), (x + 0.6, 0, -1.0 + z), (x - 0.6, 0, -1.0 + z)]
        parts = [(head, 0), (body, 1)]
        if number >= BALL_FROM:  # a ball rolls in behind the character
            bx = 1.7 - 0.05 * (number - BALL_FROM)
            parts.append(([(bx + 0.3 * math.cos(2 * math.pi * k / 24), 0, -0.7 + 0.3 * math.sin(2 * math.pi * k / 24))
                           for k in range(24)], 2))
        for points, material in parts:
            drawing.add_strokes([len(points)])
            stroke = drawing.strokes[len(drawing.strokes) - 1]
            for p, pos in zip(stroke.points, points):
                p.position, p.radius = pos, 0.03
            stroke.cyclic, stroke.material_index = True, material
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location, cam.rotation_euler = (0, -9, 0), (math.pi / 2, 0, 0)
    blend = folder / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    return scene, obj, blend


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


class _Event:
    def __init__(self, type, value="NOTHING"):
        self.type, self.value = type, value


def _blocking_main_thread(bpy, scene, seconds: float) -> int:
    """What an F12 render in a script, or a long dialog, does to the add-on: Blender's main
    thread is busy for `seconds` and no timer fires. The scene is evaluated frame after frame
    (depsgraph work on the main thread, as scrubbing or a bake does), without opening more
    OpenGL work than the add-on's own renders on software OpenGL."""
    before, first, last = scene.frame_current, scene.frame_start, scene.frame_end
    t0, n = time.monotonic(), 0
    try:
        while time.monotonic() - t0 < seconds:
            scene.frame_set(first + n % (last - first + 1))
            n += 1
    finally:
        scene.frame_set(before)
    return n


def _drive_modal(bpy, op_cls, object_name: str, cancel_after_results: int | None = None,
                 pause: dict | None = None, tick_s: float = 0.05, limit_s: float = 120.0) -> dict:
    """The operator's own methods, as `invoke` and the window manager would call them:
    `_start` and `_begin_modal` (a real window-manager timer and progress bar, on the
    startup file's window), then `modal` with a TIMER event every `tick_s`, an ESC press to
    cancel, and `_finish` (which removes the real timer). What stays unexercised: bpy as a
    module has no event loop, so Blender itself neither delivers the timer's events nor
    calls invoke (an INVOKE call without a window's event state is refused), and
    modal_handler_add needs an operator instance that only Blender creates."""
    reports = []

    class Driver:  # stands in for the operator instance: the methods are the operator's
        pass

    driver = Driver()
    driver.object_name = object_name
    driver.report = lambda kind, text: reports.append((sorted(kind)[0], text))
    for name in ("_start", "_begin_modal", "modal", "_show", "_finish", "cancel"):
        setattr(Driver, name, getattr(op_cls, name))
    window = bpy.context.window_manager.windows[0]
    paused, hitched = {}, False
    with bpy.context.temp_override(window=window):
        ctx = bpy.context
        t0 = time.monotonic()
        session = driver._start(ctx)
        driver._begin_modal(ctx)
        timer_real = type(driver._timer).__name__
        ret, esc_sent, job_id = None, False, None
        while time.monotonic() - t0 < limit_s:
            started = time.monotonic()
            if (pause and not hitched and session.rendered >= pause["at_rendered"] and session.job is not None
                    and session.job.id is None):
                # The client sends frames that come faster than its flush interval (0.5 s) in one
                # message: a short hitch first makes it submit what it holds, so the long pause
                # below finds a job the engine holds open for more frames.
                time.sleep(1.0)
                hitched = True
            if (pause and not paused and session.state == "render" and session.job is not None
                    and session.job.id is not None and session.rendered >= pause["at_rendered"]):
                # the engine holds the job and waits for the frames still to come
                paused = {"job_id": session.job.id, "state": session.state, "rendered": session.rendered,
                          "results": session.results}
                t = time.monotonic()
                paused["evaluations"] = _blocking_main_thread(bpy, ctx.scene, pause["seconds"])
                paused["seconds"] = time.monotonic() - t
            if cancel_after_results is not None and not esc_sent and session.results >= cancel_after_results:
                job_id = session.job.id
                ret = driver.modal(ctx, _Event("ESC", "PRESS"))
                esc_sent = True
            else:
                ret = driver.modal(ctx, _Event("TIMER"))
            if ret != {"PASS_THROUGH"}:
                break
            time.sleep(max(0.0, tick_s - (time.monotonic() - started)))
        timer_removed = driver._timer is None
    by_state: dict[str, list[float]] = {}
    for state, seconds in session.tick_times:
        by_state.setdefault(state, []).append(seconds)
    return {"ret": sorted(ret or []), "outcome": session.outcome, "message": session.message,
            "reports": reports, "elapsed_s": time.monotonic() - t0, "job_id": job_id or (session.job.id if session.job else None),
            "results": session.results, "cached": session.cached, "rendered": session.rendered,
            "timer": timer_real, "timer_removed": timer_removed, "paused": paused,
            "resubmitted": session.resubmitted, "jobs_lost": session.jobs_lost, "mode": session.mode,
            "coverage": session.coverage, "result_channels": sorted(session.result_channels),
            "tick_max_ms": {k: 1000 * max(v) for k, v in by_state.items()},
            "tick_median_ms": {k: 1000 * sorted(v)[len(v) // 2] for k, v in by_state.items()},
            "ticks": {k: len(v) for k, v in by_state.items()},
            "render_s": [round(r, 4) for r, _ in session.renderer.timings] if session.renderer else [],
            "read_s": [round(r, 4) for _, r in session.renderer.timings] if session.renderer else []}


def _pictures(bpy, module: str, scene, obj, keys: list[int], numbers: list[int], folder: Path) -> dict:
    """The panels of the README's walkthrough picture, each rendered by Blender into
    `folder`: the painted keyframes `keys`, the line art of the last of `numbers` (what the
    engine gets), and each of `numbers` through the scene's compositor with the add-on's node
    group (its Image output; for the last frame its Confidence output too, wired to the
    compositor's output for that render).

    Not a screenshot: bpy as a module runs in background mode, where screen.screenshot
    and screen.screenshot_area refuse to run (their poll fails) and render.opengl has no
    OpenGL context, so no picture of Blender's UI can be made here."""
    import importlib

    lr = importlib.import_module(module + ".lineart_render")
    fr = importlib.import_module(module + ".frames")
    folder.mkdir(parents=True, exist_ok=True)
    renderer = lr.LineartRenderer(scene, obj)
    panels = {f"keyframe.{k}": renderer.render(k, fills=True) for k in keys}
    panels[f"lineart.{numbers[-1]}"] = renderer.render(numbers[-1], fills=False)
    renderer.close()
    tree = getattr(scene, "compositing_node_group", None) or scene.node_tree
    group = tree.nodes["LongAnimation Colorize"]
    output = next(n for n in tree.nodes if n.bl_idname in ("NodeGroupOutput", "CompositorNodeComposite"))
    before = scene.frame_current
    try:
        for number, socket in [(n, "Image") for n in numbers] + [(numbers[-1], "Confidence")]:
            tree.links.new(group.outputs[socket], output.inputs[0])
            path = folder / f"render.{socket.lower()}.{number}.png"
            with lr.isolated_render(scene, obj, fills=False):
                scene.render.use_compositing = True  # (isolated_render puts it back)
                scene.render.filepath = str(path)
                scene.frame_set(number)
                bpy.ops.render.render(write_still=True)
            panels[f"compositor_{socket.lower()}.{number}"] = lr.read_image(str(path))
    finally:
        tree.links.new(group.outputs["Image"], output.inputs[0])
        scene.frame_set(before)
    files = {}
    for name, pixels in panels.items():
        files[name] = str(folder / f"{name}.png")
        fr.write_atomic(Path(files[name]), fr.encode_png(pixels))
    return {"files": files}


def _main(spec_path: str) -> None:
    import importlib

    import bpy

    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec["folder"])
    out: dict = {"bpy": bpy.app.version_string}
    # 1. install and enable the built zip, as Preferences > Install from Disk does
    t = time.monotonic()
    bpy.ops.extensions.package_install_files(filepath=spec["zip"], repo="user_default", enable_on_install=True)
    out["install_s"] = time.monotonic() - t
    module = "bl_ext.user_default.longanim"
    out["enabled"] = module in bpy.context.preferences.addons
    ops = importlib.import_module(module + ".operators")
    import zmq  # from the extension's wheels: nothing else in this Python has it

    out["zmq_from"] = zmq.__file__
    scene, obj, blend = _build_scene(bpy, folder)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    prefs = bpy.context.preferences.addons[module].preferences
    bpy.context.view_layer.objects.active = obj
    defaults = {"props": {name: getattr(scene.longanim, name) for name in
                          ("use_scene_range", "frame_start", "frame_end", "output_dir", "output_format")},
                "prefs": {name: getattr(prefs, name) for name in ("path_roots", "engine_python")}}

    for step in spec["steps"]:
        kind = step["kind"]
        if module in bpy.context.preferences.addons:  # (not after the `disable` step)
            prefs.engine_url = step.get("url", spec.get("url", ""))
            prefs.timeout = step.get("timeout", 5.0)
            scene.longanim.output_name = step.get("name", OBJECT)
            scene.longanim.use_cache = step.get("cache", True)
            scene.longanim.key_frames = step.get("keys", ", ".join(map(str, KEY_FRAMES)))
            for name, value in {**defaults["props"], **step.get("props", {})}.items():
                setattr(scene.longanim, name, value)
            for name, value in {**defaults["prefs"], **step.get("prefs", {})}.items():
                setattr(prefs, name, value)
        if kind == "modal":
            out[step["id"]] = _drive_modal(bpy, ops.LONGANIM_OT_colorize_shot, OBJECT,
                                           cancel_after_results=step.get("cancel_after_results"),
                                           pause=step.get("pause"))
        elif kind == "start_engine":  # Preferences > Start (background mode: waits until it answers)
            ret = bpy.ops.longanim.start_engine(wait_s=90.0)
            local = importlib.import_module(module + ".local_engine")
            out[step["id"]] = {"ret": sorted(ret), "pid": local.pid(), "state": local.state(),
                               "log": str(local.log_path()), "log_tail": local.log_tail()}
        elif kind == "stop_engine":
            local = importlib.import_module(module + ".local_engine")
            pid = local.pid()
            ret = bpy.ops.longanim.stop_engine()
            out[step["id"]] = {"ret": sorted(ret), "pid": pid, "state": local.state()}
        elif kind == "disable":  # Preferences > Add-ons: untick (unregister stops the local engine)
            local = importlib.import_module(module + ".local_engine")
            pid = local.pid()
            bpy.ops.preferences.addon_disable(module=module)
            out[step["id"]] = {"pid": pid, "state": local.state(), "enabled": module in bpy.context.preferences.addons}
        elif kind == "enable":
            bpy.ops.preferences.addon_enable(module=module)
            prefs = bpy.context.preferences.addons[module].preferences
            out[step["id"]] = {"enabled": module in bpy.context.preferences.addons}
        elif kind == "leave_engine":  # the driver ends (Blender quits) with the engine running
            local = importlib.import_module(module + ".local_engine")
            out[step["id"]] = {"pid": local.pid(), "state": local.state()}
        elif kind == "operator":  # a script's / `blender -b --python-expr` call: blocks, raises on failure
            t = time.monotonic()
            try:
                ret = bpy.ops.longanim.colorize_shot(object_name=OBJECT)
                out[step["id"]] = {"ret": sorted(ret), "error": None}
            except RuntimeError as exc:
                out[step["id"]] = {"ret": None, "error": str(exc)}
            out[step["id"]]["elapsed_s"] = time.monotonic() - t
            last = ops.last_run.get(scene.name)
            out[step["id"]]["cached"] = last.cached if last else None
            out[step["id"]]["job_id"] = last.job.id if last and last.job else None
            out[step["id"]]["mode"] = last.mode if last else None
            out[step["id"]]["coverage"] = last.coverage if last else None
            out[step["id"]]["message"] = last.message if last else None
        elif kind == "picture":  # the README's walkthrough picture, rendered by Blender
            out[step["id"]] = _pictures(bpy, module, scene, obj, step["painted"], step["frames"], Path(step["dir"]))
        elif kind == "truth":  # the same frames rendered with their fills on: what the colors should be
            from importlib import import_module

            lr = import_module(module + ".lineart_render")
            fr = import_module(module + ".frames")
            renderer = lr.LineartRenderer(scene, obj)
            for n in step["frames"]:
                fr.write_atomic(Path(step["dir"]) / f"truth.{n:04d}.png", fr.encode_png(renderer.render(n, fills=True)))
            renderer.close()
        elif kind == "inspect":
            group = bpy.data.node_groups.get("LongAnimation Colorize")
            info = {"group": group is not None}
            if group is not None:
                info["outputs"] = [s.name for s in group.interface.items_tree if getattr(s, "in_out", "") == "OUTPUT"]
                info["inputs"] = [s.name for s in group.interface.items_tree if getattr(s, "in_out", "") == "INPUT"]
                nodes = {n.name: n for n in group.nodes}
                col = nodes.get("Colored")
                info["colored_image"] = bpy.path.abspath(col.image.filepath) if col and col.image else None
                info["colored_source"] = col.image.source if col and col.image else None
                info["colored_range"] = [col.frame_start, col.frame_offset, col.frame_duration] if col else None
                conf = nodes.get("Confidence")
                info["confidence_image"] = bpy.path.abspath(conf.image.filepath) if conf and conf.image else None
                over = nodes.get("Over Line Art")
                info["over_inputs"] = [[i, sock.name, [l.from_node.name for l in sock.links]]
                                       for i, sock in enumerate(over.inputs)] if over else None
                info["links"] = sorted(f"{l.from_node.name}.{l.from_socket.name}->{l.to_node.name}.{l.to_socket.name}"
                                       for l in group.links)
                info["colored_colorspace"] = col.image.colorspace_settings.name if col and col.image else None
                tree = getattr(scene, "compositing_node_group", None) or getattr(scene, "node_tree", None)
                info["scene_node"] = bool(tree and tree.nodes.get("LongAnimation Colorize"))
                # the restored scene: the isolated render must leave nothing changed
                info["scene_after"] = [scene.render.engine, scene.view_settings.view_transform,
                                       [s.material.grease_pencil.show_fill for s in obj.material_slots]]
            out[step["id"]] = info
    Path(spec["out"]).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()  # a crash inside Blender shows the Python line that called it
    _main(sys.argv[1])
