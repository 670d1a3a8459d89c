"""The vocabulary guard every mode runs before scoring: a quant must share its baseline's tokens."""

from __future__ import annotations

from collections.abc import Sequence

from ggflip.backends.base import ModelProbe
from ggflip.config.models_toml import ModelSet
from ggflip.errors import VocabMismatchError


def check_vocabularies(model_set: ModelSet, probes: Sequence[ModelProbe]) -> None:
    """Refuse a set whose quants do not share the baseline's architecture and vocabulary.

    Raises:
        VocabMismatchError: naming the quant and what differs.
    """
    base = probes[0]
    for spec, probe in zip(model_set.quants, probes[1:]):
        if probe.architecture != base.architecture:
            raise VocabMismatchError(
                f"{spec.path}: architecture '{probe.architecture}', but baseline "
                f"{model_set.baseline.path} is '{base.architecture}'; a quant must be made from "
                "the same model as its baseline"
            )
        if probe.n_vocab != base.n_vocab:
            raise VocabMismatchError(
                f"{spec.path}: vocabulary of {probe.n_vocab} tokens, but baseline "
                f"{model_set.baseline.path} has {base.n_vocab}; a quant must be made from the same "
                "model as its baseline"
            )
        if probe.vocab_fingerprint != base.vocab_fingerprint:
            raise VocabMismatchError(
                f"{spec.path}: same vocabulary size as baseline {model_set.baseline.path} but "
                "different tokens; a quant must be made from the same model as its baseline"
            )
