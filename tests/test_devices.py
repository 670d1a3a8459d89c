"""GPU split shares and RPC servers handed to llama.cpp's model parameters."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from ggflip.backends.devices import model_devices, tensor_split_array
from ggflip.backends.llama import LlamaBackend
from ggflip.config.models_toml import LlamaSettings
from ggflip.errors import BackendError


def test_tensor_split_is_padded_to_max_devices() -> None:
    capacity = int(llama_cpp.llama_max_devices())
    array = tensor_split_array(llama_cpp, (3.0, 1.0))
    assert array is not None and len(array) == capacity
    assert list(array)[:2] == [3.0, 1.0] and all(v == 0 for v in list(array)[2:])
    assert tensor_split_array(llama_cpp, ()) is None
    with pytest.raises(BackendError, match="at most"):
        tensor_split_array(llama_cpp, (1.0,) * (capacity + 1))


def test_no_rpc_servers_means_llama_cpp_default_devices() -> None:
    assert model_devices(llama_cpp, ()) is None


@pytest.mark.skipif(
    bool(llama_cpp.llama_supports_rpc()), reason="this llama-cpp-python was built with GGML_RPC=on"
)
def test_rpc_servers_without_an_rpc_build_is_a_clear_error(tiny_gguf_dir: Path) -> None:
    settings = LlamaSettings(n_ctx=64, n_threads=1, rpc_servers=("127.0.0.1:50052",))
    with pytest.raises(BackendError, match="built without RPC.*GGML_RPC=on"):
        LlamaBackend(tiny_gguf_dir / "base.gguf", settings)


def test_a_tensor_split_reaches_llama_cpps_model_params(
    tiny_gguf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shares are in the `llama_model_params` that `llama_model_load_from_file` receives."""
    seen: list[list[float]] = []
    load = llama_cpp.llama_model_load_from_file

    def spy(path: bytes, params: llama_cpp.llama_model_params) -> object:
        seen.append([params.tensor_split[i] for i in range(int(llama_cpp.llama_max_devices()))])
        return load(path, params)

    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", spy)
    backend = LlamaBackend(
        tiny_gguf_dir / "base.gguf", LlamaSettings(n_ctx=64, n_threads=1, tensor_split=(3.0, 1.0))
    )
    backend.close()
    assert len(seen) == 1 and seen[0][:2] == [3.0, 1.0] and not any(seen[0][2:])


def test_unreachable_rpc_server_is_refused_before_llama_cpp_sees_it() -> None:
    import socket

    from ggflip.backends.devices import check_reachable

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(BackendError, match=f"cannot reach RPC server 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", timeout=2)
