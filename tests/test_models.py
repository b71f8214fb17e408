"""Model loading: the bundled GGUF, its safetensors cache, devices and dtypes."""

from __future__ import annotations

import pytest
import torch

from deft_core.errors import DeftError
from deft_core.models import bundled_gguf_path, load_model, resolve_device, resolve_dtype


@pytest.mark.model
def test_cached_conversion_gives_identical_logits(bundled_fp32):
    from transformers import AutoModelForCausalLM

    gguf = bundled_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    ids = torch.tensor([[1, 504, 3458, 314, 253, 5248, 30]])
    with torch.no_grad():
        expected = direct(input_ids=ids).logits
        actual = bundled_fp32.model(input_ids=ids).logits
    assert torch.equal(actual, expected)
    assert getattr(bundled_fp32.model.config, "quantization_config", None) is None


def test_device_and_dtype_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("fp32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) in (torch.bfloat16, torch.float32)


def test_invalid_device_and_dtype():
    with pytest.raises(DeftError, match="invalid dtype 'int3'"):
        resolve_dtype("int3", torch.device("cpu"))
    with pytest.raises(DeftError, match="invalid device"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(DeftError, match="CUDA is not available"):
            resolve_device("cuda")


def test_missing_model_paths(tmp_path):
    with pytest.raises(DeftError, match="model file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeftError, match=r"config\.json is missing"):
        load_model(str(tmp_path / "empty"))


def test_unknown_hub_model_fails_offline():
    with pytest.raises(DeftError, match="cannot load model"):
        load_model("no-such-owner/no-such-model-deft")
