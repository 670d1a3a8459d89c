"""The attribution's result store: each measured model's figures, one small JSON file each under
`<cache>/attribute/`, written atomically as soon as the model is measured.

A model is keyed by which file each of its tensors comes from (`file_identity`: size, mtime and
edges of the file, so a rewritten file misses) and by the measurement's key parts (texts or
questions, chunking, llama settings): a re-run of the same attribution reads every model it
finished, and a hybrid two attributions share (the quant itself, a group of the same files) is
measured once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from ggflip.attribute.measure import Figures, Measure
from ggflip.gguf.header import file_identity
from ggflip.store.atomic import atomic_write_bytes
from ggflip.store.keys import cache_key


class ResultStore:
    """Figures of measured models, in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._identities: dict[Path, str] = {}

    @classmethod
    def in_cache(cls, cache_dir: Path) -> ResultStore:
        return cls(cache_dir / "attribute")

    def _identity(self, path: Path) -> str:
        if path not in self._identities:
            self._identities[path] = file_identity(path)
        return self._identities[path]

    def key(self, files: Sequence[Path], sources: Sequence[int], measure: Measure) -> str:
        """The model whose tensor i comes from `files[sources[i]]` (a whole file when `sources`
        is empty and `files` holds one), measured by `measure`."""
        if sources:
            per_tensor = json.dumps([self._identity(files[s]) for s in sources])
            model = hashlib.sha256(per_tensor.encode()).hexdigest()
        else:
            model = self._identity(files[0])
        return cache_key({"attribute": 1, "model": model, "measure": measure.key_parts()})

    def get(
        self, files: Sequence[Path], sources: Sequence[int], measure: Measure
    ) -> Figures | None:
        """The stored figures, or None (also for an unreadable entry, measured again)."""
        path = self.folder / f"{self.key(files, sources, measure)}.json"
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        figures = document.get("figures") if isinstance(document, dict) else None
        if not isinstance(figures, dict) or "kl_mean" not in figures:
            return None
        return {str(k): float(v) for k, v in figures.items() if isinstance(v, (int, float))}

    def put(
        self, files: Sequence[Path], sources: Sequence[int], measure: Measure, figures: Figures
    ) -> None:
        path = self.folder / f"{self.key(files, sources, measure)}.json"
        document = {"figures": figures, "files": [str(f) for f in files]}
        atomic_write_bytes(path, json.dumps(document, allow_nan=True).encode())
