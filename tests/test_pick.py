"""`ggflip pick`: the budget parser, the choice on a frontier, and the command on synthetic
reports (choice, refusal, mismatched reports, --json, --ctx through the memory estimate)."""

from __future__ import annotations

import json
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


_LAYOUT = {"architecture": "llama", "n_embd_k_gqa": [32], "n_embd_v_gqa": [32],
           "swa_layers": [False], "head_k": 32, "head_v": 32, "n_swa": 0, "n_ctx_train": 4096,
           "unknown_reason": None}


def _memory(weights: int, ctx: int = 4096) -> dict[str, Any]:
    kv = ctx * 100  # the report's own figure; only --ctx/--kv-type re-estimate it from _LAYOUT
    return {
        "weights_bytes": weights, "kv_bytes": kv, "compute_bytes": 0,
        "total_bytes": weights + kv, "ctx": ctx, "kv_type_k": "f16", "kv_type_v": "f16",
        "swa_full": False, "layout": _LAYOUT,
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
            "(memory = weights + KV cache at ctx 4096, KV cache f16)\n"
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
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "r.json", _report())
        # ctx 1000 is padded to 1,024 cells; a q8_0 row of 32 values is one 34-byte block, so a
        # cell is 34 + 34 bytes: KV 69,632 bytes, and Q8_0 needs 669,632 <= 700 kB
        code, out, _ = _pick(
            capsys, str(report), "--budget", "700kB", "--ctx", "1000", "--kv-type", "q8_0", "--json"
        )
        document = json.loads(out)
        assert code == ExitCode.OK and document["pick"] == "Q8_0"
        assert document["chosen"]["memory_bytes"] == 600_000 + 1024 * 68
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


class TestCompareAndFailIf:
    @staticmethod
    def _with_rows() -> dict[str, Any]:
        """Q8_0 right on questions 0-29 of 40 (gold 0), Q5_K_M on 0-19 and 30-31: Q8_0 only right
        on 10, Q5_K_M only on 2; KL 0.01 against 0.02 on every question."""
        document = _report()
        right = {"Q8_0": set(range(30)), "Q5_K_M": set(range(20)) | {30, 31}}
        kl = {"Q8_0": 0.01, "Q5_K_M": 0.02}
        for quant in document["quants"]:
            label = quant["label"]
            if label in right:
                quant["rows"] = [
                    {"index": i, "gold": 0, "quant_choice": 0 if i in right[label] else 1,
                     "kl": kl[label]}
                    for i in range(40)
                ]
        return document

    def test_compare_pairs_the_two_quants(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "r.json", self._with_rows())
        code, out, _ = _pick(capsys, str(report), "--compare", "Q8_0", "Q5_K_M", "--json")
        compared = json.loads(out)["compare"]
        assert code == ExitCode.OK and compared["n"] == 40
        assert (compared["accuracy"]["a_only"], compared["accuracy"]["b_only"]) == (10, 2)
        # two-sided exact McNemar on 10 vs 2: 2 * (1 + 12 + 66) / 4096
        assert compared["accuracy"]["mcnemar_p"] == pytest.approx(2 * 79 / 4096, rel=1e-12)
        assert compared["kl"]["difference"] == pytest.approx(-0.01)
        assert compared["kl"]["lower"] == "Q8_0"

    def test_a_label_without_its_note_names_the_quant(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        document = self._with_rows()
        document["quants"][2]["rows"] = document["quants"][0]["rows"]
        report = _write(tmp_path / "r.json", document)
        code, out, _ = _pick(capsys, str(report), "--compare", "Q4_K_M", "Q5_K_M", "--json")
        assert code == ExitCode.OK and json.loads(out)["compare"]["n"] == 40

    def test_fail_if_names_each_quant_over_the_threshold(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "r.json", _report())
        code, out, err = _pick(capsys, str(report), "--budget", "6GB", "--fail-if", "kl_mean>0.01")
        assert code == ExitCode.THRESHOLD and "Pick" in out
        failing = [line.split(":")[2].strip() for line in err.splitlines()]
        assert failing == ["Q5_K_M", "Q2_K"]  # KL 0.03 and 0.45; Q8_0 0.002, Q4_K_M 0.004 pass

    def test_neither_budget_nor_compare_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = _write(tmp_path / "r.json", _report())
        code, out, err = _pick(capsys, str(report))
        assert code == ExitCode.USAGE and out == ""
        assert err.strip().splitlines() == [
            "ggflip: error: pick needs --budget SIZE (e.g. 6GB), --compare A B, or both"
        ]
