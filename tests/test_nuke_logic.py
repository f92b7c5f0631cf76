"""The Nuke plug-in's nuke-free logic (plugins/nuke/longanim_nuke: settings, colour,
results, run) in plain Python, against a real `longanim serve` process and real EXR files."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "plugins" / "nuke"), str(HERE / "fake_nuke")]

from engine_helpers import Engine, free_port  # noqa: E402
from longanim.engine.errors import InputError  # noqa: E402
from longanim.engine.sequences.colorspace import linear_to_srgb  # noqa: E402
from longanim.engine.sequences.image_files import read_image  # noqa: E402
from longanim_nuke import colour, results  # noqa: E402
from longanim_nuke.run import ColorizeRun  # noqa: E402
from longanim_nuke.settings import (  # noqa: E402
    RefFrame,
    Settings,
    check,
    parse_options_text,
    parse_ref_frames,
)
from nuke_plates import FIRST, cut_alpha, linear_rgba, write_plate  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("engine")) as eng:
        yield eng


def _settings(url: str, cache: Path, frames: int, backend: str = "paint", **kw) -> Settings:
    return Settings(engine=url, first=FIRST, last=FIRST + frames - 1, refs=(RefFrame(1, FIRST),), backend=backend,
                    cache_dir=str(cache), **kw)


def _results(cache: Path, first: int, last: int) -> dict[int, np.ndarray]:
    pattern = results.result_pattern(cache)
    return {n: read_image(results.frame_path(pattern, n)).pixels.astype(np.float32) for n in range(first, last + 1)}


# -- a shot through a real engine ------------------------------------------------------------------

def test_a_scene_linear_shot_colorizes_through_the_engine_as_longanim_colorize_does(engine, tmp_path):
    """An opaque RGB EXR plate: the logic's frames equal the CLI pipeline's on the same files
    (same conversion, same rounding, same engine), and the fills are right. (Alpha is kept
    exactly too: see the passthrough test below and the node's tests.)"""
    from longanim.engine.pipeline import RefSpec, colorize_shot

    plate = write_plate(tmp_path / "plate", frames=12, alpha=False)
    cache = tmp_path / "cache"
    settings = _settings(engine.url, cache, 12)
    run = ColorizeRun(settings, plate["lineart"], {FIRST: plate["key"]}, colour.EngineSrgb())
    seen = []
    outcome = run.run(progress=seen.append)
    assert outcome.state == "done", outcome.message
    assert outcome.written == 12 and outcome.job_id and "12 frames colorized" in outcome.message
    assert seen and seen[-1].done == 12 and seen[-1].percent == 100
    assert results.is_current(cache, settings.key())
    got = _results(cache, FIRST, FIRST + 11)

    colorize_shot(plate["lineart"], [RefSpec(plate["key"], FIRST)], tmp_path / "cli", out_ext="exr")
    for n, pixels in got.items():
        cli = read_image(tmp_path / "cli" / f"shot.{n:04d}.exr").pixels.astype(np.float32)
        assert pixels.shape == cli.shape == (96, 160, 3)
        np.testing.assert_allclose(pixels, cli, rtol=1e-3, atol=1e-4)  # half here, float there

    shot = plate["shot"]
    right = [np.mean(np.all(np.abs(np.round(linear_to_srgb(got[FIRST + i]) * 255) - shot.color(i)) <= 1, axis=-1))
             for i in range(12)]
    assert min(right) > 0.98, right
    confidence = results.read_confidence(results.frame_path(results.result_pattern(cache), FIRST + 5))
    assert confidence.shape == (96, 160) and 0.0 <= confidence.min() and confidence.max() <= 1.0
    manifest = json.loads((cache / results.MANIFEST).read_text())
    assert manifest["job_id"] == outcome.job_id and manifest["key"] == settings.key()

    again = ColorizeRun(settings, plate["lineart"], {FIRST: plate["key"]}, colour.EngineSrgb()).run()
    assert again.state == "done" and again.cached == 12  # unchanged input: served by the engine's cache


def test_line_art_on_transparent_film_comes_out_opaque_fills_as_longanim_colorize_writes_it(engine, tmp_path):
    """Ink on transparent film (alpha = the lines) and an RGB keyframe: the keyframe's alpha
    goes to the engine, the fills come back opaque (the result's fourth channel) with the
    lines over them, and the frames equal `longanim colorize`'s on the same files."""
    from longanim.engine.evaluation.synthetic import make_shot
    from longanim.engine.pipeline import RefSpec, colorize_shot
    from longanim.engine.sequences.image_files import write_image

    shot = make_shot(num_frames=8, width=160, height=96, seed=3)
    src = tmp_path / "film"
    for i in range(8):
        ink = 1.0 - shot.lineart(i).min(axis=-1).astype(np.float32) / 255.0
        write_image(src / f"shot.{FIRST + i:04d}.exr", np.dstack([np.zeros((96, 160, 3), np.float32), ink]))
    key = src / "key.exr"
    write_image(key, linear_rgba(shot.color(0), None))
    cache = tmp_path / "cache"
    lineart = (src / "shot.####.exr").as_posix()
    outcome = ColorizeRun(_settings(engine.url, cache, 8), lineart, {FIRST: key}, colour.EngineSrgb()).run()
    assert outcome.state == "done", outcome.message
    got = _results(cache, FIRST, FIRST + 7)
    colorize_shot(lineart, [RefSpec(key, FIRST)], tmp_path / "cli", out_ext="exr")
    for i, (n, pixels) in enumerate(sorted(got.items())):
        assert pixels.shape == (96, 160, 4)
        assert np.mean(pixels[..., 3] > 0.99) > 0.99  # an opaque character, not uncolored line art
        cli = read_image(tmp_path / "cli" / f"shot.{n:04d}.exr").pixels.astype(np.float32)
        np.testing.assert_allclose(pixels, cli, rtol=1e-3, atol=1e-3)
        right = np.all(np.abs(np.round(linear_to_srgb(pixels[..., :3]) * 255) - shot.color(i)) <= 2, axis=-1)
        assert right.mean() > 0.95, (n, right.mean())


def test_passthrough_round_trip_keeps_colors_and_alpha_without_drift(engine, tmp_path):
    """Through the node's conversion and back (passthrough colorizer): opaque pixels come back
    within the 8-bit display step, transparent ones black with alpha 0, the half-transparent
    band as the line art over paper cut out by its alpha; a second pass changes nothing."""
    rng = np.random.default_rng(5)
    display = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    alpha = cut_alpha(48, 64)
    src = tmp_path / "src"
    from longanim.engine.sequences.image_files import write_image

    for i in range(4):
        write_image(src / f"plate.{FIRST + i:04d}.exr", linear_rgba(display[i], alpha))
    key = src / "key.exr"
    write_image(key, linear_rgba(display[0], alpha))
    cache = tmp_path / "pass1"
    settings = _settings(engine.url, cache, 4, backend="passthrough")
    out = ColorizeRun(settings, (src / "plate.####.exr").as_posix(), {FIRST: key}, colour.EngineSrgb()).run()
    assert out.state == "done", out.message
    first = _results(cache, FIRST, FIRST + 3)
    for i, n in enumerate(sorted(first)):
        plate = read_image(src / f"plate.{n:04d}.exr").pixels
        px = first[n]
        np.testing.assert_array_equal(px[..., 3], alpha)
        op = alpha == 1.0
        back = np.round(linear_to_srgb(px[..., :3]) * 255)
        assert np.abs(back[op] - display[i][op]).max() <= 0.5  # exact 8-bit codes, in linear terms
        np.testing.assert_allclose(px[..., :3][op], plate[..., :3][op], rtol=2e-3, atol=2e-4)
        assert np.all(px[alpha == 0] == 0)
        half = alpha == 0.5
        over_white = np.round((display[i] / 255.0) * 0.5 * 255 + 0.5 * 255)
        np.testing.assert_allclose(np.round(linear_to_srgb(px[..., :3][half] / 0.5) * 255), over_white[half], atol=1)

    cache2 = tmp_path / "pass2"
    out2 = ColorizeRun(_settings(engine.url, cache2, 4, backend="passthrough"), results.result_pattern(cache),
                       {FIRST: key}, colour.EngineSrgb()).run()
    assert out2.state == "done", out2.message
    second = _results(cache2, FIRST, FIRST + 3)
    for n in first:
        op = alpha == 1.0
        np.testing.assert_array_equal(second[n][op], first[n][op])


def test_cancel_cancels_the_engine_job(engine, tmp_path):
    plate = write_plate(tmp_path / "plate", frames=150, width=320, height=180)
    cache = tmp_path / "cache"
    run = ColorizeRun(_settings(engine.url, cache, 150), plate["lineart"], {FIRST: plate["key"]}, colour.EngineSrgb())
    outcome = run.run(cancelled=lambda: len(run.written) >= 2)
    assert outcome.state == "cancelled", outcome.message
    assert 2 <= outcome.written < 150 and "cancelled after" in outcome.message
    assert not results.is_current(cache, run.settings.key())
    with engine.client() as c:
        deadline = time.monotonic() + 10
        while (state := c.status(outcome.job_id)[0]["state"]) not in ("cancelled", "done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert state == "cancelled"


def test_no_engine_fails_within_the_timeout_naming_the_address(tmp_path):
    plate = write_plate(tmp_path / "plate", frames=2)
    url = f"tcp://127.0.0.1:{free_port()}"
    run = ColorizeRun(_settings(url, tmp_path / "cache", 2, timeout=1.0), plate["lineart"], {FIRST: plate["key"]},
                      colour.EngineSrgb())
    t0 = time.monotonic()
    outcome = run.run()
    assert time.monotonic() - t0 < 1.0 + 1.0
    assert outcome.state == "failed" and url in outcome.message and "longanim serve" in outcome.message


def test_a_missing_rendered_frame_fails_the_run_clearly(engine, tmp_path):
    plate = write_plate(tmp_path / "plate", frames=3)
    (tmp_path / "plate" / "lineart" / f"shot.{FIRST + 2:04d}.exr").unlink()
    outcome = ColorizeRun(_settings(engine.url, tmp_path / "cache", 3), plate["lineart"], {FIRST: plate["key"]},
                          colour.EngineSrgb()).run()
    assert outcome.state == "failed" and f"shot.{FIRST + 2:04d}.exr" in outcome.message


# -- colour ----------------------------------------------------------------------------------------

def test_engine_srgb_conversion_round_trips_and_keeps_alpha():
    rng = np.random.default_rng(0)
    straight = rng.random((16, 16, 3), dtype=np.float32)
    alpha = rng.choice(np.array([0.0, 0.25, 1.0], np.float32), (16, 16))
    t = colour.EngineSrgb()
    np.testing.assert_allclose(t.to_linear(t.to_display(straight)), straight, atol=2e-6)
    premult = np.concatenate([straight * alpha[..., None], alpha[..., None]], axis=-1)
    rgb, a = colour.plate_to_display(premult, t)
    np.testing.assert_array_equal(a, alpha)
    assert rgb.dtype == np.uint8 and np.all(rgb[alpha == 0] == 255)  # transparent is paper
    back = colour.display_to_plate(rgb, a, t)
    np.testing.assert_array_equal(back[..., 3], alpha)
    assert np.all(back[alpha == 0] == 0)


def test_ocio_with_the_scripts_config_matches_the_engine_on_rec709_and_converts_acescg(tmp_path):
    ocio = pytest.importorskip("PyOpenColorIO")
    config = tmp_path / "config.ocio"
    config.write_text(ocio.Config.CreateFromBuiltinConfig("cg-config-latest").serialize())
    rng = np.random.default_rng(1)
    linear = rng.random((8, 8, 3), dtype=np.float32)
    rec709 = colour.transform_for(str(config), "Linear Rec.709 (sRGB)")
    assert "OpenColorIO" in rec709.description and "sRGB Encoded Rec.709" in rec709.description
    np.testing.assert_allclose(rec709.to_display(linear), colour.EngineSrgb().to_display(linear), atol=2e-5)
    np.testing.assert_allclose(rec709.to_linear(rec709.to_display(linear)), linear, atol=2e-5)
    acescg = colour.transform_for(str(config))  # the config's scene_linear role: ACEScg, other primaries
    assert "ACEScg" in acescg.description
    assert np.abs(acescg.to_display(linear) - rec709.to_display(linear)).max() > 0.01
    # ACEScg colours inside the sRGB gamut round-trip (outside it, display clips them, as it must)
    cfg = ocio.Config.CreateFromFile(str(config))
    in_gamut = np.ascontiguousarray(linear * 0.9)
    cfg.getProcessor("Linear Rec.709 (sRGB)", "ACEScg").getDefaultCPUProcessor().applyRGB(in_gamut)
    np.testing.assert_allclose(acescg.to_linear(acescg.to_display(in_gamut)), in_gamut, atol=1e-4)
    with pytest.raises(InputError, match="no display space 'Nope'"):
        colour.transform_for(str(config), "", "Nope")


def test_without_a_config_or_pyopencolorio_the_engine_transform_is_used(monkeypatch):
    assert isinstance(colour.transform_for(None), colour.EngineSrgb)
    monkeypatch.setitem(sys.modules, "PyOpenColorIO", None)  # import fails
    fallback = colour.transform_for("/show/config.ocio")
    assert isinstance(fallback, colour.EngineSrgb) and "PyOpenColorIO is not importable" in fallback.description


# -- settings and the cache folder ------------------------------------------------------------------

def test_settings_parse_and_refuse_bad_knob_values_by_name():
    assert parse_ref_frames("1200, 2:1001") == (RefFrame(2, 1001), RefFrame(1, 1200))
    assert parse_options_text("gap_close=2 global_memory=false") == {"gap_close": 2, "global_memory": False}
    for text, message in [("", "none given"), ("10a", "not FRAME or INPUT:FRAME"), ("4:10", "ref1 to ref3"),
                          ("10 2:10", "keyed twice")]:
        with pytest.raises(InputError, match=message):
            parse_ref_frames(text)
    with pytest.raises(InputError, match="backend options: .*not KEY=VALUE"):
        parse_options_text("gap_close")
    good = Settings("tcp://127.0.0.1:5555", 1001, 1010, (RefFrame(1, 1001),))
    check(good)
    for bad, message in [({"engine": "localhost"}, "not a ZeroMQ address"), ({"last": 1000}, "before first"),
                         ({"refs": (RefFrame(1, 990),)}, "outside the frame range"), ({"backend": "x"}, "not one of")]:
        with pytest.raises(InputError, match=message):
            check(Settings(**{**good.__dict__, **bad}))


def test_the_cache_counts_as_current_only_with_its_key_and_every_frame(tmp_path):
    key = Settings("tcp://h:1", 1, 2, (RefFrame(1, 1),)).key()
    pattern = results.result_pattern(tmp_path)
    assert pattern.endswith("colorized.####.exr")
    assert results.frame_path(pattern, 7).name == "colorized.0007.exr"
    assert not results.is_current(tmp_path, key)
    for n in (1, 2):
        results.write_frame(results.frame_path(pattern, n), np.zeros((4, 4, 4), np.float32), None)
    results.write_manifest(tmp_path, key, "job", 0)
    assert results.is_current(tmp_path, key)
    assert not results.is_current(tmp_path, {**key, "backend": "passthrough"})
    results.frame_path(pattern, 2).unlink()
    assert not results.is_current(tmp_path, key)
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_the_plugins_logic_imports_without_the_model_packages():
    """What Nuke's Python needs: the client, the image helpers and numpy; never torch."""
    import subprocess

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'diffusers', 'transformers', 'cv2'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            f"sys.path.insert(0, {str(HERE.parent / 'plugins' / 'nuke')!r})\n"
            "import longanim_nuke.run, longanim_nuke.colour, longanim_nuke.settings, longanim_nuke.results\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
