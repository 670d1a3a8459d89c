"""Groups of a model's tensors, by GGUF tensor name: by kind across layers, by layer block, by
both, or by the user's regular expressions.

A tensor `blk.N.KIND.weight` has the kind KIND and the layer `blk.N`; a tensor outside the blocks
(`token_embd.weight`, `output.weight`, `output_norm.weight`) is its own kind in the layer
`global`. Every norm (`attn_norm`, `ffn_norm`, Gemma 3's `attn_q_norm`, `post_*_norm`,
`output_norm`) is of the one kind `norms`. Every tensor lands in exactly one group, so the
groups' bytes add up to the file's tensor bytes; with `--group REGEX` the first pattern a name
matches (`re.search`) wins and what none matches is the group `(rest)`.

Each group also carries a regular expression matching exactly its tensors (whatever pattern
made it), as llama-quantize's `--tensor-type REGEX=TYPE` takes it (`std::regex_search` on the
tensor name, the first matching pattern winning).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ggflip.errors import UsageError

BY_CHOICES = ("kind", "layer", "kind×layer")
_BY_ALIASES = {"kindxlayer": "kind×layer", "kind*layer": "kind×layer", "kind-layer": "kind×layer"}
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")
_SUFFIX = re.compile(r"\.(weight|bias)$")
REST = "(rest)"


@dataclass(frozen=True)
class Group:
    """A named set of tensors and the regex llama-quantize would match them by."""

    name: str
    tensors: tuple[str, ...]
    regex: str


def parse_by(text: str) -> str:
    """`--by`'s value, with `kindxlayer` accepted for `kind×layer`.

    Raises:
        UsageError: not one of the choices.
    """
    value = _BY_ALIASES.get(text.lower(), text.lower())
    if value not in BY_CHOICES:
        raise UsageError(f"--by {text}: choose kind, layer or kind×layer (or kindxlayer)")
    return value


def kind_of(name: str) -> str:
    """`blk.3.attn_q.weight` -> `attn_q`; `token_embd.weight` -> `token_embd`; norms -> `norms`."""
    match = _BLOCK.match(name)
    base = _SUFFIX.sub("", match[2] if match else name)
    return "norms" if "norm" in base else base


def layer_of(name: str) -> str:
    """`blk.3.attn_q.weight` -> `blk.3`; a tensor outside the blocks -> `global`."""
    match = _BLOCK.match(name)
    return f"blk.{match[1]}" if match else "global"


def exact_regex(names: Sequence[str], blocks: frozenset[int]) -> str:
    """A regex matching exactly `names`: each block tensor kind once, its block numbers folded
    to `\\d+` when it is in every block of the model (`blocks`)."""
    numbers: dict[str, list[str]] = {}
    alternatives = []
    for name in names:
        match = _BLOCK.match(name)
        if match:
            numbers.setdefault(match[2], []).append(match[1])
        else:
            alternatives.append(re.escape(name))
    for stem, found in numbers.items():
        if {int(n) for n in found} == blocks and len(blocks) > 1:
            number = r"\d+"
        elif len(found) == 1:
            number = found[0]
        else:
            number = "(" + "|".join(found) + ")"
        alternatives.append(rf"blk\.{number}\.{re.escape(stem)}")
    if len(alternatives) == 1:
        return f"^{alternatives[0]}$"
    return "^(" + "|".join(alternatives) + ")$"


def _by_key(names: Sequence[str], key: str) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        if key == "kind":
            label = kind_of(name)
        elif key == "layer":
            label = layer_of(name)
        else:
            layer = layer_of(name)
            label = kind_of(name) if layer == "global" else f"{kind_of(name)}@{layer}"
        groups.setdefault(label, []).append(name)
    return list(groups.items())


def group_tensors(
    names: Sequence[str], by: str = "kind", patterns: Sequence[str] = ()
) -> tuple[Group, ...]:
    """The tensors `names` (file order) in groups, in order of each group's first tensor.

    Raises:
        UsageError: a pattern is not a valid regex, or matches no tensor.
    """
    blocks = block_numbers(names)
    if patterns:
        return _custom(names, patterns, blocks)
    groups = []
    for label, members in _by_key(names, by):
        if by == "layer" and label.startswith("blk."):
            regex = rf"^blk\.{label.removeprefix('blk.')}\."
        else:
            regex = exact_regex(members, blocks)
        groups.append(Group(label, tuple(members), regex))
    return tuple(groups)


def _custom(
    names: Sequence[str], patterns: Sequence[str], blocks: frozenset[int]
) -> tuple[Group, ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise UsageError(f"--group {pattern!r} is not a regular expression: {exc}") from None
    members: list[list[str]] = [[] for _ in patterns]
    rest: list[str] = []
    for name in names:
        hit = next((i for i, regex in enumerate(compiled) if regex.search(name)), None)
        (rest if hit is None else members[hit]).append(name)
    for pattern, found in zip(patterns, members):
        if not found:
            raise UsageError(
                f"--group {pattern!r} matches no tensor (names look like {names[0]}, "
                f"blk.0.attn_q.weight) or only ones an earlier --group took"
            )
    groups = [Group(p, tuple(f), exact_regex(f, blocks)) for p, f in zip(patterns, members)]
    if rest:
        groups.append(Group(REST, tuple(rest), exact_regex(rest, blocks)))
    return tuple(groups)


def block_numbers(names: Sequence[str]) -> frozenset[int]:
    """The model's block numbers, from its tensor names."""
    return frozenset(int(m[1]) for m in map(_BLOCK.match, names) if m)
