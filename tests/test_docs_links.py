"""The README and docs/*.md link only to files and headings that exist, and the README's demo table
has the columns the demo prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ggflip.reports import choice, tables

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        slug = _slug(line.lstrip("#"))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_slug_matches_githubs_rule() -> None:
    assert _slug(" The noise floor and the verdict (`--floor`)") == (
        "the-noise-floor-and-the-verdict---floor"
    )
    assert _slug(" Beyond one machine: llama.cpp's RPC backend") == (
        "beyond-one-machine-llamacpps-rpc-backend"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_readme_links_every_docs_file() -> None:
    readme = REPO / "README.md"
    linked = {(REPO / t.partition("#")[0]).resolve() for t in _links(readme)}
    missing = [p.name for p in DOCS[1:] if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def _table_headers(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line, nxt in zip(lines, lines[1:])
        if line.startswith("| ") and nxt.startswith("|---")
    ]


def test_the_readmes_demo_tables_have_the_columns_the_demo_prints() -> None:
    """The summary table's header as `ggflip run` builds it, and the verdict table's."""
    summary = [c.label for c in tables.with_appended(choice.MODE, choice.SUMMARY_COLUMNS)]
    headers = _table_headers(REPO / "README.md")
    assert headers[0] == summary
    assert headers[1] == choice.VERDICT_HEADER


def test_every_flag_of_every_subcommand_is_documented() -> None:
    """Each `--flag` the parser accepts is named in the README or a docs/ page."""
    import argparse

    from ggflip.cli.main import build_parser

    text = "\n".join(p.read_text() for p in DOCS)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {flag}"
        for name, subparser in sub.choices.items()
        for action in subparser._actions
        for flag in action.option_strings
        if flag.startswith("--")
        and flag != "--help"
        and not re.search(re.escape(flag) + r"(?![\w-])", text)
    ]
    assert not missing, f"flags no docs page names: {missing}"
