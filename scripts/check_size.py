"""Size check: no module in ggflip/ over 400 lines, no function over 60 (def line to last line).

Usage: python scripts/check_size.py [--list] [PATH ...]   (default PATH: ggflip/ beside this folder)

Without --list it prints one line per module or function over its limit and exits 1 when there is
any; with --list it prints the same lines, largest first, and exits 0 (a worklist, not a gate).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
ROOT = Path(__file__).resolve().parent.parent


def function_sizes(tree: ast.Module) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, line count) of every function and method, nested ones too."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                yield name, child.lineno, end - child.lineno + 1
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def oversized(path: Path, shown: Path) -> Iterator[tuple[int, str]]:
    """(size, message) for `path` over the module limit and each of its functions over theirs."""
    source = path.read_text(encoding="utf-8")
    n_lines = len(source.splitlines())
    if n_lines > MAX_MODULE_LINES:
        yield n_lines, f"{shown}: module has {n_lines} lines (limit {MAX_MODULE_LINES})"
    for name, line, size in function_sizes(ast.parse(source, filename=str(path))):
        if size > MAX_FUNCTION_LINES:
            yield size, f"{shown}:{line}: {name} has {size} lines (limit {MAX_FUNCTION_LINES})"


def python_files(paths: list[Path]) -> list[Path]:
    """Every .py file named or under a named folder, sorted."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def main(argv: list[str] | None = None) -> int:
    """Print the modules and functions over their limits; exit 1 if any (0 with --list)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "ggflip"])
    parser.add_argument(
        "--list", action="store_true", help="list every offender, largest first, and exit 0"
    )
    args = parser.parse_args(argv)
    found: list[tuple[int, str]] = []
    for path in python_files(args.paths):
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        found += oversized(path, shown)
    if args.list:
        for _, message in sorted(found, key=lambda item: -item[0]):
            print(message)
        return 0
    for _, message in found:
        print(message, file=sys.stderr)
    if found:
        print(
            f"check_size: {len(found)} over the limits ({MAX_MODULE_LINES} lines a module, "
            f"{MAX_FUNCTION_LINES} a function): split them",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
