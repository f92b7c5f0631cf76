"""The Nuke layer of the plug-in (plugins/nuke: init.py, menu.py, longanim_nuke.node,
render, actions, farm) against the fake Nuke API in tests/fake_nuke/nuke.py (each piece
of it says which documented Nuke behaviour it models), a real engine process and real
EXR plates: the node built by Python, Colorize on a worker thread with a ProgressTask
and results applied on the main thread, cancel from the task and from the button, a
scene-linear plate round-tripping through the node, knobs surviving save and reload,
command-line renders, and bake."""

from __future__ import annotations

import runpy
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent / "plugins" / "nuke"
sys.path[:0] = [str(PLUGIN), str(HERE / "fake_nuke")]

import nuke  # noqa: E402  (the fake)
from engine_helpers import Engine, free_port  # noqa: E402
from longanim.engine.sequences.image_files import read_image, write_image  # noqa: E402
from nuke_plates import FIRST, cut_alpha, linear_rgba, write_plate  # noqa: E402

assert Path(nuke.__file__).parent == HERE / "fake_nuke", "tests must run against the fake, never a PyPI 'nuke'"

from longanim_nuke import actions, farm, node, results  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("engine")) as eng:
        yield eng


@pytest.fixture(autouse=True)
def session():
    nuke.reset()
    yield
    actions.wait_all(30)
    nuke.process_events(until=lambda: not actions._ACTIVE, timeout=30)


def _comp(tmp_path: Path, url: str, frames: int, *, width: int = 160, height: int = 96, plate=None,
          backend: str = "paint"):
    """A script: Read of the plate -> the node (ref1: Read of the colored key)."""
    plate = plate or write_plate(tmp_path / "plate", frames=frames, width=width, height=height)
    root = nuke.root()
    root.format = (width, height)
    root["first_frame"].setValue(FIRST)
    root["last_frame"].setValue(FIRST + frames - 1)
    lineart = nuke.nodes.Read(file=plate["lineart"], first=FIRST, last=FIRST + frames - 1, raw=True)
    key = nuke.nodes.Read(file=str(plate["key"]), first=FIRST, last=FIRST, raw=True)
    group = node.create()
    group.setInput(0, lineart)
    group.setInput(1, key)
    group["engine"].setValue(url)
    group["backend"].setValue(backend)
    group["cache_dir"].setValue((tmp_path / "cache").as_posix())
    return group, plate


def _pixels(n: nuke.Node, frame: int, layer: str = "rgba") -> np.ndarray:
    """What the node outputs downstream at `frame` (the fake's evaluation of the tree)."""
    image = n._image(frame)
    names = [f"{layer}.{c}" for c in ("red", "green", "blue", "alpha") if f"{layer}.{c}" in image]
    return np.stack([image[c] for c in names], axis=-1)


def _colorize_in_gui(group) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    group["colorize"].execute()
    click = time.perf_counter() - t0
    took = nuke.process_events(until=lambda: not actions.running(group), timeout=120)
    return click, took


# -- install ---------------------------------------------------------------------------------------

def test_init_and_menu_register_the_render_callback_and_the_menu_entry_in_the_gui_only():
    runpy.run_path(str(PLUGIN / "init.py"))
    assert [c[0] for c in nuke._before_render] == [farm.before_render]
    nuke.GUI = False
    runpy.run_path(str(PLUGIN / "menu.py"))
    assert nuke.menus == {}
    nuke.GUI = True
    runpy.run_path(str(PLUGIN / "menu.py"))
    (label, command), = nuke.menus["Nodes"]
    assert label.endswith("LongAnimationColorize")
    exec(command, {"nuke": nuke})
    made, = [n for n in nuke.allNodes("Group") if node.is_colorize(n)]
    assert made.name() == "LongAnimationColorize"


def test_the_node_has_its_knobs_and_passes_the_line_art_through_until_colorized(tmp_path):
    group, plate = _comp(tmp_path, "tcp://127.0.0.1:5555", 3)
    for knob in ("engine", "ref_frames", "frame_first", "frame_last", "backend", "options", "engine_timeout",
                 "display_space", "cache_dir", "colorize", "cancel", "bake", "status"):
        assert group.knob(knob) is not None, knob
    assert group["ref_frames"].value() == str(FIRST) and group["frame_last"].value() == FIRST + 2
    assert [n.name() for n in group.nodes() if n.Class() == "Input"] == ["lineart", "ref1", "ref2", "ref3"]
    np.testing.assert_array_equal(_pixels(group, FIRST + 1),
                                  read_image(Path(plate["lineart"].replace("####", f"{FIRST + 1:04d}"))).pixels)
    assert node.create().name() == "LongAnimationColorize1"


# -- Colorize in the GUI ---------------------------------------------------------------------------

def test_colorize_runs_on_a_worker_and_applies_results_on_the_main_thread(engine, tmp_path):
    group, plate = _comp(tmp_path, engine.url, 12)
    click, took = _colorize_in_gui(group)
    status = group["status"].value()
    assert status.startswith("done: 12 frames colorized"), status
    task, = nuke.ProgressTask.instances
    assert task.closed and task.title.endswith(group.name())
    assert task.thread.startswith("longanim") and task.thread != threading.main_thread().name
    assert max(took) < 0.25, took  # each call the worker queued for the main thread is short
    assert click < 5.0  # the click renders the 12 input frames (Nuke's render) and returns
    cache = Path(group["cache_dir"].value())
    assert results.is_current(cache, node.settings_of(group).key())
    assert not [p for p in cache.iterdir() if p.name.startswith(".render-")]  # temp renders removed
    for n in (FIRST, FIRST + 7):
        out = _pixels(group, n)
        np.testing.assert_array_equal(out, read_image(results.frame_path(results.result_pattern(cache), n)).pixels)
        # Paint decides each fill's coverage by region (the film line art test in
        # test_nuke_logic.py checks it against `longanim colorize`): what the plate shows
        # stays opaque, and nothing comes out more transparent than the plate.
        assert np.all(out[..., 3][plate["alpha"] == 1.0] == 1.0) and np.all(out[..., 3] >= plate["alpha"])
        conf = _pixels(group, n, "confidence")
        assert conf.shape == (96, 160, 3) and conf.min() >= 0 and conf.max() <= 1
    assert "confidence.red" in group.channels()
    assert group.node("results").reloads >= 1

    group["colorize"].execute()  # again, unchanged: the engine's cache serves it
    nuke.process_events(until=lambda: not actions.running(group), timeout=60)
    assert "(12 from the engine's cache)" in group["status"].value()


def test_cancelling_the_progress_task_cancels_the_engine_job(engine, tmp_path):
    group, _ = _comp(tmp_path, engine.url, 150, width=320, height=180)
    group["colorize"].execute()
    cache = Path(group["cache_dir"].value())
    nuke.process_events(until=lambda: len(list(cache.glob("colorized.*.exr"))) >= 2, timeout=60)
    nuke.ProgressTask.instances[-1].user_cancel()
    nuke.process_events(until=lambda: not actions.running(group), timeout=30)
    status = group["status"].value()
    assert status.startswith("cancelled: cancelled after"), status
    _assert_engine_job_cancelled(engine, status)
    assert not results.is_current(cache, node.settings_of(group).key())


def test_the_cancel_button_cancels_the_engine_job(engine, tmp_path):
    group, _ = _comp(tmp_path, engine.url, 150, width=320, height=180)
    group["colorize"].execute()
    cache = Path(group["cache_dir"].value())
    nuke.process_events(until=lambda: len(list(cache.glob("colorized.*.exr"))) >= 1, timeout=60)
    t0 = time.perf_counter()
    group["cancel"].execute()
    assert time.perf_counter() - t0 < 0.05 and group["status"].value() == "cancelling..."
    nuke.process_events(until=lambda: not actions.running(group), timeout=30)
    assert group["status"].value().startswith("cancelled"), group["status"].value()
    _assert_engine_job_cancelled(engine, group["status"].value())


def _assert_engine_job_cancelled(engine, status: str) -> None:
    job_id = status.rpartition("(engine job ")[2].rstrip(")")
    with engine.client() as c:
        deadline = time.monotonic() + 10
        while (state := c.status(job_id)[0]["state"]) not in ("cancelled", "done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert state == "cancelled"


def test_bad_knobs_and_no_engine_are_reported_on_the_node(engine, tmp_path):
    group, _ = _comp(tmp_path, engine.url, 3)
    group["ref_frames"].setValue(f"{FIRST} 2:{FIRST + 1}")
    group["colorize"].execute()
    assert "ref2, which is not connected" in group["status"].value()
    assert nuke.messages and "ref2" in nuke.messages[-1]
    assert not actions.running(group)

    group["ref_frames"].setValue(str(FIRST))
    url = f"tcp://127.0.0.1:{free_port()}"
    group["engine"].setValue(url)
    group["engine_timeout"].setValue(3)
    click, _ = _colorize_in_gui(group)
    assert click < 1.5  # the main thread renders the input and returns; the worker waits for the engine
    assert group["status"].value().startswith("failed") and url in group["status"].value()


def test_a_button_says_so_when_the_plugins_python_side_is_missing(tmp_path, monkeypatch):
    group, _ = _comp(tmp_path, "tcp://127.0.0.1:5555", 2)
    monkeypatch.setitem(sys.modules, "longanim_nuke.actions", None)
    group["colorize"].execute()
    assert "Python side is missing" in nuke.messages[-1]


# -- colour: a scene-linear plate through the node --------------------------------------------------

def test_a_scene_linear_exr_plate_round_trips_through_the_node_with_its_colors_and_alpha(engine, tmp_path):
    rng = np.random.default_rng(11)
    display = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    alpha = cut_alpha(48, 64)
    src = tmp_path / "plate"
    for i in range(3):
        write_image(src / f"plate.{FIRST + i:04d}.exr", linear_rgba(display[i], alpha))
    write_image(src / f"key.{FIRST:04d}.exr", linear_rgba(display[0], alpha))
    plate = {"lineart": (src / "plate.####.exr").as_posix(), "key": src / f"key.{FIRST:04d}.exr"}
    group, _ = _comp(tmp_path, engine.url, 3, width=64, height=48, plate=plate, backend="passthrough")
    _colorize_in_gui(group)
    assert group["status"].value().startswith("done"), group["status"].value()
    for i in range(3):
        src_px = read_image(src / f"plate.{FIRST + i:04d}.exr").pixels
        out = _pixels(group, FIRST + i)
        np.testing.assert_array_equal(out[..., 3], alpha)  # alpha kept exactly
        opaque = alpha == 1.0
        np.testing.assert_allclose(out[..., :3][opaque], src_px[..., :3][opaque], rtol=2e-3, atol=2e-4)
        assert np.all(out[alpha == 0] == 0)


# -- the .nk -------------------------------------------------------------------------------------------

def test_knob_values_survive_save_and_reload_and_the_node_still_works(engine, tmp_path):
    group, _ = _comp(tmp_path, engine.url, 4)
    group["options"].setValue("gap_close=1")
    group["engine_timeout"].setValue(45)
    _colorize_in_gui(group)
    before = {k: group[k].value() for k in ("engine", "ref_frames", "frame_first", "frame_last", "backend",
                                            "options", "engine_timeout", "cache_dir", "status")}
    out_before = _pixels(group, FIRST + 2)
    script = tmp_path / "shot.nk"
    nuke.scriptSave(str(script))
    text = script.read_text()
    # the node as Nuke writes a Group with user knobs (see fake_nuke/nuke.py's docstring)
    assert text.startswith("#! ") and "\nGroup {\n inputs 2\n" in text and "\nend_group\n" in text
    for line in ('addUserKnob {1 engine l "engine address"}', f"engine {engine.url}",
                 "addUserKnob {3 frame_last l \"\" -STARTLINE}", f"frame_last {FIRST + 3}",
                 "addUserKnob {4 backend M {paint longanimation passthrough}}", "options gap_close=1",
                 "engine_timeout 45", f"cache_dir {(tmp_path / 'cache').as_posix()}",
                 f"addUserKnob {{26 status T {nuke_word(before['status'])}}}"):
        assert f"\n {line}\n" in text, line
    assert "\n Read {\n  inputs 0\n" in text and "\n Switch {\n  inputs 2\n" in text  # inside the group
    name = group.name()
    nuke.scriptClear()
    assert nuke.toNode(name) is None
    nuke.scriptOpen(str(script))
    again = nuke.toNode(name)
    assert again is not None and again is not group and node.is_colorize(again)
    assert {k: again[k].value() for k in before} == before
    nuke.scriptSave(str(script))
    assert script.read_text() == text  # what was read is what was written
    np.testing.assert_array_equal(_pixels(again, FIRST + 2), out_before)  # the Read points at the cache
    _colorize_in_gui(again)  # its buttons work after the reload
    assert "(4 from the engine's cache)" in again["status"].value()


def nuke_word(value: str) -> str:
    from nk_syntax import word

    return word(value)


def test_the_fakes_nk_scripts_keep_any_text_and_refuse_what_nuke_would(tmp_path):
    """The fake's .nk text: a knob value with Tcl's special characters survives save and
    open; a script written by hand in Nuke's syntax opens, inputs through the stack (input
    0 from its top); a knob the node does not have is an error naming it."""
    group = node.create()
    awkward = 'a "quoted" [tcl] $var {braced} back\\slash; #hash\nsecond line'
    group["options"].setValue(awkward)
    group["display_space"].setValue("")
    script = tmp_path / "odd.nk"
    nuke.scriptSave(str(script))
    nuke.scriptOpen(str(script))
    assert nuke.toNode(group.name())["options"].value() == awkward

    (tmp_path / "hand.nk").write_text(
        "#! nuke -nx\nversion 15.1 v3\nRoot {\n inputs 0\n first_frame 1001\n format \"64 48 0 0 64 48 1 tiny\"\n}\n"
        "Read {\n inputs 0\n file /plates/b.####.exr\n name B\n}\nset Nb [stack 0]\n"
        "Read {\n inputs 0\n file \"/plates/with space/a.####.exr\"\n name A\n}\n"
        "push $Nb\nSwitch {\n inputs 2\n which 1\n name pick\n}\n")
    nuke.scriptOpen(str(tmp_path / "hand.nk"))
    pick = nuke.toNode("pick")
    assert pick.input(0).name() == "B" and pick.input(1).name() == "A" and pick["which"].value() == 1
    assert nuke.toNode("A")["file"].value() == "/plates/with space/a.####.exr"
    assert nuke.root()["first_frame"].value() == 1001 and nuke.root().format == (64, 48)

    (tmp_path / "bad.nk").write_text("Read {\n inputs 0\n colour red\n}\n")
    with pytest.raises(RuntimeError, match="Read: no knob named colour"):
        nuke.scriptOpen(str(tmp_path / "bad.nk"))


# -- command-line renders and farms -----------------------------------------------------------------

def _downstream_write(group, tmp_path: Path) -> nuke.Node:
    write = nuke.nodes.Write(file=(tmp_path / "comp" / "comp.####.exr").as_posix(), file_type="exr", raw=True,
                             channels="rgba")
    write.setInput(0, group)
    return write


def test_a_command_line_render_colorizes_first_and_blocks_until_the_frames_exist(engine, tmp_path, capsys):
    group, _ = _comp(tmp_path, engine.url, 6)
    write = _downstream_write(group, tmp_path)
    nuke.GUI = False
    runpy.run_path(str(PLUGIN / "init.py"))
    nuke.execute(write, FIRST, FIRST + 5)  # what `nuke -x` does for each Write
    cache = Path(group["cache_dir"].value())
    assert results.is_current(cache, node.settings_of(group).key())
    for n in range(FIRST, FIRST + 6):
        comp = read_image(tmp_path / "comp" / f"comp.{n:04d}.exr").pixels
        colored = read_image(results.frame_path(results.result_pattern(cache), n)).pixels
        np.testing.assert_allclose(comp, colored.astype(np.float32), atol=1e-3)
    assert "6/6 frames" in capsys.readouterr().out
    mtime = results.frame_path(results.result_pattern(cache), FIRST).stat().st_mtime_ns
    nuke.execute(write, FIRST, FIRST + 5)  # current: not colorized again
    assert results.frame_path(results.result_pattern(cache), FIRST).stat().st_mtime_ns == mtime


def test_a_failed_colorize_aborts_the_command_line_render(tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    group, _ = _comp(tmp_path, url, 3)
    group["engine_timeout"].setValue(1)
    write = _downstream_write(group, tmp_path)
    nuke.GUI = False
    runpy.run_path(str(PLUGIN / "init.py"))
    with pytest.raises(RuntimeError, match=f"{group.name()}: colorize failed: .*{url}"):
        nuke.execute(write, FIRST, FIRST + 2)
    assert not (tmp_path / "comp").exists()


def test_a_gui_render_of_an_out_of_date_node_stops_and_says_to_colorize(tmp_path):
    group, _ = _comp(tmp_path, "tcp://127.0.0.1:5555", 3)
    write = _downstream_write(group, tmp_path)
    runpy.run_path(str(PLUGIN / "init.py"))
    with pytest.raises(RuntimeError, match="press Colorize"):
        nuke.execute(write, FIRST, FIRST + 2)


def test_bake_replaces_the_node_with_a_stock_read_of_its_results(engine, tmp_path):
    group, _ = _comp(tmp_path, engine.url, 4)
    write = _downstream_write(group, tmp_path)
    group["bake"].execute()
    assert "not baked" in group["status"].value() and "Colorize first" in group["status"].value()
    _colorize_in_gui(group)
    expected = _pixels(group, FIRST + 3)
    name = group.name()
    group["bake"].execute()
    assert nuke.toNode(name) is None
    read = nuke.toNode(f"{name}_baked")
    assert read is not None and read.Class() == "Read" and write.input(0) is read
    assert read["first"].value() == FIRST and read["last"].value() == FIRST + 3 and read["raw"].value()
    np.testing.assert_array_equal(_pixels(read, FIRST + 3), expected)
    runpy.run_path(str(PLUGIN / "init.py"))
    nuke.GUI = False
    nuke.execute(write, FIRST, FIRST + 3)  # nothing of ours left: renders with stock nodes only
    assert (tmp_path / "comp" / f"comp.{FIRST + 3:04d}.exr").is_file()


def test_no_nuke_call_is_made_off_the_main_thread():
    """The fake refuses API calls from other threads (the guarantee the tests above rely on)."""
    errors = []

    def worker():
        try:
            nuke.root()
        except RuntimeError as exc:
            errors.append(str(exc))
        nuke.executeInMainThread(errors.append, ("queued",))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert "main thread only" in errors[0]
    nuke.process_events(until=lambda: "queued" in errors, timeout=5)


def test_the_farm_pre_task_colorizes_a_saved_script_once_and_fails_with_status_1(engine, tmp_path, capsys):
    group, _ = _comp(tmp_path, engine.url, 3)
    script = tmp_path / "shot.nk"
    nuke.scriptSave(str(script))
    nuke.GUI = False
    assert farm.main(["farm.py", str(script)]) == 0
    assert "1 node(s) colorized" in capsys.readouterr().out
    assert farm.main(["farm.py", str(script)]) == 0  # current now: nothing to do
    assert "0 node(s) colorized" in capsys.readouterr().out

    again = nuke.toNode(group.name())
    again["frame_last"].setValue(FIRST + 3)  # out of date, and no engine there
    again["engine"].setValue(f"tcp://127.0.0.1:{free_port()}")
    again["engine_timeout"].setValue(1)
    nuke.scriptSave(str(script))
    assert farm.main(["farm.py", str(script)]) == 1
    assert "colorize failed" in capsys.readouterr().err


def test_bake_inside_a_users_group_leaves_the_read_in_that_group(engine, tmp_path):
    plate = write_plate(tmp_path / "plate", frames=2)
    nuke.root().format = (160, 96)
    comp = nuke.nodes.Group(name="Comp")
    with comp:
        lineart = nuke.nodes.Read(file=plate["lineart"], first=FIRST, last=FIRST + 1, raw=True)
        key = nuke.nodes.Read(file=str(plate["key"]), first=FIRST, last=FIRST, raw=True)
        group = node.create()
        write = _downstream_write(group, tmp_path)
    group.setInput(0, lineart)
    group.setInput(1, key)
    for name, value in (("engine", engine.url), ("frame_first", FIRST), ("frame_last", FIRST + 1),
                        ("ref_frames", str(FIRST)), ("cache_dir", (tmp_path / "cache").as_posix())):
        group[name].setValue(value)
    _colorize_in_gui(group)
    assert group["status"].value().startswith("done"), group["status"].value()
    name = group.name()
    group["bake"].execute()
    baked = nuke.toNode(f"Comp.{name}_baked")
    assert baked is not None and baked.Class() == "Read" and write.input(0) is baked
    assert nuke.toNode(f"{name}_baked") is None  # not at the top level


def test_the_scripts_ocio_config_is_used_both_ways(engine, tmp_path):
    """Project Settings with a custom OCIO config: the node converts through it (working
    space ACEScg here, not Rec.709) and a plate still round-trips, alpha kept."""
    ocio = pytest.importorskip("PyOpenColorIO")
    config = tmp_path / "config.ocio"
    config.write_text(ocio.Config.CreateFromBuiltinConfig("cg-config-latest").serialize())
    root = nuke.root()
    root["colorManagement"].setValue("OCIO")
    root["OCIO_config"].setValue("custom")
    root["customOCIOConfigPath"].setValue(str(config))
    root["workingSpaceLUT"].setValue("ACEScg")
    rng = np.random.default_rng(4)
    display = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    alpha = cut_alpha(48, 64)
    to_acescg = ocio.Config.CreateFromFile(str(config)).getProcessor(
        "sRGB Encoded Rec.709 (sRGB)", "ACEScg").getDefaultCPUProcessor()
    src = tmp_path / "plate"
    for i in range(2):
        straight = np.ascontiguousarray(display[i].astype(np.float32) / 255)
        to_acescg.applyRGB(straight)
        write_image(src / f"plate.{FIRST + i:04d}.exr",
                    np.concatenate([straight * alpha[..., None], alpha[..., None]], axis=-1).astype(np.float32))
    plate = {"lineart": (src / "plate.####.exr").as_posix(), "key": src / f"plate.{FIRST:04d}.exr"}
    group, _ = _comp(tmp_path, engine.url, 2, width=64, height=48, plate=plate, backend="passthrough")
    group["colorize"].execute()
    assert "OpenColorIO" in group["status"].value() and "ACEScg" in group["status"].value()
    nuke.process_events(until=lambda: not actions.running(group), timeout=60)
    assert group["status"].value().startswith("done"), group["status"].value()
    for i in range(2):
        src_px = read_image(src / f"plate.{FIRST + i:04d}.exr").pixels
        out = _pixels(group, FIRST + i)
        np.testing.assert_array_equal(out[..., 3], alpha)
        opaque = alpha == 1.0
        np.testing.assert_allclose(out[..., :3][opaque], src_px[..., :3][opaque], rtol=3e-3, atol=3e-4)
