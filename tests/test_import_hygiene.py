"""Only ggflip/tui imports textual: every headless module loads in a fresh interpreter without
it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ggflip

ROOT = Path(__file__).resolve().parent.parent
HEADLESS = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(ggflip.__path__, "ggflip.")
    if not name.startswith("ggflip.tui.") and name != "ggflip.tui"
)


def test_the_list_covers_the_engine_and_the_cli() -> None:
    assert {
        "ggflip.choice.engine",
        "ggflip.cli.main",
        "ggflip.cli.run",
        "ggflip.choice.setup",
        "ggflip.reports.choice",
        "ggflip.runs.fold",
        "ggflip.cli.progress",
    } <= set(HEADLESS)


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_does_not_load_textual(module: str) -> None:
    code = (
        f"import sys, {module}; sys.exit(1 if any(m == 'textual' or m.startswith('textual.') "
        "for m in sys.modules) else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{module} imports textual{result.stderr}"


@pytest.mark.parametrize(
    "module",
    [
        "ggflip.tui.choice_live",
        "ggflip.tui.choice_cells",
        "ggflip.tui.columns",
        "ggflip.tui.gen_live",
        "ggflip.tui.gen_cells",
        "ggflip.tui.corpus_live",
    ],
)
def test_the_tui_live_state_and_cells_are_headless_too(module: str) -> None:
    """The TUI's state folding and cells are plain Python, testable without Textual."""
    code = f"import sys, {module}; sys.exit(1 if 'textual' in sys.modules else 0)"
    assert (
        subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, timeout=120).returncode
        == 0
    )


def test_no_import_cycles_lazy_imports_included() -> None:
    """No two ggflip modules import each other, even through function-level imports."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("ggflip")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("ggflip") and imported != module:
                back = graph.find_shortest_chain(importer=imported, imported=module)
                if back:
                    cycles.append(f"{module} -> {' -> '.join(back)}")
    assert cycles == []


def test_the_layer_contracts_hold() -> None:
    """`lint-imports` keeps pyproject.toml's contracts (front ends above modes above kernels)."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
