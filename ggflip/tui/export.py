"""The `e` key's files: the `--json` document and a Markdown summary, never over an earlier export.

Exports are named after the run (`ggflip-<set>-<task>.json` and `.md`, `ggflip-kld-<set>` for
corpus mode); when either name is taken (an earlier export, maybe of the complete run), the pair
becomes `…-2.json`, `-3`, ..., so a partial export after a cancel can never replace a complete
one.
"""

from __future__ import annotations

from pathlib import Path

from ggflip.store.atomic import atomic_write_bytes


def free_stem(directory: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """`stem`, or `stem-2`, `stem-3`, ...: the first for which no file with any suffix exists."""
    candidate, n = stem, 1
    while any((directory / f"{candidate}{suffix}").exists() for suffix in suffixes):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def export_files(directory: Path, stem: str, document: str, markdown: str) -> tuple[Path, Path]:
    """Write a report's JSON `document` and its `markdown` under new names in `directory` (from
    `stem`); returns both paths.

    Raises:
        GgflipError: the files cannot be written (from `atomic_write_bytes`).
    """
    stem = free_stem(directory, stem, (".json", ".md"))
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    atomic_write_bytes(json_path, (document + "\n").encode())
    atomic_write_bytes(md_path, markdown.encode())
    return json_path, md_path
