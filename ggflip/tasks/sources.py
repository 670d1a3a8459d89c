"""Where question rows come from: local JSONL / JSON / CSV / Parquet files or a `datasets` id.

Every row is yielded with its location (`file:line` for text files, `file row N` for Parquet,
`hf:NAME:CONFIG:SPLIT row N` for datasets, N 1-based for files and 0-based for datasets as
`datasets` indexes them) and a default id, so a malformed row can be reported where it is.
A row that cannot even be read (invalid JSON) is yielded as a `DataError` in its place.
"""

from __future__ import annotations

import csv
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ggflip.errors import DataError

Row = tuple[str, str, Any]
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: a local file, or a `datasets` path (hub id or local folder) with config and
    split."""

    kind: str
    path: str
    config: str | None = None
    split: str = "test"

    @property
    def label(self) -> str:
        """How the source is named in reports: the path, or `hf:NAME:CONFIG:SPLIT`."""
        return self.path if self.kind == "file" else f"hf:{self.path}:{self.config}:{self.split}"

    def with_split(self, split: str) -> SourceSpec:
        """The same dataset, another split."""
        return SourceSpec(self.kind, self.path, self.config, split)


def parse_source(
    spec: str, *, default_config: str | None = None, default_split: str = "test"
) -> SourceSpec:
    """Parse `hf:NAME[:CONFIG[:SPLIT]]` or a local file path."""
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        config = parts[1] if len(parts) > 1 and parts[1] else default_config
        split = parts[2] if len(parts) > 2 and parts[2] else default_split
        return SourceSpec("hf", parts[0], config, split)
    return SourceSpec("file", str(Path(spec).expanduser()))


def iter_rows(source: SourceSpec) -> Iterator[Row]:
    """The source's rows, each as (where, default id, row mapping or DataError).

    Raises:
        DataError: missing or unreadable file, unknown file type, dataset not loadable.
    """
    if source.kind == "hf":
        return _dataset_rows(source)
    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"{path}: question file not found")
    suffix = path.suffix.lower()
    readers = {
        ".jsonl": _jsonl_rows,
        ".json": _json_rows,
        ".csv": _csv_rows,
        ".tsv": _csv_rows,
        ".parquet": _parquet_rows,
    }
    reader = readers.get(suffix, _jsonl_rows if suffix in ("", ".txt", ".ndjson") else None)
    if reader is None:
        raise DataError(
            f"{path}: unknown question file type '{suffix}' (use {', '.join(FILE_SUFFIXES)} or "
            "hf:NAME)"
        )
    return reader(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read question file: {exc}") from None


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            row = DataError(f"invalid JSON: {exc.msg}")
        except RecursionError:
            row = DataError("invalid JSON: nested too deeply")
        yield f"{path}:{number}", f"{path.stem}-{number}", row


def _json_rows(path: Path) -> Iterator[Row]:
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(document, list):
        raise DataError(f"{path}: expected a JSON array of question objects")
    for number, row in enumerate(document, start=1):
        yield f"{path} item {number}", f"{path.stem}-{number}", row


def _csv_rows(path: Path) -> Iterator[Row]:
    text = _read_text(path)
    reader = csv.DictReader(
        text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","
    )
    for row in reader:
        line = reader.line_num
        if None in row:
            yield (
                f"{path}:{line}",
                f"{path.stem}-{line}",
                DataError("more fields than the header names"),
            )
            continue
        yield f"{path}:{line}", f"{path.stem}-{line}", {k: _csv_value(v) for k, v in row.items()}


def _csv_value(value: str | None) -> Any:
    """A CSV cell; a cell holding a JSON list (`["a", "b"]`) becomes that list."""
    if value is not None and value.startswith("[") and value.endswith("]"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parquet_rows(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 -- pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read Parquet file: {exc}") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"{path} row {number}", f"{path.stem}-{number}", row


def _dataset_rows(source: SourceSpec) -> Iterator[Row]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "the 'datasets' package is needed for hf: question sources (pip install datasets)"
        ) from None
    try:
        dataset = datasets.load_dataset(source.path, source.config, split=source.split)
    except Exception as exc:  # noqa: BLE001 -- datasets raises many unrelated types for "not available"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"hf:{source.path} ({source.config}/{source.split}): cannot load dataset: {first_line}"
        ) from None
    stem = source.path.rstrip("/").split("/")[-1]
    return (
        (f"{source.label} row {i}", f"{stem}-{source.split}-{i}", row)
        for i, row in enumerate(dataset)
    )


HUB_PROBE_SECONDS = 3.0


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached, in a few words, or None when it answers.

    Offline mode (`HF_HUB_OFFLINE` or `HF_DATASETS_OFFLINE`) counts as unreachable; otherwise one
    TCP connection to `$HF_ENDPOINT` (default huggingface.co) is tried, for at most
    HUB_PROBE_SECONDS, instead of `datasets`' half-minute of retries.
    """
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name} is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError:
        return f"{host} does not answer"
    return None
