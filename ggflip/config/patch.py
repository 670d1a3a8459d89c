"""Add models to a set in `models.toml` by patching its text, keeping everything else as written.

The file is never regenerated: comments, order and formatting stay. A quant is appended inside
the set's inline `quants = [ ... ]` array (found by scanning TOML syntax, strings and comments
included), or as a new `[[sets.NAME.quants]]` table when the set uses that form; a new set is
appended at the end of the file. The result is parsed with the strict `ggflip.config.models_toml`
parser before it is written (atomically), so a patch can never leave an invalid file behind.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ggflip.config.models_toml import ModelsConfig, default_cache_dir, parse_models_toml
from ggflip.errors import ConfigError
from ggflip.store.atomic import atomic_write_bytes


def toml_string(text: str) -> str:
    """`text` as a TOML basic string (JSON's escapes are all valid TOML escapes)."""
    return json.dumps(text, ensure_ascii=False)


def _model_entry(path: str, label: str) -> str:
    return f"{{ path = {toml_string(path)}, label = {toml_string(label)} }}"


def toml_path(path: Path, toml_file: Path) -> str:
    """How `path` is written in `toml_file`: relative to its folder, or under `{cache}`, or
    absolute."""
    absolute = path.resolve()
    for anchor, prefix in (
        (toml_file.resolve().parent, ""),
        (default_cache_dir().resolve(), "{cache}/"),
    ):
        try:
            return prefix + absolute.relative_to(anchor).as_posix()
        except ValueError:
            continue
    return str(absolute)


def _header_pattern(set_name: str) -> re.Pattern[str]:
    name = re.escape(set_name)
    quoted = f"(?:{name}|\"{name}\"|'{name}')"
    return re.compile(
        rf"^[ \t]*\[[ \t]*sets[ \t]*\.[ \t]*{quoted}[ \t]*\][ \t]*(?:#.*)?$", re.MULTILINE
    )


def _table_end(text: str, start: int) -> int:
    """Offset of the next table header after `start`, or the end of the text."""
    match = re.compile(r"^[ \t]*\[", re.MULTILINE).search(text, start)
    return match.start() if match else len(text)


def _scan_array(text: str, open_bracket: int) -> tuple[int, int]:
    """The offsets of the `]` closing the array opened at `open_bracket` and of its last
    significant character (the `[` itself when empty), skipping strings and comments."""
    depth, i, last = 0, open_bracket, open_bracket
    while i < len(text):
        char = text[i]
        if char == "#":
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if text.startswith(('"""', "'''"), i):
            i = text.find(text[i : i + 3], i + 3) + 2
        elif char in "\"'":
            j = i + 1
            while j < len(text) and text[j] != char:
                j += 2 if (char == '"' and text[j] == "\\") else 1
            i = j
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return i, last
        if not text[i].isspace():
            last = i
        i += 1
    raise ConfigError("unterminated array in models file")


def _append_to_set(text: str, set_name: str, entries: Sequence[str]) -> str | None:
    """`text` with `entries` added to an existing set's quants, or None when the set is absent."""
    if re.search(
        rf"^[ \t]*\[\[[ \t]*sets\.{re.escape(set_name)}\.quants[ \t]*\]\]", text, re.MULTILINE
    ):
        tables = "".join(f"\n[[sets.{set_name}.quants]]\n{_inline_to_keys(e)}" for e in entries)
        return text.rstrip("\n") + "\n" + tables
    header = _header_pattern(set_name).search(text)
    if header is None:
        return None
    body_end = _table_end(text, header.end())
    quants = re.compile(r"^[ \t]*quants[ \t]*=[ \t]*\[", re.MULTILINE).search(
        text, header.end(), body_end
    )
    if quants is None:
        line = f"quants = [\n{''.join(f'    {e},{chr(10)}' for e in entries)}]\n"
        return text[: header.end()] + "\n" + line + text[header.end() + 1 :]
    close, last = _scan_array(text, quants.end() - 1)
    if last != quants.end() - 1 and text[last] != ",":
        text, close = text[: last + 1] + "," + text[last + 1 :], close + 1
    line_start = text.rfind("\n", 0, close) + 1
    added = "".join(f"    {e},\n" for e in entries)
    if text[line_start:close].strip():
        return text[:close] + "\n" + added + text[close:]
    return text[:line_start] + added + text[line_start:]


def _inline_to_keys(entry: str) -> str:
    inner = entry.strip()[1:-1].strip()
    return "\n".join(part.strip() for part in re.split(r",\s*(?=\w+\s*=)", inner)) + "\n"


def add_quants(
    toml_file: Path, set_name: str, baseline: Path, quants: Sequence[tuple[str, Path]]
) -> ModelsConfig:
    """Add `quants` ((label, path) pairs) to set `set_name`, creating the set (or the file) if
    needed.

    Quants already in the set under the same path are skipped. Returns the parsed result.

    Raises:
        ConfigError: the set exists with another baseline, a label is taken by another file,
            or the file cannot be parsed before or after the patch.
    """
    text = toml_file.read_text(encoding="utf-8") if toml_file.exists() else ""
    config = parse_models_toml(text, toml_file.resolve())
    entries = []
    if set_name in config.sets:
        existing = config.sets[set_name]
        if existing.baseline.path.resolve() != baseline.resolve():
            raise ConfigError(
                f"{toml_file}: set '{set_name}' compares against {existing.baseline.path}, not "
                f"{baseline}; choose another --set"
            )
        taken = {q.label: q.path.resolve() for q in existing.models}
        for label, path in quants:
            if taken.get(label) == path.resolve():
                continue
            if label in taken:
                raise ConfigError(
                    f"{toml_file}: set '{set_name}' already has a model labelled '{label}' "
                    f"({taken[label]})"
                )
            entries.append(_model_entry(toml_path(path, toml_file), label))
        patched = _append_to_set(text, set_name, entries) if entries else text
    else:
        entries = [_model_entry(toml_path(path, toml_file), label) for label, path in quants]
        patched = None
    if patched is None:
        base_entry = _model_entry(
            toml_path(baseline, toml_file),
            "F16" if "F16" in baseline.name.upper() else baseline.stem,
        )
        set_key = (
            toml_string(set_name) if not re.fullmatch(r"[A-Za-z0-9_-]+", set_name) else set_name
        )
        block = (
            f"\n[sets.{set_key}]\n"
            f"baseline = {base_entry}\nquants = [\n"
            + "".join(f"    {e},\n" for e in entries)
            + "]\n"
        )
        patched = (text.rstrip("\n") + "\n" if text.strip() else "") + block
    result = parse_models_toml(patched, toml_file.resolve())
    if patched != text:
        atomic_write_bytes(toml_file, patched.encode("utf-8"))
        os.utime(toml_file)
    return result
