"""Checks a weights folder component by component, and the GPU, before a long job starts.

Only safetensors headers and configs are read and models are built on the meta
device, so checking the full 5B release takes seconds and no memory.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def _module_check(name: str, path: Path, build) -> Check:
    from accelerate import init_empty_weights

    from longanim.engine.backends.longanimation import weights as W

    if not path.is_file():
        return Check(name, FAIL, problems=[f"{path}: file not found"])
    try:
        with init_empty_weights():
            model = build()
        found = W.safetensors_shapes([path])
    except (W.WeightsError, ValueError, TypeError) as exc:
        return Check(name, FAIL, problems=[str(exc)])
    problems = W.compare_shapes(W.model_shapes(model), found)
    params = sum(_numel(s) for s in found.values())
    detail = f"{len(found)} tensors, {params:,} parameters"
    return Check(name, FAIL if problems else OK, detail, problems)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_weights(root: str | Path, *, memory: bool = True) -> list[Check]:
    """Every component a run loads. `memory=False`: the backend will run without the DGLM's memory,
    so no memory encoder is needed."""
    from longanim.engine.backends.longanimation import weights as W

    layout = W.WeightsLayout(Path(root))
    if not layout.root.is_dir():
        return [Check("weights folder", FAIL, problems=[f"{layout.root}: not a folder"])]
    checks = []
    try:
        base_config = W.base_transformer_config(layout)
    except W.WeightsError as exc:
        base_config = None
        base_problem = str(exc)
    for part in W.BASE_PARTS:
        problems = W.check_base_part(layout, part)
        detail = ""
        if part == "tokenizer" and not problems:
            detail, problems = _load_tokenizer(layout.base / part)
        checks.append(Check(f"{W.BASE_FOLDER}/{part}", FAIL if problems else OK, detail, problems))
    if base_config is None:
        checks.append(Check("SketchDiT (control_module.safetensors)", FAIL,
                            problems=[f"cannot size SketchDiT without the base transformer config: {base_problem}"]))
    else:
        checks.append(_module_check("SketchDiT (control_module.safetensors)", layout.control,
                                    lambda: W.build_sketch_dit(layout, base_config)))
    checks.append(_module_check("DGLM (glm_module.safetensors)", layout.glm, lambda: W.build_dglm(layout)))
    checks.append(_lineart_check(layout))
    if not memory:
        checks.append(Check("memory encoder", OK, "not checked (running without memory)"))
        return checks
    checks.append(_memory_check(layout))
    return checks


def _load_tokenizer(folder: Path) -> tuple[str, list[str]]:
    """The tokenizer loaded for real: the T5 one needs sentencepiece and protobuf, which a file check misses."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # missing packages and bad files surface as many exception types
        hint = ""
        if any(name in str(exc).lower() for name in ("sentencepiece", "protobuf")):
            hint = " (install the model extra: pip install 'longanim[model]', which brings sentencepiece and protobuf)"
        return "", [f"{folder}: cannot load the tokenizer: {type(exc).__name__}: {exc}{hint}"]
    return f"{type(tokenizer).__name__}, {len(tokenizer)} tokens", []


def _lineart_check(layout) -> Check:
    from longanim.engine.backends.longanimation.lineart_network import check_lineart_network, read_state_dict

    name = f"line-art network ({layout.lineart.name})"
    problems = check_lineart_network(layout.lineart)
    if problems and not layout.lineart.exists():
        problems = [f"{layout.lineart}: file not found (the informative-drawings generator, sk_model.pth from "
                    "huggingface.co/lllyasviel/Annotators; every frame's sketch comes from it)"]
    detail = ""
    if not problems:
        state = read_state_dict(layout.lineart)
        detail = f"{len(state)} tensors, {sum(v.numel() for v in state.values()):,} parameters"
    return Check(name, FAIL if problems else OK, detail, problems)


def _memory_check(layout) -> Check:
    """Video-XL (what the released DGLM was trained on), checked by its own module; else a light
    encoder, which feeds the released DGLM features it never saw."""
    import json

    from longanim.engine.backends.longanimation import weights as W

    if layout.videoxl.exists():
        name = f"Video-XL memory encoder ({W.VIDEOXL_FOLDER})"
        module = W.videoxl_module()
        if module is None:
            return Check(name, FAIL, problems=[f"{layout.videoxl}: present, but this build has no Video-XL memory "
                                               "encoder (engine/backends/longanimation/videoxl.py)"])
        problems = list(module.check_videoxl(layout.root))
        return Check(name, FAIL if problems else OK, "", problems)
    if not layout.memory_encoder.exists():
        return Check("memory encoder", FAIL, problems=[
            f"{layout.videoxl}: not found (Video-XL, which the released DGLM reads: huggingface.co/sy1998/Video_XL, "
            "its VideoXL_weight_8 folder); or run without memory (--no-memory / memory=false)"])
    name = f"memory encoder ({W.MEMORY_FOLDER})"
    problems = W.check_memory_encoder(layout)
    if problems:
        return Check(name, FAIL, "", problems)
    config = json.loads((layout.memory_encoder / "config.json").read_text())
    glm = layout.sidecar_config(layout.glm)
    import inspect

    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory

    defaults = {k: p.default for k, p in inspect.signature(DynamicGlobalLocalMemory.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    glm_config = dict(defaults, **(glm or {}))
    fit = [f"{W.MEMORY_FOLDER}/config.json: {key} {config.get(key)} does not match the DGLM's {glm_key} "
           f"{glm_config[glm_key]}"
           for key, glm_key in (("num_layers", "num_memory_layers"), ("kv_dim", "memory_dim"))
           if config.get(key) != glm_config[glm_key]]
    if fit:
        return Check(name, FAIL, "", fit)
    light = f"a {config.get('_class_name')}, not Video-XL"
    if glm is None:  # release-sized DGLM: the released one, trained on Video-XL features
        return Check(name, FAIL, light, [
            "the released DGLM was trained on Video-XL features; this encoder would feed it meaningless memory. "
            f"Put Video-XL at {layout.videoxl}, or run without memory (--no-memory / memory=false)"])
    return Check(name, WARN, light + ": only meaningful if this DGLM was trained with it (glm_module.json "
                 "sets its dims)")


def check_gpu(require: bool = False) -> Check:
    import torch

    missing = FAIL if require else WARN
    if not torch.cuda.is_available():
        return Check("GPU", missing, "no CUDA device visible to PyTorch: the model would run on CPU, far too slowly "
                     "for production shots")
    names = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        names.append(f"cuda:{i} {props.name} {props.total_memory / 2**30:.0f} GiB")
    detail = "; ".join(names) + f"; CUDA {torch.version.cuda}"
    driver = _driver_version()
    if driver:
        detail += f"; driver {driver}"
    big = max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    if big < 23 * 2**30:
        return Check("GPU", missing, detail, ["under 24 GB of GPU memory: even offload mode will not fit"])
    if big < 70 * 2**30:
        detail += " (use offload mode: the fully resident model needs an 80 GB card)"
    return Check("GPU", OK, detail)


def _driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def format_report(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"[{c.status:>4}] {c.name}" + (f": {c.detail}" if c.detail else ""))
        lines += [f"         {p}" for p in c.problems]
    broken = [c.name for c in checks if c.status == FAIL]
    lines.append(f"{len(broken)} component(s) broken: {', '.join(broken)}" if broken else "all components ok")
    return "\n".join(lines)
