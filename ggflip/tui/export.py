"""The `e` key's files: the `--json` document and a Markdown summary, never over an earlier export.

Exports are named `ggflip-<set>-<task>.json` and `.md`; when either name is taken (an earlier
export, maybe of the complete run), the pair becomes `ggflip-<set>-<task>-2.json`, `-3`, ...,
so a partial export after a cancel can never replace a complete one.
"""

from __future__ import annotations

from pathlib import Path

from ggflip.choice.report import Report
from ggflip.reports.markdown import render_markdown
from ggflip.store.atomic import atomic_write_bytes


def free_stem(directory: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """`stem`, or `stem-2`, `stem-3`, ...: the first for which no file with any suffix exists."""
    candidate, n = stem, 1
    while any((directory / f"{candidate}{suffix}").exists() for suffix in suffixes):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def export_report(report: Report, directory: Path) -> tuple[Path, Path]:
    """Write the report's JSON and Markdown under new names in `directory`; returns both paths.

    Raises:
        GgflipError: the files cannot be written (from `atomic_write_bytes`).
    """
    stem = free_stem(directory, f"ggflip-{report.set}-{report.task}", (".json", ".md"))
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    atomic_write_bytes(json_path, (report.to_json() + "\n").encode())
    atomic_write_bytes(md_path, render_markdown(report).encode())
    return json_path, md_path
