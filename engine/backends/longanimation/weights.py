"""The weights folder, laid out like the release, and strict loading of every part.

    WEIGHTS/
      control_module.safetensors    SketchDiT (release keys, no prefix)
      glm_module.safetensors        DGLM
      control_module.json           optional: SketchDiT config overrides (not in the release: its dims are the defaults)
      glm_module.json               optional: DGLM config overrides
      CogVideoX1.5-5B-I2V/          diffusers folder: transformer, vae, scheduler, text_encoder, tokenizer
      sk_model.pth                  the line-art network (informative-drawings generator, a torch state dict)
      Video_XL/VideoXL_weight_8/    the Video-XL memory encoder the released DGLM reads (its own module
                                    checks and loads it: `videoxl.check_videoxl` / `load_videoxl_encoder`)
      memory_encoder/               instead of Video-XL, a light memory encoder (tiny configs, training from
                                    scratch); config.json names its class

The reference loads the two release files non-strictly, so a renamed or
truncated file silently runs with zeroed control. Here a missing, unexpected or
wrongly shaped key is an error naming it; the base model folders get the same
check (shapes from the safetensors headers against the model built on the meta
device) before their weights are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from longanim.engine.backends.base import BackendError

CONTROL_FILE = "control_module.safetensors"
GLM_FILE = "glm_module.safetensors"
BASE_FOLDER = "CogVideoX1.5-5B-I2V"
MEMORY_FOLDER = "memory_encoder"
LINEART_FILE = "sk_model.pth"
VIDEOXL_FOLDER = "Video_XL/VideoXL_weight_8"
BASE_PARTS = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")
_SHOWN = 5


class WeightsError(BackendError):
    """A weights file or folder is missing, unreadable or does not match the model."""


@dataclass(frozen=True)
class WeightsLayout:
    root: Path

    @property
    def control(self) -> Path:
        return self.root / CONTROL_FILE

    @property
    def glm(self) -> Path:
        return self.root / GLM_FILE

    @property
    def base(self) -> Path:
        return self.root / BASE_FOLDER

    @property
    def memory_encoder(self) -> Path:
        return self.root / MEMORY_FOLDER

    @property
    def lineart(self) -> Path:
        return self.root / LINEART_FILE

    @property
    def videoxl(self) -> Path:
        return self.root / VIDEOXL_FOLDER

    def sidecar_config(self, weights_file: Path) -> dict | None:
        path = weights_file.with_suffix(".json")
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path}: unreadable config: {exc}") from None


def safetensors_shapes(paths: list[Path]) -> dict[str, tuple[int, ...]]:
    """Key -> shape from safetensors headers only (no tensor data is read)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except FileNotFoundError:
            raise WeightsError(f"{path}: file not found") from None
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise WeightsError(f"{path}: not a readable safetensors file: {exc}") from None
    return shapes


def compare_shapes(
    expected: dict[str, tuple[int, ...]],
    found: dict[str, tuple[int, ...]],
    *,
    optional: set[str] = frozenset(),
) -> list[str]:
    """Every problem as one line naming the key; empty when the file fits the model exactly."""
    problems = []
    missing = sorted(k for k in expected if k not in found and k not in optional)
    unexpected = sorted(k for k in found if k not in expected)
    wrong = sorted(k for k in expected if k in found and tuple(found[k]) != tuple(expected[k]))
    for label, keys in (("missing key", missing), ("unexpected key", unexpected)):
        problems += [f"{label} {k!r}" for k in keys[:_SHOWN]]
        if len(keys) > _SHOWN:
            problems.append(f"... and {len(keys) - _SHOWN} more {label}s")
    problems += [
        f"wrong shape for key {k!r}: file has {list(found[k])}, model expects {list(expected[k])}"
        for k in wrong[:_SHOWN]
    ]
    if len(wrong) > _SHOWN:
        problems.append(f"... and {len(wrong) - _SHOWN} more wrongly shaped keys")
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise WeightsError(f"{what} does not match the model:\n  " + "\n  ".join(problems))


def model_shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_file_strict(build, path: Path):
    """Build a module with `build()` and fill it from one safetensors file whose keys must be exactly its own.

    The check runs on a meta-device copy first, so a mismatched file fails before memory is spent.
    """
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    with init_empty_weights():
        expected = model_shapes(build())
    _raise_if(compare_shapes(expected, safetensors_shapes([path])), str(path))
    module = build()
    module.load_state_dict(load_file(str(path)), strict=True)
    return module.eval()


def build_sketch_dit(layout: WeightsLayout, base_config: dict):
    from longanim.engine.backends.longanimation.sketch_dit import SketchDiT

    config = SketchDiT.config_from_base(base_config, **(layout.sidecar_config(layout.control) or {}))
    return SketchDiT.from_config(config)


def build_dglm(layout: WeightsLayout):
    from longanim.engine.backends.longanimation.dglm import DynamicGlobalLocalMemory

    config = layout.sidecar_config(layout.glm) or {}
    return DynamicGlobalLocalMemory.from_config(config)


def load_sketch_dit(layout: WeightsLayout, base_config: dict):
    return load_file_strict(lambda: build_sketch_dit(layout, base_config), layout.control)


def load_dglm(layout: WeightsLayout):
    return load_file_strict(lambda: build_dglm(layout), layout.glm)


# --- folders saved with save_pretrained -------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a saved model folder (sharded through an index, or single)."""
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        try:
            names = sorted(set(json.loads(indexes[0].read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise WeightsError(f"{indexes[0]}: unreadable shard index: {exc}") from None
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{folder}: no .safetensors weights (other formats are not loaded)")
    return files


def _tied_keys(model) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    pairs = tied.items() if isinstance(tied, dict) else ((k, None) for k in tied)
    return {k for pair in pairs for k in pair if k}


def check_model_folder(folder: Path, cls) -> list[str]:
    """Problems of a diffusers/transformers model folder against `cls` built from its config (meta device)."""
    from accelerate import init_empty_weights

    if not (folder / "config.json").is_file():
        return [f"{folder}: no config.json"]
    try:
        with init_empty_weights():
            if hasattr(cls, "load_config"):  # diffusers
                model = cls.from_config(cls.load_config(folder))
            else:  # transformers
                from transformers import AutoConfig

                model = cls(AutoConfig.from_pretrained(folder))
    except Exception as exc:
        return [f"{folder}/config.json: cannot build {cls.__name__}: {exc}"]
    try:
        found = safetensors_shapes(weight_files(folder))
    except WeightsError as exc:
        return [str(exc)]
    expected = model_shapes(model)
    tied = _tied_keys(model)
    optional = {k for k in tied if k in expected and any(t in found for t in tied if t != k)}
    return compare_shapes(expected, found, optional=optional)


def base_part_classes() -> dict[str, type]:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5EncoderModel

    return {
        "transformer": CogVideoXTransformer3DModel,
        "vae": AutoencoderKLCogVideoX,
        "text_encoder": T5EncoderModel,
    }


def check_base_part(layout: WeightsLayout, part: str) -> list[str]:
    folder = layout.base / part
    if not folder.is_dir():
        return [f"{folder}: folder not found"]
    if part == "scheduler":
        return [] if (folder / "scheduler_config.json").is_file() else [f"{folder}: no scheduler_config.json"]
    if part == "tokenizer":
        known = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
        return [] if any((folder / n).is_file() for n in known) else [f"{folder}: no tokenizer files"]
    return check_model_folder(folder, base_part_classes()[part])


def load_base_part(layout: WeightsLayout, part: str, dtype):
    """Check a base part strictly, then load it."""
    _raise_if(check_base_part(layout, part), str(layout.base / part))
    folder = layout.base / part
    if part == "scheduler":
        from diffusers import CogVideoXDPMScheduler

        return CogVideoXDPMScheduler.from_pretrained(folder)
    if part == "tokenizer":
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)
    return base_part_classes()[part].from_pretrained(folder, torch_dtype=dtype).eval()


def base_transformer_config(layout: WeightsLayout) -> dict:
    path = layout.base / "transformer" / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: not found (is {layout.root} a LongAnimation weights folder?)") from None
    except ValueError as exc:
        raise WeightsError(f"{path}: unreadable: {exc}") from None


def check_memory_encoder(layout: WeightsLayout) -> list[str]:
    from longanim.engine.backends.longanimation.memory_encoder import ENCODER_CLASSES

    folder = layout.memory_encoder
    if not (folder / "config.json").is_file():
        return [f"{folder}: no memory encoder (config.json missing)"]
    try:
        name = json.loads((folder / "config.json").read_text()).get("_class_name")
    except ValueError as exc:
        return [f"{folder}/config.json: unreadable: {exc}"]
    if name not in ENCODER_CLASSES:
        return [f"{folder}: unsupported memory encoder class {name!r}"]
    return check_model_folder(folder, ENCODER_CLASSES[name])


def load_memory_encoder(layout: WeightsLayout, dtype):
    """Video-XL when the folder has it (what the released DGLM was trained on), else the light encoder."""
    from longanim.engine.backends.longanimation.memory_encoder import load_memory_encoder as load

    if layout.videoxl.exists():
        module = videoxl_module()
        if module is None:
            raise WeightsError(f"{layout.videoxl}: a Video-XL folder is present, but this build has no Video-XL "
                               "memory encoder (engine/backends/longanimation/videoxl.py)")
        _raise_if(module.check_videoxl(layout.root), str(layout.videoxl))
        return module.load_videoxl_encoder(layout.root, dtype)
    _raise_if(check_memory_encoder(layout), str(layout.memory_encoder))
    return load(layout.memory_encoder).eval()


def load_lineart(layout: WeightsLayout):
    from longanim.engine.backends.longanimation.lineart_network import load_lineart_network

    return load_lineart_network(layout.lineart)


def videoxl_module():
    """The Video-XL encoder's module, or None while this build has none (it is imported only when used)."""
    import importlib

    try:
        return importlib.import_module("longanim.engine.backends.longanimation.videoxl")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("longanimation.videoxl"):
            return None
        raise
