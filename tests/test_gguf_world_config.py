"""models.toml GPU keys (tensor_split, rpc_servers) and hf:// references, parsed strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.config.models_toml import load_models_toml
from ggflip.errors import ConfigError
from ggflip.gguf.hf import parse_hf_ref

DATA = Path(__file__).parent / "data" / "config"


def test_gpu_keys_and_hf_reference() -> None:
    big = load_models_toml(DATA / "gpu_keys.toml").get_set("big")
    assert big.baseline.llama.tensor_split == (3.0, 1.5)
    assert big.baseline.llama.rpc_servers == ("192.168.1.20:50052", "[::1]:50053")
    assert big.quants[0].llama.rpc_servers == ()
    assert big.quants[0].llama.n_gpu_layers == 99
    assert big.baseline.ref == "hf://acme/big-model-GGUF@v1/f16/big-F16-00001-of-00002.gguf"
    assert big.quants[0].ref == "" and big.quants[0].path == DATA / "q4.gguf"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "bad_tensor_split.toml",
            r"\[sets.x.baseline.llama\] tensor_split: expected shares of 0 or more, got 'a'",
        ),
        ("bad_rpc_servers.toml", r"\[sets.x.llama\] rpc_servers: expected \"host:port\""),
        (
            "bad_hf_ref.toml",
            r"\[sets.x.baseline\] path: expected hf://OWNER/REPO\[@REVISION\]/FILE.gguf",
        ),
    ],
)
def test_bad_gpu_keys_and_references(fixture: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_models_toml(DATA / fixture)


def test_hf_reference_parts() -> None:
    ref = parse_hf_ref("hf://acme/m-GGUF@main/sub/dir/m-Q4_K_M.gguf")
    assert (ref.repo_id, ref.filename, ref.revision) == (
        "acme/m-GGUF",
        "sub/dir/m-Q4_K_M.gguf",
        "main",
    )
    assert parse_hf_ref("hf://acme/m/m.gguf").revision is None
    with pytest.raises(ValueError):
        parse_hf_ref("hf://acme/m.gguf")
