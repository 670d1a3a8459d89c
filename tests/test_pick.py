"""`ggflip pick`: the budget parser, the choice on a frontier, and the command on synthetic
reports (choice, refusal, mismatched reports, --json, --ctx through the memory estimate)."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ggflip.cli.main import main
from ggflip.errors import ExitCode, UsageError
from ggflip.scoring.frontier import Placed, Point, place
from ggflip.scoring.pick import choose, parse_size


class TestParseSize:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("700MB", 700 * 10**6),
            ("5.5GiB", 11 * 2**29),  # 5.5 × 2^30
            ("123456789B", 123456789),
            ("1.5KiB", 1536),
            (" 2 GB ", 2 * 10**9),
            ("0.1kB", 100),
            ("1.0000001MB", 1000000),  # rounds down to whole bytes
        ],
    )
    def test_sizes(self, text: str, expected: int) -> None:
        assert parse_size(text) == expected

    @pytest.mark.parametrize(
        "text", ["700", "7XB", "MB", "-1GB", "1e9B", "1,5GB", "5.5gib", "GB5", "1 2GB", ""]
    )
    def test_anything_else_is_one_line_naming_the_form(self, text: str) -> None:
        with pytest.raises(UsageError, match=r"not a size.*700MB, 5.5GiB, 123456789B") as info:
            parse_size(text)
        assert "\n" not in str(info.value)

    def test_zero_is_refused(self) -> None:
        with pytest.raises(UsageError, match="at least 1 byte"):
            parse_size("0.4B")


def _placed(*points: tuple[str, int, float]) -> list[Placed]:
    return place([Point(label, "quant", memory, damage) for label, memory, damage in points])


class TestChoose:
    POINTS = (("Q2", 200, 0.5), ("Q3", 250, 0.2), ("Q5", 400, 0.3), ("Q4", 300, 0.01),
              ("Q8", 500, 0.002))

    @pytest.mark.parametrize(
        ("budget", "chosen", "smaller", "larger"),
        [
            (200, "Q2", None, "Q3"),
            (299, "Q3", "Q2", "Q4"),
            (300, "Q4", "Q3", "Q8"),
            (499, "Q4", "Q3", "Q8"),  # Q5 fits but is worse than Q4
            (10**9, "Q8", "Q4", None),
        ],
    )
    def test_least_damage_that_fits(
        self, budget: int, chosen: str, smaller: str | None, larger: str | None
    ) -> None:
        got = choose(_placed(*self.POINTS), budget)
        assert got is not None
        assert got.chosen.point.label == chosen
        assert (got.smaller.point.label if got.smaller else None) == smaller
        assert (got.larger.point.label if got.larger else None) == larger

    def test_nothing_fits(self) -> None:
        assert choose(_placed(*self.POINTS), 199) is None

    def test_a_tie_in_damage_takes_the_smaller(self) -> None:
        got = choose(_placed(("big", 300, 0.1), ("small", 200, 0.1)), 400)
        assert got is not None and got.chosen.point.label == "small"


def _memory(weights: int, ctx: int = 4096) -> dict[str, Any]:
    kv = ctx * 100  # the stand-in layout below: 100 bytes of f16 KV per token
    return {
        "weights_bytes": weights, "kv_bytes": kv, "compute_bytes": 0,
        "total_bytes": weights + kv, "ctx": ctx, "kv_type_k": "f16", "kv_type_v": "f16",
        "swa_full": False, "layout": {"bytes_per_token_f16": 100},
    }


def _quant(label: str, weights: int, kl: float, verdict: str = "different") -> dict[str, Any]:
    return {
        "label": label, "path": f"/m/{label}.gguf", "file_size": weights + 5000,
        "memory": _memory(weights), "kl_mean": kl, "kl_mean_ci": [kl * 0.9, kl * 1.1],
        "flips": kl / 10, "verdict": verdict, "verdict_reason": "because",
    }


def _report(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": "ggflip.report/1", "set": "s", "task": "mmlu", "source": "cais/mmlu",
        "prompt_version": "v1", "selection": "300 of 14042", "n_questions": 300,
        "mode": "letter", "n_shots": 0,
        "baseline": {"label": "F16", "path": "/m/f16.gguf", "file_size": 1_000_000,
                     "memory": _memory(1_000_000)},
        "quants": [
            _quant("Q8_0", 600_000, 0.002),
            _quant("Q5_K_M", 400_000, 0.03),
            _quant("Q4_K_M (≈ source)", 350_000, 0.004, "indistinguishable"),
            _quant("Q2_K", 250_000, 0.45),
        ],
        "floor": None,
    }
    document.update(changes)
    return document


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def _pick(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["pick", *args])
    out, err = capsys.readouterr()
    return code, out, err


class TestCommand:
    def test_between_q4_and_q5_picks_q4(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "r.json", _report())
        # totals at ctx 4096: Q4 350000 + 409600 = 759600; Q5 809600
        code, out, _ = _pick(capsys, str(report), "--budget", "780000B")
        assert code == ExitCode.OK
        assert "Pick Q4_K_M (≈ source): 759.6 kB, KL mean 0.00400" in out
        assert "not measurably different from the baseline (within its noise floor: because)" in out
        assert "next smaller: Q2_K: 659.6 kB, KL mean 0.450 (saves 100.0 kB, 112× the damage)" in (
            out
        )
        assert "next larger:  Q8_0: 1.0 MB, KL mean 0.00200 (229.6 kB over the budget" in out
        assert "Q5_K_M is dominated by Q4_K_M (≈ source): the baseline was rebuilt" in out
        assert "stopped early" not in out
        partial = _write(tmp_path / "p.json", _report(complete=False))
        _, out, _ = _pick(capsys, str(report), str(partial), "--budget", "780000B")
        assert "note: a report stopped early; only the quants it finished are compared." in out

    def test_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        report = _write(tmp_path / "r.json", _report())
        code, out, _ = _pick(capsys, str(report), "--budget", "780000B", "--json", "--by", "flips")
        document = json.loads(out)
        assert code == ExitCode.OK and document["schema"] == "ggflip.pick/1"
        assert document["pick"] == "Q4_K_M (≈ source)" and document["budget_bytes"] == 780000
        assert document["chosen"]["damage"] == pytest.approx(0.0004)
        assert document["frontier"]["by"] == "flips"

    def test_a_budget_nothing_fits_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "r.json", _report())
        code, out, err = _pick(capsys, str(report), "--budget", "600kB")
        assert code == ExitCode.USAGE and out == ""
        assert err == (
            "ggflip: error: --budget 600kB: nothing fits; the smallest file, Q2_K, needs 659.6 kB "
            "(memory = weights + KV cache + compute buffer at ctx 4096, KV cache f16)\n"
        )

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"selection": "the first 300"}, "differ in selection: '300 of 14042' and 'the first"),
            ({"task": "arc"}, "differ in task: 'mmlu' and 'arc'"),
            ({"baseline": {"label": "F16", "path": "/x/other.gguf", "file_size": 9}},
             "have different baselines: f16.gguf (1000000 bytes) and other.gguf (9 bytes)"),
            ({"schema": "ggflip.generate/1"}, "different modes: choice and generate"),
        ],
    )
    def test_mismatched_reports_are_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any],
        named: str,
    ) -> None:
        a = _write(tmp_path / "a.json", _report())
        b = _write(tmp_path / "b.json", _report(**change))
        code, out, err = _pick(capsys, str(a), str(b), "--budget", "1GB")
        assert code == ExitCode.DATA and out == ""
        assert err.startswith("ggflip: error: a.json and b.json ") and named in err
        assert err.count("\n") == 1

    def test_reports_merge(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        other = _report(quants=[_quant("Q4_K_M", 300_000, 0.003), _quant("Q2_K", 250_000, 0.45)])
        other["quants"][1]["path"] = "/uploader2/Q2_K.gguf"
        a = _write(tmp_path / "a.json", _report())
        b = _write(tmp_path / "b.json", other)
        code, out, _ = _pick(capsys, str(a), str(b), "--budget", "720000B", "--json")
        document = json.loads(out)
        labels = [p["label"] for p in document["frontier"]["points"]]
        assert "Q2_K [b.json]" in labels and labels.count("Q2_K") == 1
        assert document["pick"] == "Q4_K_M"  # 300000 + 409600 = 709600 fits

    def test_ctx_and_kv_type_estimate_again(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "ggflip.gguf.memory", _stand_in_memory())
        report = _write(tmp_path / "r.json", _report())
        # ctx 1000, q8_0 (half of f16 in the stand-in): KV 50000; Q8_0 650000 fits 700kB
        code, out, _ = _pick(
            capsys, str(report), "--budget", "700kB", "--ctx", "1000", "--kv-type", "q8_0", "--json"
        )
        document = json.loads(out)
        assert code == ExitCode.OK and document["pick"] == "Q8_0"
        assert document["chosen"]["memory_bytes"] == 650_000
        assert document["frontier"]["ctx"] == 1000 and document["frontier"]["kv_type"] == "q8_0"

    def test_old_reports_use_the_file_size_and_say_so(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        document = _report()
        for model in [document["baseline"], *document["quants"]]:
            del model["memory"]
        report = _write(tmp_path / "r.json", document)
        code, out, _ = _pick(capsys, str(report), "--budget", "356kB")
        assert code == ExitCode.OK
        assert "memory = file size: no KV at this ctx" in out
        assert "Pick Q4_K_M (≈ source): 355.0 kB" in out


def _stand_in_memory() -> types.ModuleType:
    """The interface of `ggflip.gguf.memory` with made-up arithmetic: KV = ctx × 100 bytes per
    token at f16, half at q8_0."""

    @dataclass(frozen=True)
    class Layout:
        bytes_per_token_f16: int

        @classmethod
        def from_json(cls, data: dict[str, Any]) -> Layout:
            return cls(data["bytes_per_token_f16"])

    @dataclass(frozen=True)
    class Memory:
        weights: int
        kv: int
        ctx: int
        kv_type: str

        def to_json(self) -> dict[str, Any]:
            return {"weights_bytes": self.weights, "kv_bytes": self.kv, "compute_bytes": 0,
                    "total_bytes": self.weights + self.kv, "ctx": self.ctx,
                    "kv_type_k": self.kv_type, "kv_type_v": self.kv_type, "swa_full": False,
                    "layout": {"bytes_per_token_f16": 100}}

    def estimate(weights: int, layout: Layout, ctx: int, kv_type_k: str = "f16",
                 kv_type_v: str | None = None, swa_full: bool = False) -> Memory:
        per_token = layout.bytes_per_token_f16 // (2 if kv_type_k == "q8_0" else 1)
        return Memory(weights, ctx * per_token, ctx, kv_type_k)

    module = types.ModuleType("ggflip.gguf.memory")
    module.KvLayout = Layout  # type: ignore[attr-defined]
    module.estimate = estimate  # type: ignore[attr-defined]
    module.parse_kv_type = lambda text: text.lower()  # type: ignore[attr-defined]
    return module


def _corpus_report(**changes: Any) -> dict[str, Any]:
    def quant(label: str, weights: int, kl: float, p999: float, ratio: float) -> dict[str, Any]:
        return {"label": label, "path": f"/m/{label}.gguf", "memory": _memory(weights),
                "kl_mean": kl, "kl_mean_unc": kl / 50, "kl_p99_9": p999, "ppl_ratio": ratio}

    document: dict[str, Any] = {
        "schema": 1, "mode": "kld", "set": "s", "source": "wiki.txt", "text_sha256": "ab12",
        "ctx": 512, "n_chunks": 20, "tokens_scored": 5000,
        "baseline": {"label": "F16", "path": "/m/f16.gguf", "memory": _memory(1_000_000)},
        "quants": [
            quant("Q8_0", 600_000, 0.002, 0.5, 1.001),
            quant("Q5_K_M", 400_000, 0.03, 1.5, 1.02),
            quant("Q4_K_M", 350_000, 0.004, 2.5, 1.004),
        ],
    }
    document.update(changes)
    return document


class TestCorpusReports:
    def test_by_p99_9_changes_the_pick(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "k.json", _corpus_report())
        # both fit 900000 - 409600 = 490400 of weights: Q5_K_M and Q4_K_M
        _, out, _ = _pick(capsys, str(report), "--budget", "900000B", "--json")
        assert json.loads(out)["pick"] == "Q4_K_M"  # mean KL 0.004 < 0.03
        _, out, _ = _pick(capsys, str(report), "--budget", "900000B", "--json", "--by", "p99.9")
        assert json.loads(out)["pick"] == "Q5_K_M"  # KL p99.9 1.5 < 2.5
        _, out, _ = _pick(capsys, str(report), "--budget", "900000B", "--by", "ppl")
        assert "Pick Q4_K_M: 759.6 kB, PPL ratio 1.0040" in out

    def test_another_text_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        a = _write(tmp_path / "a.json", _corpus_report())
        b = _write(tmp_path / "b.json", _corpus_report(text_sha256="cd34"))
        code, _, err = _pick(capsys, str(a), str(b), "--budget", "1GB")
        assert code == ExitCode.DATA
        assert "a.json and b.json differ in text_sha256: 'ab12' and 'cd34'" in err

    def test_flips_is_not_a_corpus_metric(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "k.json", _corpus_report())
        code, _, err = _pick(capsys, str(report), "--budget", "1GB", "--by", "flips")
        assert code == ExitCode.USAGE
        assert err.startswith("ggflip: error: --by flips: not a damage metric of a corpus report")


def test_ctx_without_memory_estimates_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _report()
    for model in [document["baseline"], *document["quants"]]:
        del model["memory"]
    report = _write(tmp_path / "r.json", document)
    code, out, err = _pick(capsys, str(report), "--budget", "1GB", "--ctx", "8192")
    assert code == ExitCode.USAGE and out == ""
    assert err.startswith("ggflip: error: --ctx and --kv-type need the reports' memory estimates")
