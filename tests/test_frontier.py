"""The memory–damage frontier: dominance on hand-made points, ties, unknowns, every mode's JSON."""

from __future__ import annotations

import io
import itertools
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.corpus.engine import run_kld
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.texts import CorpusText
from ggflip.errors import UsageError
from ggflip.generate.engine import run_generation
from ggflip.generate.spec import GenSpec
from ggflip.reports import choice as choice_pages
from ggflip.reports import pages
from ggflip.scoring import frontier
from ggflip.scoring.frontier import Point
from ggflip.tasks.generation import GEN_TASKS, load_items
from ggflip.tasks.questions import QuestionSet

DATA = Path(__file__).parent / "data"


def _p(label: str, memory: int, damage: float) -> Point:
    return Point(label, "quant", memory, damage)


def _places(points: list[Point]) -> dict[str, str | None]:
    return {p.point.label: p.dominated_by for p in frontier.place(points)}


class TestDominance:
    def test_hand_made_points(self) -> None:
        """A(100, .5) B(200, .3) C(150, .6): C is beaten by A; A and B trade size for damage."""
        points = [_p("A", 100, 0.5), _p("B", 200, 0.3), _p("C", 150, 0.6)]
        assert _places(points) == {"A": None, "C": "A", "B": None}
        assert [p.point.label for p in frontier.place(points)] == ["A", "C", "B"]

    def test_equal_in_both_dominate_neither(self) -> None:
        assert not frontier.dominates(_p("A", 100, 0.5), _p("D", 100, 0.5))
        assert _places([_p("A", 100, 0.5), _p("D", 100, 0.5)]) == {"A": None, "D": None}

    def test_a_tie_in_one_coordinate_is_decided_by_the_other(self) -> None:
        # same memory, more damage; same damage, more memory
        points = [_p("A", 100, 0.5), _p("E", 100, 0.7), _p("B", 200, 0.3), _p("F", 300, 0.3)]
        assert _places(points) == {"A": None, "E": "A", "B": None, "F": "B"}

    def test_the_dominator_named_is_the_smallest_frontier_file(self) -> None:
        # Z is beaten by A, B and C; A is the smallest frontier point that beats it
        points = [_p("Z", 500, 0.9), _p("B", 200, 0.3), _p("A", 100, 0.5), _p("C", 400, 0.1)]
        assert _places(points)["Z"] == "A"

    def test_against_brute_force(self) -> None:
        """Every point on a 5x5 grid against the definition, checked pair by pair."""
        grid = [
            _p(f"{m}-{d}", m, float(d))
            for m, d in itertools.product(range(5), range(5))
            if (m * 7 + d * 3) % 4 != 0
        ]
        placed = _places(grid)
        for p in grid:
            beaten = [
                q
                for q in grid
                if q.memory_bytes <= p.memory_bytes
                and q.damage <= p.damage
                and (q.memory_bytes, q.damage) != (p.memory_bytes, p.damage)
            ]
            assert (placed[p.label] is None) == (not beaten)
            if beaten:
                named = next(q for q in grid if q.label == placed[p.label])
                assert named in beaten and placed[named.label] is None


def _model(label: str, size: int | None, kl: float | None, **more: Any) -> dict[str, Any]:
    return {"label": label, "file_size": size, "kl_mean": kl, **more}


def _memory(total: int) -> dict[str, Any]:
    return {
        "weights_bytes": total - 1000, "kv_bytes": 1000, "compute_bytes": None,
        "total_bytes": total, "ctx": 4096, "kv_type_k": "f16", "kv_type_v": "f16",
        "swa_full": False, "layout": {},
    }


class TestFromDocument:
    def test_file_size_fallback_is_stated(self) -> None:
        document = {
            "schema": "ggflip.report/1",
            "baseline": _model("F16", 1000, None),
            "quants": [_model("Q8", 600, 0.01), _model("Q4", 300, 0.2), _model("Q5", 400, 0.3)],
        }
        got = frontier.frontier_object(document)
        assert got["memory_basis"] == "file_size"
        assert any(n.startswith("memory = file size") for n in got["notes"])
        assert [(p["label"], p["dominated_by"]) for p in got["points"]] == [
            ("Q4", None), ("Q5", "Q4"), ("Q8", None), ("F16", None)
        ]
        assert got["points"][-1]["damage"] == 0.0 and got["points"][-1]["role"] == "baseline"

    def test_unknowns_are_left_out_with_the_reason(self) -> None:
        document = {
            "schema": "ggflip.report/1",
            "baseline": _model("F16", 1000, None, memory=_memory(1500)),
            "quants": [
                _model("Q8", 600, 0.01, memory=_memory(900)),
                _model("Q4", 300, 0.2, memory=None, memory_unknown="split file part 2 missing"),
                _model("Q3", 250, None, memory=_memory(500)),
                _model("Q2", 200, 0.5),
            ],
        }
        got = frontier.frontier_object(document)
        assert got["memory_basis"] == "total_bytes" and got["ctx"] == 4096
        assert [p["label"] for p in got["points"]] == ["Q8", "F16"]
        assert [p["memory_bytes"] for p in got["points"]] == [900, 1500]
        reasons = {m["label"]: m["reason"] for m in got["left_out"]}
        assert reasons == {
            "Q4": "memory unknown: split file part 2 missing",
            "Q3": "no KL mean in the report",
            "Q2": "no memory estimate in the report (the others have one)",
        }

    def test_intervals_floor_and_by(self) -> None:
        document = {
            "mode": "kld",
            "quants": [
                {"label": "A", "memory": _memory(100), "kl_mean": 0.1, "kl_mean_unc": 0.01,
                 "kl_p99_9": 2.0, "ppl_ratio": 1.02},
                {"label": "B", "memory": _memory(200), "kl_mean": 0.05, "kl_mean_unc": 0.0,
                 "kl_p99_9": 3.0, "ppl_ratio": 1.01},
            ],
        }
        got = frontier.frontier_object(document)
        lo, hi = got["points"][0]["damage_interval"]
        assert (lo, hi) == pytest.approx((0.1 - 1.959964 * 0.01, 0.1 + 1.959964 * 0.01))
        assert got["floor"] is None
        by_p999 = frontier.frontier_object(document, "p99.9")
        assert by_p999["by"] == "kl_p99_9"
        assert [p["dominated_by"] for p in by_p999["points"]] == [None, "A"]
        assert frontier.damage_metric("ppl", "corpus").baseline_value == 1.0

    def test_a_choice_floor_is_the_band(self) -> None:
        document = {
            "schema": "ggflip.report/1",
            "quants": [_model("Q8", 600, 0.01)],
            "floor": _model("F16 floor", 1000, 0.002, kl_mean_ci=[0.001, 0.003]),
        }
        assert frontier.frontier_object(document)["floor"] == {
            "label": "F16 floor", "damage": 0.002, "damage_interval": [0.001, 0.003]
        }

    def test_by_a_metric_the_mode_lacks(self) -> None:
        with pytest.raises(UsageError, match=r"--by p99\.9: not a damage metric of a choice"):
            frontier.damage_metric("p99.9", "choice")
        with pytest.raises(UsageError, match="--by accuracy"):
            frontier.damage_metric("accuracy", "choice")
        assert frontier.damage_metric("flips", "choice").key == "flips"

    def test_the_source_artefact_is_explained(self) -> None:
        document = {
            "schema": "ggflip.report/1",
            "quants": [
                _model("Q5_K_M", 400, 0.03, kl_mean_ci=[0.028, 0.032]),
                _model("Q4_K_M (≈ source)", 300, 0.004),
                _model("Q3_K_M", 250, 0.2, kl_mean_ci=[0.15, 0.25]),
                _model("Q3_K_L", 260, 0.21, kl_mean_ci=[0.16, 0.26]),
            ],
        }
        notes = frontier.frontier_object(document)["notes"]
        assert any(n.startswith("Q5_K_M is dominated by Q4_K_M (≈ source): the baseline was "
                                "rebuilt") for n in notes)
        assert any(n.startswith("Q3_K_L is dominated by Q3_K_M, but their KL mean 95% "
                                "intervals overlap") for n in notes)


def test_every_mode_s_report_has_the_frontier(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    """The fake backend's reports (no memory, no file size in corpus and generation) carry the
    object; what cannot be placed is left out with its reason."""
    choice = list(run_comparison(RunSpec(fake_set, fake_questions), fake_factory))[-1].report
    text = " ".join(f"word{(i * 7) % 41} thing{i % 13}" for i in range(150))
    kld_spec = KldSpec(
        fake_set, (CorpusText("t", "t", text),), ctx=32, cache_dir=Path(tempfile.mkdtemp())
    )
    corpus = list(run_kld(kld_spec, fake_factory))[-1].report  # type: ignore[attr-defined]
    items = tuple(load_items(GEN_TASKS["prompts"], str(DATA / "gen-tui-prompts.jsonl")))
    spec = GenSpec(fake_set, GEN_TASKS["prompts"], items, "p.jsonl", max_new_tokens=8)
    gen = list(run_generation(spec, fake_factory))[-1].report  # type: ignore[attr-defined]
    for report in (choice, corpus, gen):
        document = report.to_dict()
        got = document["frontier"]
        assert got["by"] == "kl_mean" and set(got) >= {"points", "left_out", "floor", "notes"}
        labels = {p["label"] for p in got["points"]} | {m["label"] for m in got["left_out"]}
        assert labels == {m["label"] for m in [document["baseline"], *document["quants"]]}
        assert {m["reason"] for m in got["left_out"]} == {
            "memory unknown: this backend does not size models"  # the fake backend's memory_unknown
        }
        assert got["memory_basis"] == "total_bytes" and got["floor"] is None


def _sized_choice_document(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> dict[str, Any]:
    """A fake run's report as one saved before ggflip recorded memory, with file sizes: F16 and
    self 1000 bytes, Q8_0 200, Q2_K 300 (so Q2_K, larger and noisier, is beaten by Q8_0)."""
    report = list(run_comparison(RunSpec(fake_set, fake_questions), fake_factory))[-1].report
    document = report.to_dict()
    sizes = {"F16": 1000, "self": 1000, "Q8_0": 200, "Q2_K": 300}
    for model in [document["baseline"], *document["quants"]]:
        model["file_size"] = sizes[model["label"]]
        del model["memory"], model["memory_unknown"]
    del document["frontier"]  # as a report saved before it had one: computed when rendered
    return document


def test_the_pages_show_the_frontier(
    fake_set: ModelSet, fake_questions: QuestionSet, fake_factory: FakeBackendFactory
) -> None:
    document = _sized_choice_document(fake_set, fake_questions, fake_factory)
    page = pages.render_html(document)
    assert '<figure class="frontier"><svg' in page
    svg = page[page.index('<figure class="frontier">') : page.index("</svg>")]
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert {"Q8_0", "Q2_K (beaten by Q8_0)", "self"} <= set(texts)
    assert "<td>beaten by Q8_0</td>" in page and "<td>200 B</td>" in page
    markdown = pages.render_markdown(document)
    assert "## Memory against KL mean: the frontier" in markdown
    assert "| Q8_0 | 200 B | – |" in markdown and "| ★ frontier |" in markdown
    assert "memory = file size: no KV at this ctx" in markdown
    console = Console(width=200, record=True, file=io.StringIO())
    choice_pages.render_report(pages.report_from_dict(document), console)
    text = console.export_text()
    assert "Memory against KL mean: the frontier" in text
    assert re.search(r"Q2_K +│ +300 B .*│ beaten by Q8_0", text)


@pytest.mark.parametrize("by", ["kl_mean", "ppl", "p99.9"])
def test_the_plot_of_every_axis_kind(by: str) -> None:
    """Log axis (KL), linear (a ratio; a quant at 0), the baseline beside or far from the quants,
    a floor: each draws an inline SVG with every label."""
    from ggflip.reports.frontier import frontier_html

    quants = [
        {"label": "A", "memory": _memory(100), "kl_mean": 0.1, "kl_mean_unc": 0.01,
         "kl_p99_9": 0.0, "ppl_ratio": 1.02},
        {"label": "B", "memory": _memory(150), "kl_mean": 0.05, "kl_p99_9": 3.0,
         "ppl_ratio": 0.99},
    ]
    for base_memory in (160, 10_000):
        document = {"mode": "kld", "quants": quants,
                    "baseline": {"label": "F16", "memory": _memory(base_memory)}}
        page = frontier_html(frontier.frontier_object(document, by))
        assert page.count("<svg") == 1 and "http" not in page
        texts = re.findall(r"<text[^>]*>([^<]*)</text>", page)
        assert any(t.startswith("A") for t in texts) and any(t.startswith("B") for t in texts)
        assert any(t.startswith("F16 (baseline") for t in texts)
