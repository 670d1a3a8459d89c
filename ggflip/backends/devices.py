"""llama.cpp devices for one model: RPC servers registered once per process, GPU split shares.

llama-cpp-python 0.3.x has no RPC binding of its own. llama.cpp's tools register an RPC server
with `ggml_backend_rpc_add_server(endpoint)` (looked up through the "RPC" backend registry)
and `ggml_backend_register`, after which its device is one more GPU-type device; this module
does the same through ctypes, on the ggml that libllama itself is linked with. Each model then
gets an explicit NULL-terminated `llama_model_params.devices` list: its own RPC servers first
(as llama.cpp orders them), then the local GPUs, so a model without `rpc_servers` never
offloads to a server another model registered.
"""

from __future__ import annotations

import ctypes
import socket
import threading
from typing import Any

from ggflip.errors import BackendError

_DEVICE_TYPE_GPU, _DEVICE_TYPE_IGPU = 1, 2  # enum ggml_backend_dev_type
_lock = threading.Lock()
_servers: dict[str, list[int]] = {}  # endpoint -> its device handles


def _ggml(lib: Any) -> ctypes.CDLL:
    """libllama's CDLL with the ggml backend-registry functions typed (dlsym follows its
    dependencies)."""
    from llama_cpp import llama_cpp as bindings

    del lib
    native = bindings._lib
    p, s, z = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    for name, restype, argtypes in (
        ("ggml_backend_reg_by_name", p, [s]),
        ("ggml_backend_reg_get_proc_address", p, [p, s]),
        ("ggml_backend_register", None, [p]),
        ("ggml_backend_reg_dev_count", z, [p]),
        ("ggml_backend_reg_dev_get", p, [p, z]),
        ("ggml_backend_reg_name", s, [p]),
        ("ggml_backend_dev_count", z, []),
        ("ggml_backend_dev_get", p, [z]),
        ("ggml_backend_dev_type", ctypes.c_int, [p]),
        ("ggml_backend_dev_backend_reg", p, [p]),
        ("ggml_backend_dev_name", s, [p]),
        ("ggml_backend_dev_description", s, [p]),
    ):
        function = getattr(native, name)
        function.restype, function.argtypes = restype, argtypes
    return native  # type: ignore[no-any-return]


def check_reachable(endpoint: str, timeout: float = 5.0) -> None:
    """Refuse a server that does not accept a TCP connection: llama.cpp would abort the process.

    Raises:
        BackendError: naming the endpoint.
    """
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise BackendError(
            f"rpc_servers: cannot reach RPC server {endpoint} ({exc.strerror or exc}); start "
            "rpc-server there (ggml-rpc-server -H 0.0.0.0 -p PORT) or remove it from models.toml"
        ) from None


def _add_server(lib: Any, endpoint: str) -> list[int]:
    ggml = _ggml(lib)
    if not lib.llama_supports_rpc():
        raise BackendError(
            "rpc_servers is set but this llama-cpp-python was built without RPC; reinstall it with "
            'CMAKE_ARGS="-DGGML_RPC=on" pip install --force-reinstall --no-cache-dir '
            "llama-cpp-python"
        )
    check_reachable(endpoint)
    rpc_reg = ggml.ggml_backend_reg_by_name(b"RPC")
    address = ggml.ggml_backend_reg_get_proc_address(rpc_reg, b"ggml_backend_rpc_add_server")
    if not rpc_reg or not address:
        raise BackendError(
            "llama.cpp's RPC backend lacks ggml_backend_rpc_add_server (llama-cpp-python too old?)"
        )
    add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(address)
    server_reg = add_server(endpoint.encode())
    if not server_reg:
        raise BackendError(f"rpc_servers: llama.cpp could not add RPC server {endpoint}")
    ggml.ggml_backend_register(server_reg)
    devices = [
        ggml.ggml_backend_reg_dev_get(server_reg, i)
        for i in range(ggml.ggml_backend_reg_dev_count(server_reg))
    ]
    if not devices:
        raise BackendError(
            f"rpc_servers: RPC server {endpoint} offers no device (is rpc-server running there?)"
        )
    return devices


def _local_gpus(ggml: ctypes.CDLL) -> list[int]:
    gpus = []
    for i in range(ggml.ggml_backend_dev_count()):
        device = ggml.ggml_backend_dev_get(i)
        if ggml.ggml_backend_dev_type(device) not in (_DEVICE_TYPE_GPU, _DEVICE_TYPE_IGPU):
            continue
        if ggml.ggml_backend_reg_name(ggml.ggml_backend_dev_backend_reg(device)) != b"RPC":
            gpus.append(device)
    return gpus


def device_descriptions(lib: Any) -> list[str]:
    """`name: description` of every device this llama.cpp build registered (CPU, GPUs, RPC)."""
    ggml = _ggml(lib)
    out = []
    for i in range(ggml.ggml_backend_dev_count()):
        device = ggml.ggml_backend_dev_get(i)
        name = (ggml.ggml_backend_dev_name(device) or b"").decode(errors="replace")
        description = (ggml.ggml_backend_dev_description(device) or b"").decode(errors="replace")
        out.append(f"{name}: {description}")
    return out


def model_devices(lib: Any, rpc_servers: tuple[str, ...]) -> ctypes.Array[ctypes.c_void_p] | None:
    """The NULL-terminated device list for `llama_model_params.devices`, or None for llama.cpp's
    default.

    Raises:
        BackendError: RPC is not built in, or a server cannot be added.
    """
    with _lock:
        for endpoint in rpc_servers:
            if endpoint not in _servers:
                _servers[endpoint] = _add_server(lib, endpoint)
        if not _servers:
            return None
        chosen = [
            device for endpoint in rpc_servers for device in _servers[endpoint]
        ] + _local_gpus(_ggml(lib))
    return (ctypes.c_void_p * (len(chosen) + 1))(*chosen, None)


def tensor_split_array(lib: Any, shares: tuple[float, ...]) -> ctypes.Array[ctypes.c_float] | None:
    """`llama_model_params.tensor_split`: one share per device, padded to llama_max_devices().

    Raises:
        BackendError: more shares than llama.cpp supports devices.
    """
    if not shares:
        return None
    capacity = int(lib.llama_max_devices())
    if len(shares) > capacity:
        raise BackendError(
            f"tensor_split has {len(shares)} shares but llama.cpp supports at most {capacity} "
            "devices"
        )
    return (ctypes.c_float * capacity)(*shares)
