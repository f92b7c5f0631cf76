"""The GPU memory plan: which parts are on the compute device in each phase (residency.py).

On a CPU machine the compute and offload devices are the same, so the tiny pipeline runs its real
moves (`module.to("cpu")`) while forward hooks on every part record, each time a part runs, what the
plan had on the compute device then. That checks what matters on a GPU: nothing runs off the device
(it would fail there), and Video-XL and T5 are never on it while the denoiser runs. One test moves
parts to the meta device for real, so the moves themselves are seen to happen.
"""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from longanimation_fixtures import TINY_DGLM, _randomize, tiny_weights_dir  # noqa: E402

from longanim.engine.backends import create_backend  # noqa: E402
from longanim.engine.backends.base import BackendError, Keyframe  # noqa: E402
from longanim.engine.backends.longanimation.residency import (  # noqa: E402
    COMPONENTS,
    DENOISER,
    PHASES,
    PLANS,
    Residency,
    parse_offload,
    resident,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def videoxl_weights(tmp_path_factory):
    """The tiny weights with a Video-XL release in place of the light encoder, the DGLM reading its 512-d cache."""
    from safetensors.torch import save_file
    from test_longanimation_videoxl import DGLM_CLIP, DGLM_RATIO, DGLM_SCALE, DGLM_VIDEOXL, write_tiny_release

    from longanim.engine.backends.longanimation import weights as W
    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory

    root = tmp_path_factory.mktemp("residency") / "weights"
    shutil.copytree(tiny_weights_dir(tmp_path_factory), root)
    shutil.rmtree(root / W.MEMORY_FOLDER)
    write_tiny_release(root, lm=DGLM_VIDEOXL, clip_config=DGLM_CLIP, ratio=DGLM_RATIO, scale=DGLM_SCALE)
    config = dict(TINY_DGLM, memory_dim=512)
    glm = _randomize(DynamicGlobalLocalMemory(**config), 5)
    save_file({k: v.contiguous() for k, v in glm.state_dict().items()}, str(root / W.GLM_FILE))
    (root / W.GLM_FILE).with_suffix(".json").write_text(json.dumps(config))
    return root


def test_the_model_plan_keeps_video_xl_and_t5_away_from_the_denoiser():
    for phase in PHASES:
        on = resident("model", phase)
        assert on, phase
        if on & DENOISER:
            assert on == DENOISER  # the denoise phase holds the denoiser and nothing else
    assert resident("model", "denoise").isdisjoint({"memory_encoder", "text_encoder"})
    assert set().union(*PLANS["model"].values()) == set(COMPONENTS)  # every part has a phase it runs in
    assert all(resident("none", p) == set(COMPONENTS) for p in PHASES)


def test_offload_option_values():
    assert parse_offload("model") == parse_offload(True) == parse_offload("true") == "model"
    assert parse_offload("none") == parse_offload(False) == parse_offload("false") == "none"
    with pytest.raises(ValueError, match="offload must be one of none, model"):
        parse_offload("sequential")
    with pytest.raises(ValueError, match="unknown phase 'sample'"):
        resident("model", "sample")


def test_parts_really_move_to_the_compute_device(weights):
    """The meta device as the compute device: entering a phase moves exactly its parts' parameters there."""
    from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline

    pipe = LongAnimationPipeline.from_weights(weights, offload="model")
    residency = Residency(pipe, "model", device="meta", offload_device="cpu")
    residency.enter("denoise")
    devices = {name: {p.device.type for p in getattr(pipe, name).parameters()} for name in residency.modules()}
    assert devices == {"transformer": {"meta"}, "sketch_dit": {"meta"}, "dglm": {"meta"}, "memory_encoder": {"cpu"},
                       "text_encoder": {"cpu"}, "vae": {"cpu"}, "lineart": {"cpu"}}


class Recorder:
    """For every part that runs: the phase and what the plan had on the compute device at that moment."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.runs: list[tuple[str, str | None, frozenset[str]]] = []
        self.moves: list[tuple[str, str]] = []
        pipe.residency.on_move = lambda name, device: self.moves.append((name, pipe.residency.where[name]))
        for name in COMPONENTS:
            module = getattr(pipe, name)
            if module is not None:
                for part in _running_parts(name, module):
                    part.register_forward_pre_hook(self._hook(name))

    def _hook(self, name):
        def hook(*_):
            self.runs.append((name, self.pipe.residency.phase, self.pipe.residency.on_device()))
        return hook

    def ran(self) -> set[str]:
        return {name for name, _, _ in self.runs}


def _running_parts(name: str, module) -> list:
    """What a part's work goes through: the VAE's encode/decode and the memory encoders' encode never
    call their own forward, so their first submodules are hooked."""
    if name == "vae":
        return [module.encoder, module.decoder]
    if name == "memory_encoder":  # Video-XL: the vision tower, then the LM's embeddings; the light one: its patchify
        return [module.model.vision_tower, module.model.embed_tokens] if hasattr(module, "model") else [module.patch]
    return [module]


def _colorize(root, n: int, **options):
    from longanim.engine.evaluation.synthetic import make_shot

    b = create_backend("longanimation", weights=str(root), tiny=True, device="cpu", dtype="fp32", **options)
    recorder = Recorder(b.pipeline())
    shot = make_shot(n, 16, 16, 0)
    out = list(b.colorize([(1001 + i, shot.lineart(i)) for i in range(n)], [Keyframe(1001, shot.color(0))]))
    assert len(out) == n
    return b.pipeline(), recorder


@pytest.mark.parametrize("root", ["weights", "videoxl_weights"])
def test_model_offload_runs_every_part_on_the_device_and_one_phase_at_a_time(root, request):
    pipe, recorder = _colorize(request.getfixturevalue(root), 30, offload="model")
    assert pipe.offload == "model"
    assert recorder.ran() == set(COMPONENTS)  # the memory encoder ran too: segment 2 on read the memory
    for name, phase, on_device in recorder.runs:
        assert name in on_device, (name, phase, on_device)  # nothing ran off the compute device
        assert on_device == resident("model", phase), (name, phase, on_device)  # and nothing else was there
        if name in DENOISER:
            assert on_device.isdisjoint({"memory_encoder", "text_encoder"})
    segments = sum(1 for phase, _ in pipe.residency.log if phase == "decode")
    assert segments >= 3
    # the denoiser comes and goes once per segment, no more: moves follow the phases, not the calls
    assert recorder.moves.count(("transformer", "compute")) == segments
    assert recorder.moves.count(("transformer", "offload")) == segments


def test_no_offload_keeps_everything_on_the_device(videoxl_weights):
    pipe, recorder = _colorize(videoxl_weights, 30, offload="none")
    assert recorder.moves == []  # placed once when the pipeline was built, never moved again
    assert recorder.ran() == set(COMPONENTS)
    assert all(on_device == set(COMPONENTS) for _, _, on_device in recorder.runs)


def test_bad_offload_option_is_named(weights):
    with pytest.raises(BackendError, match="offload must be one of none, model"):
        create_backend("longanimation", weights=str(weights), offload="everything")
    b = create_backend("longanimation", weights=str(weights), tiny=True, device="cpu", offload=True)
    assert b.offload == "model"


def test_a_part_swapped_in_after_loading_is_placed_too(weights):
    from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline

    pipe = LongAnimationPipeline.from_weights(weights, offload="model")
    old = pipe.vae
    pipe.residency.enter("decode")
    pipe.vae = type(old).from_config(old.config)
    moved = []
    pipe.residency.on_move = lambda name, device: moved.append(name)
    pipe.residency.enter("decode")
    assert moved == ["vae"] and pipe.residency.on_device() == {"vae"}
