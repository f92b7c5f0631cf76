"""Real Blender for the extension's tests: a Python with `bpy` (Blender as a module), and the
Blender-side driver that runs inside it.

bpy 5.0.1 needs numpy < 2 while the project's environment has numpy >= 2 (opencv), so bpy
lives in a virtual environment of its own, as Blender's Python lives apart from the
engine's in real use: `$LONGANIM_BPY_PYTHON` if set, else plugins/blender/build/bpy-5.0.1
(made here with `pip install bpy==5.0.1` on first use; `LONGANIM_BPY_INSTALL=0` forbids
that). That venv has no pyzmq or msgpack: the extension installs them from its own wheels.

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
BPY_VERSION = "5.0.1"
BPY_VENV = REPO / "plugins" / "blender" / "build" / f"bpy-{BPY_VERSION}"
OBJECT = "Character"
FRAMES = (1001, 1024)  # 24 frames, film-style numbering
KEY_FRAME = 1001
RESOLUTION = (320, 180)
# Fills of the painted keyframe (sRGB 0-255); lines are black.
SKIN = (240, 170, 120)
SHIRT = (40, 90, 200)


def bpy_python() -> tuple[str | None, str]:
    """(path of a Python that imports bpy, or None, and why not / how it was found)."""
    explicit = os.environ.get("LONGANIM_BPY_PYTHON")
    if explicit:
        return explicit, "LONGANIM_BPY_PYTHON"
    py = BPY_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if py.exists() and _imports_bpy(py):
        return str(py), f"{BPY_VENV}"
    if os.environ.get("LONGANIM_BPY_INSTALL") == "0":
        return None, "no bpy Python (set LONGANIM_BPY_PYTHON, or allow installing with LONGANIM_BPY_INSTALL=1)"
    t0 = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(BPY_VENV)], check=True, capture_output=True, timeout=120)
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", f"bpy=={BPY_VERSION}"],
                              capture_output=True, text=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not make a bpy venv: {exc}"
    if proc.returncode != 0 or not _imports_bpy(py):
        return None, f"pip install bpy=={BPY_VERSION} failed (registry unreachable?): {proc.stderr.strip()[-500:]}"
    return str(py), f"installed bpy {BPY_VERSION} into {BPY_VENV} in {time.monotonic() - t0:.0f} s"


def _imports_bpy(py: Path) -> bool:
    try:
        return subprocess.run([str(py), "-c", "import bpy"], capture_output=True, timeout=120).returncode == 0
    except (subprocess.SubprocessError, OSError):
        return False


def run_driver(python: str, spec: dict, tmp: Path, timeout: float = 170.0) -> dict:
    """Run this file in the bpy Python with `spec`; returns the JSON it wrote."""
    spec_path = tmp / "spec.json"
    spec = {**spec, "out": str(tmp / "driver-out.json")}
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp / "blender-user"), "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)  # nothing of the project's environment: the extension brings its own
    proc = subprocess.run([python, str(Path(__file__)), str(spec_path)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(tmp))
    log = (proc.stdout + proc.stderr)[-6000:]
    (tmp / "driver.log").write_text(proc.stdout + proc.stderr)
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
    for name, fill in (("Skin", SKIN), ("Shirt", SHIRT)):
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
        for points, material in ((head, 0), (body, 1)):
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


def _drive_modal(bpy, op_cls, object_name: str, cancel_after_results: int | None = None,
                 tick_s: float = 0.05, limit_s: float = 120.0) -> dict:
    """The operator's own `_start` (what invoke does before adding its timer) and `modal`,
    called with TIMER events every `tick_s` as the window manager's timer would (bpy as a
    module has no event loop, so no timer fires by itself), and with an ESC press to cancel."""
    reports = []

    class Driver:  # stands in for the operator instance: the methods are the operator's
        pass

    driver = Driver()
    driver.object_name = object_name
    driver.report = lambda kind, text: reports.append((sorted(kind)[0], text))
    for name in ("_start", "modal", "_show", "_finish", "cancel"):
        setattr(Driver, name, getattr(op_cls, name))
    ctx = bpy.context
    t0 = time.monotonic()
    session = driver._start(ctx)
    ret, esc_sent, job_id = None, False, None
    while time.monotonic() - t0 < limit_s:
        started = time.monotonic()
        if cancel_after_results is not None and not esc_sent and session.results >= cancel_after_results:
            job_id = session.job.id
            ret = driver.modal(ctx, _Event("ESC", "PRESS"))
            esc_sent = True
        else:
            ret = driver.modal(ctx, _Event("TIMER"))
        if ret != {"PASS_THROUGH"}:
            break
        time.sleep(max(0.0, tick_s - (time.monotonic() - started)))
    by_state: dict[str, list[float]] = {}
    for state, seconds in session.tick_times:
        by_state.setdefault(state, []).append(seconds)
    return {"ret": sorted(ret or []), "outcome": session.outcome, "message": session.message,
            "reports": reports, "elapsed_s": time.monotonic() - t0, "job_id": job_id or (session.job.id if session.job else None),
            "results": session.results, "cached": session.cached, "rendered": session.rendered,
            "tick_max_ms": {k: 1000 * max(v) for k, v in by_state.items()},
            "tick_median_ms": {k: 1000 * sorted(v)[len(v) // 2] for k, v in by_state.items()},
            "ticks": {k: len(v) for k, v in by_state.items()},
            "render_s": [round(r, 4) for r, _ in session.renderer.timings] if session.renderer else [],
            "read_s": [round(r, 4) for _, r in session.renderer.timings] if session.renderer else []}


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
    scene.longanim.key_frame = KEY_FRAME

    for step in spec["steps"]:
        kind = step["kind"]
        prefs.engine_url = step.get("url", spec.get("url", ""))
        prefs.timeout = step.get("timeout", 5.0)
        scene.longanim.output_name = step.get("name", OBJECT)
        scene.longanim.use_cache = step.get("cache", True)
        if kind == "modal":
            out[step["id"]] = _drive_modal(bpy, ops.LONGANIM_OT_colorize_shot, OBJECT,
                                           cancel_after_results=step.get("cancel_after_results"))
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
                info["links"] = sorted(f"{l.from_node.name}.{l.from_socket.name}->{l.to_node.name}.{l.to_socket.name}"
                                       for l in group.links)
                tree = getattr(scene, "compositing_node_group", None) or getattr(scene, "node_tree", None)
                info["scene_node"] = bool(tree and tree.nodes.get("LongAnimation Colorize"))
                # the restored scene: the isolated render must leave nothing changed
                info["scene_after"] = [scene.render.engine, scene.view_settings.view_transform,
                                       [s.material.grease_pencil.show_fill for s in obj.material_slots]]
            out[step["id"]] = info
    Path(spec["out"]).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    _main(sys.argv[1])
