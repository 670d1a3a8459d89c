"""The llama settings whose models.toml values are arrays: `tensor_split` and `rpc_servers`.

Each parser takes the value and the models.toml place (`models_toml._Where`, whose `error` builds
the `ConfigError` naming the file, table and key) and returns the tuple `LlamaSettings` holds.
"""

from __future__ import annotations

from typing import Any


def _parse_tensor_split(value: Any, where: Any, key: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise where.error(
            f"expected a non-empty array of numbers (one share per GPU), got {value!r}", key
        )
    shares = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
            raise where.error(f"expected shares of 0 or more, got {item!r}", key)
        shares.append(float(item))
    if sum(shares) <= 0:
        raise where.error("at least one share must be positive", key)
    return tuple(shares)


def _parse_rpc_servers(value: Any, where: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise where.error(f'expected an array of "host:port" strings, got {value!r}', key)
    servers = []
    for item in value:
        host, _, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise where.error(
                f'expected "host:port" (e.g. "192.168.1.20:50052"), got {item!r}', key
            )
        servers.append(item)
    return tuple(servers)


LIST_PARSERS: dict[str, Any] = {
    "tensor_split": _parse_tensor_split,
    "rpc_servers": _parse_rpc_servers,
}
