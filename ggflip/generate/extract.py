"""Answers extracted from generated text, and exact match against a gold answer.

The GSM8K rules are lm-evaluation-harness' `gsm8k` filters: `strict` takes the first
`#### (-?[0-9.,]+)`, `flexible` the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`; no match is
`[invalid]`. Exact match then removes `,`, `$`, everything up to `#### ` and one trailing `.`
from both the extracted answer and the gold text, and compares them ignoring case.

The `prompts` task's `match` rule: a numeric gold answer is compared with the last number of
the text (`flexible`); any other gold answer must appear in the text as a whole word or
phrase, ignoring case.
"""

from __future__ import annotations

import re
from collections.abc import Callable

INVALID = "[invalid]"
_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
_NUMBER = re.compile(r"-?[$0-9.,]*[0-9][0-9.,]*")


def strict(text: str) -> str:
    """The number after the first `#### `, or `[invalid]`."""
    match = _STRICT.search(text)
    return match.group(1) if match else INVALID


def flexible(text: str) -> str:
    """The last number-like run of the text, or `[invalid]`."""
    matches = _FLEXIBLE.findall(text)
    if not matches:
        return INVALID
    return next(group for group in matches[-1] if group)


def normalize(text: str) -> str:
    """lm-eval's exact-match normalization of GSM8K answers (and of the gold text)."""
    for pattern in _IGNORE:
        text = pattern.sub("", text)
    return text.lower()


def gsm8k_gold(answer: str) -> str:
    """The normalized gold answer of a GSM8K row (what follows `#### `)."""
    return normalize(answer)


def _match(text: str, gold: str) -> str:
    if _NUMBER.fullmatch(gold.strip()):
        return flexible(text)
    found = re.search(rf"(?<!\w){re.escape(gold.strip())}(?!\w)", text, re.IGNORECASE)
    return found.group(0) if found else INVALID


RULES: dict[str, Callable[[str], str]] = {"strict": strict, "flexible": flexible}


def extract(rule: str, text: str, gold: str | None) -> str:
    """The answer `rule` reads in `text`, normalized for exact match."""
    if rule == "match":
        return normalize(_match(text, gold or "")) if gold is not None else ""
    return normalize(RULES[rule](text))


def gold_answer(rule: str, gold: str | None) -> str | None:
    """The gold answer as `extract` normalizes it (None: no gold)."""
    if gold is None:
        return None
    return gsm8k_gold(gold) if rule in RULES else normalize(gold.strip())
