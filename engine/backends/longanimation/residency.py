"""Which model parts sit on the compute device in each phase of a run, and the moves between phases.

The released parts' parameters in bf16, counted on the meta device from their configs
(bench/results/longanimation_residency.md): base transformer 10.4 GiB, SketchDiT 1.5, DGLM 0.75,
Video-XL with its vision tower 14.6, T5-XXL encoder 10.75 (its `wo` layers stay fp32), VAE 0.4,
line-art network 0.01 -- 38.4 GiB together, and the denoiser beside Video-XL alone is 27 GiB. A
24 GB card cannot hold them at once, so the plan is explicit, per phase:

    phase     what runs                                  "none"   "model" (on the device)
    prompt    T5 encodes the prompt (once per run)       all      text_encoder
    lineart   the line-art network makes the sketches    all      lineart
    latents   VAE encodes the reference and sketches     all      vae
    memory    Video-XL reads the frames made so far      all      memory_encoder
    denoise   SketchDiT + DGLM + base, every step        all      transformer, sketch_dit, dglm
    decode    VAE decodes the segment                    all      vae

"model" keeps exactly one phase's parts on the device, so Video-XL and T5 are never there while
the denoiser runs, and the peak is the largest phase, not the sum. A part moves only when the next
phase wants it elsewhere: per segment the denoiser leaves once (for the
memory and the VAE) and comes back once, 12.7 GiB each way: seconds over PCIe against the minutes
a segment's 50 steps take (bench/bench_longanimation_gpu.py --offload model measures both).

`Residency.log` records every phase entered with what was on the device then; the pipeline's
tests read it (tests/test_longanimation_residency.py).
"""

from __future__ import annotations

import contextlib
from typing import Callable

COMPONENTS = ("transformer", "sketch_dit", "dglm", "memory_encoder", "text_encoder", "vae", "lineart")
PHASES = ("prompt", "lineart", "latents", "memory", "denoise", "decode")
DENOISER = frozenset({"transformer", "sketch_dit", "dglm"})

PLANS: dict[str, dict[str, frozenset[str]]] = {
    "none": {phase: frozenset(COMPONENTS) for phase in PHASES},
    "model": {
        "prompt": frozenset({"text_encoder"}),
        "lineart": frozenset({"lineart"}),
        "latents": frozenset({"vae"}),
        "memory": frozenset({"memory_encoder"}),
        "denoise": DENOISER,
        "decode": frozenset({"vae"}),
    },
}
MODES = tuple(PLANS)


def parse_offload(value) -> str:
    """The backend option: "none" | "model"; True / "true" (the older boolean form) mean "model"."""
    if value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1", "on")):
        return "model"
    if value is False or value is None or (isinstance(value, str) and value.lower() in ("false", "no", "0", "off")):
        return "none"
    if isinstance(value, str) and value.lower() in PLANS:
        return value.lower()
    raise ValueError(f"offload must be one of {', '.join(MODES)} (or true/false), got {value!r}")


def resident(mode: str, phase: str) -> frozenset[str]:
    """The parts on the compute device during `phase` under `mode`."""
    if mode not in PLANS:
        raise ValueError(f"unknown offload mode {mode!r}; choose one of {', '.join(MODES)}")
    if phase not in PLANS[mode]:
        raise ValueError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")
    return PLANS[mode][phase]


def _move(module, device) -> None:
    module.to(device)


class Residency:
    """Moves the pipeline's parts between the compute device and the offload device as the plan says.

    `parts` is the pipeline (its attributes named as COMPONENTS, read at every phase, so a part
    swapped in later is placed too) or a dict of them; None is a part this run has not loaded.
    `move(module, device)` does the move (`module.to(device)`); `on_move(name, device)` is told after
    each one, and `release()` runs after anything left the compute device (the pipeline empties
    CUDA's cache there, so the next phase finds the memory free).
    """

    def __init__(
        self, parts, mode: str = "none", *, device="cpu", offload_device="cpu",
        move: Callable = _move, on_move: Callable | None = None, release: Callable | None = None,
    ):
        if isinstance(parts, dict):
            unknown = sorted(set(parts) - set(COMPONENTS))
            if unknown:
                raise ValueError(f"unknown components {unknown}; known: {', '.join(COMPONENTS)}")
        resident(mode, PHASES[0])  # names a bad mode
        self.mode = mode
        self._parts = parts
        self.device, self.offload_device = device, offload_device
        self._move, self.on_move, self._release = move, on_move, release
        self.where: dict[str, str] = {}  # component -> "compute" | "offload"
        self._placed: dict[str, int] = {}  # component -> id() of the module placed
        self.phase: str | None = None
        self.log: list[tuple[str, frozenset[str]]] = []
        for name, module in self.modules().items():
            self._place(name, module, mode == "none")

    def modules(self) -> dict:
        get = self._parts.get if isinstance(self._parts, dict) else lambda n: getattr(self._parts, n, None)
        return {n: m for n in COMPONENTS if (m := get(n)) is not None and hasattr(m, "to")}

    def on_device(self) -> frozenset[str]:
        return frozenset(n for n, w in self.where.items() if w == "compute")

    def enter(self, phase: str) -> None:
        """Bring the phase's parts to the compute device, after sending away what the phase has no use for."""
        modules = self.modules()
        wanted = resident(self.mode, phase) & set(modules)
        for name in list(self.where):
            if name not in modules:  # unloaded since
                del self.where[name], self._placed[name]
        left = False
        for name, module in modules.items():  # evict first: never the old phase's parts plus the new ones'
            if name not in wanted and (self.where.get(name) != "offload" or self._placed[name] != id(module)):
                left |= self.where.get(name) == "compute"
                self._place(name, module, False)
        if left and self._release is not None:
            self._release()
        for name in sorted(wanted):
            if self.where.get(name) != "compute" or self._placed[name] != id(modules[name]):
                self._place(name, modules[name], True)
        self.phase = phase
        self.log.append((phase, self.on_device()))

    @contextlib.contextmanager
    def running(self, phase: str):
        """`with residency.running("decode"): ...`: the phase's parts are on the device inside."""
        self.enter(phase)
        yield

    def _place(self, name: str, module, compute: bool) -> None:
        device = self.device if compute else self.offload_device
        self._move(module, device)
        self.where[name] = "compute" if compute else "offload"
        self._placed[name] = id(module)
        if self.on_move is not None:
            self.on_move(name, device)
