"""Which file fits a memory budget: budget parsing and the choice on a frontier. Pure, no I/O.

`parse_size` reads a budget strictly: a number and one unit, `B`, `kB`/`KB`, `MB`, `GB`, `TB`
(powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), e.g. `700MB`, `5.5GiB`,
`123456789B`; it rounds down to whole bytes.

`choose` takes the placed points of a frontier (`ggflip.scoring.frontier.place`) and a budget:
the choice is the point of least damage among those whose memory is at most the budget (on a tie,
the smaller; then the first). It is always on the frontier (a point beating it would fit too and
be no worse), so its neighbours are frontier points: `smaller`, the largest frontier point below
it (what less memory costs in damage), and `larger`, the smallest frontier point above it (what
the next step down in damage would need; it does not fit, or it would have been chosen).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ggflip.errors import UsageError
from ggflip.scoring.frontier import Placed

UNITS = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([A-Za-z]+)")
EXAMPLES = "700MB, 5.5GiB, 123456789B"


def parse_size(text: str, flag: str = "--budget") -> int:
    """Bytes in `text` (a number and a unit, see the module docstring).

    Raises:
        UsageError: anything else, with what was expected; a size of 0 bytes.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None or match.group(2) not in UNITS:
        unit = f" (unknown unit {match.group(2)!r})" if match else ""
        raise UsageError(
            f"{flag} {text!r}: not a size{unit}; write a number and a unit, one of "
            f"{', '.join(UNITS)}: {EXAMPLES}"
        )
    size = int(Fraction(match.group(1)) * UNITS[match.group(2)])
    if size <= 0:
        raise UsageError(f"{flag} {text!r}: a budget must be at least 1 byte")
    return size


@dataclass(frozen=True)
class Choice:
    """The chosen point and its neighbours on the frontier (None at either end)."""

    chosen: Placed
    smaller: Placed | None
    larger: Placed | None


def choose(placed: Sequence[Placed], budget: int) -> Choice | None:
    """The least damaged point that fits `budget` bytes and its frontier neighbours; None when
    nothing fits."""
    fits = [(p.point.damage, p.point.memory_bytes, i) for i, p in enumerate(placed)
            if p.point.memory_bytes <= budget]
    if not fits:
        return None
    chosen = placed[min(fits)[2]]
    front = [p for p in placed if p.on_frontier]
    memory = chosen.point.memory_bytes
    below = [p for p in front if p.point.memory_bytes < memory]
    above = [p for p in front if p.point.memory_bytes > memory]
    return Choice(
        chosen,
        max(below, key=lambda p: p.point.memory_bytes) if below else None,
        min(above, key=lambda p: p.point.memory_bytes) if above else None,
    )


def smallest(placed: Sequence[Placed]) -> Placed | None:
    """The point with the least memory (the least damaged among equals)."""
    return min(placed, key=lambda p: (p.point.memory_bytes, p.point.damage), default=None)
