"""`models.toml`: named comparison sets of a baseline GGUF, its quants, and llama.cpp settings.

The file is parsed strictly with `tomllib` into frozen dataclasses: an unknown key, a value
of the wrong type or a missing baseline is a `ConfigError` naming the file, the table and
the key. Paths are relative to the TOML file; `~`, `$VARS` and `{cache}` (ggflip's cache
directory) are expanded.

    backend = "llama"             # what computes the logits (default "llama"; "fake" for tests)
    [llama]                       # defaults for every model
    n_ctx = 2048
    n_threads = 0                 # 0: all cores
    [sets.gemma-270m]
    description = "..."
    baseline = "{cache}/models/gemma-3-270m/gemma-3-270m-F16.gguf"    # a plain path ...
    quants = [ "...Q8_0.gguf", { path = "...Q4_K_M.gguf", label = "Q4" } ]  # ... or a table
    [sets.gemma-270m.llama]       # overrides for this set; a model may carry its own `llama`
    tensor_split = [3, 1]         # GPU shares; rpc_servers = ["host:port", ...] for llama.cpp RPC

A set may name its own `backend`, overriding the top-level one; the name is looked up in
`ggflip.backends.registry` when the set runs (one backend computes every model of a set).

A model is a plain path string or a table (`path`, optional `label` and `llama`). A model without
a label gets the one `--baseline/--quant` would give it: its file name without `.gguf` and without
the prefix every unlabelled model of the set shares (`short_labels`).

A path `hf://owner/repo[@rev]/file.gguf` is kept in `ModelSpec.ref` and resolved to a local
file by `ggflip.config.resolve.resolve_model_set` before use.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ggflip.config.labels import settings_label, short_labels
from ggflip.config.llama_lists import LIST_PARSERS as _LIST_PARSERS
from ggflip.errors import ConfigError, did_you_mean
from ggflip.gguf.kv_cache_types import kv_settings_error, kv_type_error


def default_cache_dir() -> Path:
    """ggflip's cache: `$GGFLIP_CACHE_DIR`, else `$XDG_CACHE_HOME/ggflip`, else
    `~/.cache/ggflip`."""
    if os.environ.get("GGFLIP_CACHE_DIR"):
        return Path(os.environ["GGFLIP_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "ggflip"
    return Path.home() / ".cache" / "ggflip"


@dataclass(frozen=True)
class LlamaSettings:
    """How llama.cpp runs one model; every field maps to a llama.cpp model or context parameter."""

    n_ctx: int = 2048
    n_batch: int = 2048
    n_ubatch: int = 512
    n_threads: int = 0
    n_gpu_layers: int = 0
    main_gpu: int = 0
    flash_attn: bool = False
    use_mmap: bool = True
    repack: bool = True
    n_seq_max: int = 8
    tensor_split: tuple[float, ...] = ()
    rpc_servers: tuple[str, ...] = ()
    type_k: str = "f16"  # KV-cache element types (`ggflip.gguf.kv_cache_types`)
    type_v: str = "f16"
    offload_kqv: bool = True  # with GPU layers: the KV cache and attention on the GPU
    op_offload: bool = True  # with GPU layers: host-weight ops offloaded to the GPU
    swa_full: bool = True  # full-size cache for sliding-window layers (llama.cpp's default here)
    # one KV cache all sequences share (prefix sharing needs it), else one n_ctx stream each
    kv_unified: bool = True

    def resolved_threads(self) -> int:
        """Threads to give llama.cpp: the setting, or every core when it is 0."""
        return self.n_threads if self.n_threads > 0 else (os.cpu_count() or 1)


_LLAMA_FIELDS = {f.name: f for f in dataclasses.fields(LlamaSettings)}
_POSITIVE = {"n_ctx", "n_batch", "n_ubatch", "n_seq_max"}
_NON_NEGATIVE = {"n_threads", "main_gpu"}
_KV_TYPES = {"type_k", "type_v"}
_INT32_MAX = 2**31 - 1  # llama.cpp takes these as 32-bit C ints


DEFAULT_BACKEND = "llama"


@dataclass(frozen=True)
class ModelSpec:
    """One GGUF file in a comparison set."""

    label: str
    path: Path
    llama: LlamaSettings = field(default_factory=LlamaSettings)
    ref: str = ""  # an `hf://owner/repo/file.gguf` reference; `path` is valid once it is resolved

    def with_context(self, n_ctx: int, n_seq_max: int) -> ModelSpec:
        """This model with a context of `n_ctx` tokens in `n_seq_max` sequences, other settings
        kept (corpus mode's one chunk per decode)."""
        settings = dataclasses.replace(self.llama, n_ctx=n_ctx, n_seq_max=n_seq_max)
        return dataclasses.replace(self, llama=settings)


@dataclass(frozen=True)
class ModelSet:
    """A baseline and the quants compared against it."""

    name: str
    baseline: ModelSpec
    quants: tuple[ModelSpec, ...]
    description: str = ""
    backend: str = DEFAULT_BACKEND  # the `ggflip.backends.registry` name that computes the logits
    backend_where: str = ""  # where `backend` was set ("models.toml: [sets.x] backend"), for errors

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """Baseline first, then the quants in file order."""
        return (self.baseline, *self.quants)


@dataclass(frozen=True)
class ModelsConfig:
    """Everything in one models.toml."""

    path: Path
    sets: Mapping[str, ModelSet]

    def get_set(self, name: str) -> ModelSet:
        """The set called `name`; ConfigError with the known names otherwise."""
        if name not in self.sets:
            known = ", ".join(sorted(self.sets)) or "none"
            hint = did_you_mean(name, self.sets)
            raise ConfigError(f"{self.path}: no set named '{name}'{hint} (sets: {known})")
        return self.sets[name]


class _Where:
    """Names a place in the file for error messages: `models.toml: [sets.x.quants.1] key`."""

    def __init__(self, path: Path, table: str) -> None:
        self.path, self.table = path, table

    def place(self, key: str | None = None) -> str:
        """`models.toml: [table] key`, on one line whatever the names hold."""
        where = (f"[{self.table}]" if self.table else "") + (f" {key}" if key else "")
        where = where.strip()
        where = "".join(
            c if c.isprintable() else repr(c)[1:-1] for c in where
        )  # a name with a newline stays on one line
        return f"{self.path}: {where}"

    def error(self, message: str, key: str | None = None) -> ConfigError:
        return ConfigError(f"{self.place(key)}: {message}")

    def child(self, name: str) -> _Where:
        return _Where(self.path, f"{self.table}.{name}" if self.table else name)


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: _Where) -> None:
    for key in table:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            raise where.error(f"unknown key{hint} (allowed: {', '.join(sorted(allowed))})", key)


def _expect(value: Any, kind: type | tuple[type, ...], where: _Where, key: str) -> Any:
    # bool is an int subclass in Python; TOML keeps them apart, so do we.
    if isinstance(value, bool) and kind is int:
        raise where.error(f"expected an integer, got {value!r}", key)
    if not isinstance(value, kind):
        names: dict[object, str] = {str: "a string", int: "an integer", bool: "true or false"}
        name = names.get(kind, str(kind))
        raise where.error(f"expected {name}, got {type(value).__name__} {value!r}", key)
    return value


def _parse_llama(table: Any, base: LlamaSettings, where: _Where) -> LlamaSettings:
    if not isinstance(table, dict):
        raise where.error("expected a table of llama settings")
    _check_keys(table, set(_LLAMA_FIELDS), where)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _LIST_PARSERS:
            values[key] = _LIST_PARSERS[key](value, where, key)
            continue
        kind = _LLAMA_FIELDS[key].type
        expected = {"int": int, "bool": bool, "str": str}[
            kind if isinstance(kind, str) else kind.__name__
        ]
        _expect(value, expected, where, key)
        if key in _KV_TYPES and (problem := kv_type_error(value)):
            raise where.error(problem, key)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not -_INT32_MAX <= value <= _INT32_MAX
        ):
            raise where.error(f"must be between {-_INT32_MAX} and {_INT32_MAX}, got {value}", key)
        if key in _POSITIVE and value <= 0:
            raise where.error(f"must be positive, got {value}", key)
        if key in _NON_NEGATIVE and value < 0:
            raise where.error(f"must be 0 or more, got {value}", key)
        values[key] = value
    return dataclasses.replace(base, **values)


def parse_llama_table(table: Mapping[str, Any], base: LlamaSettings, where: str) -> LlamaSettings:
    """`base` with the settings of `table` (TOML-typed values), checked as models.toml's are;
    errors start with `where` (`--quant-settings: type_k: unknown KV-cache type ...`).

    Raises:
        ConfigError: an unknown setting or a bad value, or a quantized V cache without flash
            attention.
    """
    place = _Where(Path(where), "")
    settings = _parse_llama(dict(table), base, place)
    if problem := kv_settings_error(settings.type_v, settings.flash_attn):
        raise place.error(problem)
    return settings


def expand_path(raw: str, relative_to: Path) -> Path:
    """Expand `{cache}`, `$VARS` and `~` in a models.toml path; relative paths are taken from the
    file's folder."""
    text = raw.replace("{cache}", str(default_cache_dir()))
    path = Path(os.path.expanduser(os.path.expandvars(text)))
    return path if path.is_absolute() else (relative_to / path)


def _parse_model(
    table: Any, llama: LlamaSettings, where: _Where, config_dir: Path
) -> tuple[ModelSpec, str | None]:
    """The model and, when it has no `label`, its path as written (its label is derived later)."""
    if isinstance(table, str):
        table = {"path": table}
    if not isinstance(table, dict):
        raise where.error("expected a GGUF path or a table with 'path' (and optional 'label')")
    _check_keys(table, {"path", "label", "llama"}, where)
    if "path" not in table:
        raise where.error("missing required key", "path")
    raw_path = _expect(table["path"], str, where, "path")
    if not raw_path.strip() or "\x00" in raw_path:
        raise where.error("must be a file path (not empty, no NUL character)", "path")
    ref = ""
    if raw_path.startswith("hf://"):
        from ggflip.gguf.hf import parse_hf_ref

        try:
            path, ref = parse_hf_ref(raw_path).placeholder, raw_path
        except ValueError as exc:
            raise where.error(str(exc), "path") from None
    else:
        path = expand_path(raw_path, config_dir)
    label = _expect(table.get("label", path.name.removesuffix(".gguf")), str, where, "label")
    if not label.strip():
        raise where.error("must not be empty", "label")
    if "llama" in table:
        llama = _parse_llama(table["llama"], llama, where.child("llama"))
    if problem := kv_settings_error(llama.type_v, llama.flash_attn):
        raise where.error(problem, "llama")
    unlabelled = None if "label" in table else raw_path
    return ModelSpec(label=label, path=path, llama=llama, ref=ref), unlabelled


def _parse_set(
    name: str, table: Any, defaults: _SetDefaults, where: _Where, config_dir: Path
) -> ModelSet:
    if not isinstance(table, dict):
        raise where.error("expected a table")
    _check_keys(table, {"description", "baseline", "quants", "llama", "backend"}, where)
    llama = defaults.llama
    backend, backend_where = _parse_backend(table, where) or defaults.backend
    if "llama" in table:
        llama = _parse_llama(table["llama"], llama, where.child("llama"))
    if "baseline" not in table:
        raise where.error("missing required key (the F16 GGUF to compare against)", "baseline")
    raw_quants = table.get("quants", [])
    if not isinstance(raw_quants, list):
        raise where.error("expected an array of paths or tables ([[sets.NAME.quants]])", "quants")
    parsed = [_parse_model(table["baseline"], llama, where.child("baseline"), config_dir)]
    parsed += [
        _parse_model(q, llama, where.child(f"quants.{i}"), config_dir)
        for i, q in enumerate(raw_quants)
    ]
    baseline, *quant_list = _label_unlabelled(parsed)
    quants = tuple(quant_list)
    labels = [baseline.label, *(q.label for q in quants)]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise where.error(f"labels must be unique, repeated: {', '.join(duplicates)}", "quants")
    description = _expect(table.get("description", ""), str, where, "description")
    return ModelSet(
        name=name,
        baseline=baseline,
        quants=quants,
        description=description,
        backend=backend,
        backend_where=backend_where,
    )


@dataclass(frozen=True)
class _SetDefaults:
    """What the top level of the file gives every set: llama settings and the backend."""

    llama: LlamaSettings
    backend: tuple[str, str]  # the name and where it was set ("" when not set)


def _parse_backend(table: Mapping[str, Any], where: _Where) -> tuple[str, str] | None:
    """The table's `backend` name and where it was set, None when the table has none."""
    if "backend" not in table:
        return None
    name = _expect(table["backend"], str, where, "backend")
    if not name.strip():
        raise where.error('must name a backend (e.g. "llama")', "backend")
    return name, where.place("backend")


def _label_unlabelled(parsed: list[tuple[ModelSpec, str | None]]) -> list[ModelSpec]:
    """The models, each one without a label named by `short_labels` over the unlabelled paths
    (a path listed again counts once) and by what its settings change against the baseline's
    (`F16 · KV q8_0`, the baseline's label for its own file); a repeat of the same file and
    settings gets ` (2)`, ` (3)`..."""
    raw_paths = list(dict.fromkeys(raw for _, raw in parsed if raw is not None))
    derived = dict(zip(raw_paths, short_labels(raw_paths)))
    base_spec, base_raw = parsed[0]
    base_label = base_spec.label if base_raw is None else derived[base_raw]
    seen: dict[str, int] = {}
    out = []
    for spec, raw in parsed:
        if raw is not None:
            name = base_label if spec.path == base_spec.path else derived[raw]
            label = settings_label(name, base_spec.llama, spec.llama)
            seen[label] = seen.get(label, 0) + 1
            label += f" ({seen[label]})" if seen[label] > 1 else ""
            spec = dataclasses.replace(spec, label=label)
        out.append(spec)
    return out


def parse_models_toml(text: str, path: Path) -> ModelsConfig:
    """Parse models.toml text; `path` names the file in errors and anchors relative paths.

    Raises:
        ConfigError: TOML syntax, unknown key, wrong type or missing baseline.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    root = _Where(path, "")
    top = _Where(path, "top level")
    _check_keys(document, {"backend", "llama", "sets"}, top)
    llama = _parse_llama(document.get("llama", {}), LlamaSettings(), root.child("llama"))
    defaults = _SetDefaults(llama, _parse_backend(document, top) or (DEFAULT_BACKEND, ""))
    raw_sets = document.get("sets", {})
    if not isinstance(raw_sets, dict):
        raise top.error("expected a table of sets", "sets")
    config_dir = path.parent
    sets = {
        name: _parse_set(name, table, defaults, root.child(f"sets.{name}"), config_dir)
        for name, table in raw_sets.items()
    }
    return ModelsConfig(path=path, sets=sets)


def load_models_toml(path: Path) -> ModelsConfig:
    """Read and parse a models.toml file.

    Raises:
        ConfigError: the file is missing or unreadable, or its content is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: models file not found (pass --models PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read models file: {exc}") from None
    return parse_models_toml(text, path.resolve())
