"""Generation reports outside the run: `ggflip tasks` lists the tasks, `ggflip report` renders a
saved `ggflip.generate/1` document as Markdown and a self-contained HTML page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.cli.main import main
from ggflip.config.models_toml import ModelSet
from ggflip.generate.engine import run_generation
from ggflip.generate.report import GenReport
from ggflip.generate.spec import GenSpec
from ggflip.scoring import formats
from ggflip.tasks.generation import GEN_TASKS, load_items

DATA = Path(__file__).parent / "data"


def test_tasks_lists_the_generation_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--json"]) == 0
    tasks = {t["name"]: t for t in json.loads(capsys.readouterr().out)["tasks"]}
    assert {name: tasks[name]["mode"] for name in GEN_TASKS} == {
        "gsm8k": "generate",
        "prompts": "generate",
        "mt_bench": "generate",
    }
    assert tasks["gsm8k"]["shots"] == 5 and tasks["gsm8k"]["answer_rule"] == "strict"
    assert tasks["gsm8k"]["source"] == "hf:openai/gsm8k:main:test"
    assert tasks["prompts"]["source"] == "ggflip:default-prompts"
    assert tasks["mt_bench"]["source"] is None  # it needs --data
    assert tasks["mmlu"]["mode"] == "letter"
    assert main(["tasks"]) == 0
    assert "mt_bench" in capsys.readouterr().out


@pytest.fixture
def gen_json(fake_set: ModelSet, fake_factory: FakeBackendFactory, tmp_path: Path) -> Path:
    items = tuple(load_items(GEN_TASKS["prompts"], str(DATA / "gen-tui-prompts.jsonl")))
    spec = GenSpec(
        fake_set,
        GEN_TASKS["prompts"],
        items,
        "prompts.jsonl",
        selection="all 12 prompts",
        max_new_tokens=8,
    )
    report = list(run_generation(spec, fake_factory))[-1].report  # type: ignore[attr-defined]
    assert isinstance(report, GenReport)
    path = tmp_path / "gen.json"
    path.write_text(report.to_json())
    return path


def test_report_renders_a_generation_document(
    gen_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Markdown and HTML carry each quant's KL, top-1, same text and flips, and the flipped
    turns; the HTML has its two plots inline and nothing external."""
    document = json.loads(gen_json.read_text())
    html_path, md_path = tmp_path / "gen.html", tmp_path / "gen.md"
    argv = ["report", str(gen_json), "--html", str(html_path), "--markdown", str(md_path)]
    assert main(argv) == 0
    page, markdown = html_path.read_text(), md_path.read_text()
    assert document["selection"] == "all 12 prompts"
    assert "Source `prompts.jsonl` (all 12 prompts)" in markdown and "all 12 prompts" in page
    for quant in document["quants"]:
        for text in (page, markdown):
            assert formats.sig(quant["kl_mean"]) in text
            assert f"{quant['top1_agreement']:.4f}" in text
            assert f"{quant['same_text']:.3f}" in text
            assert f"{quant['n_flips_lost']}↓ {quant['n_flips_gained']}↑" in text
        flipped = [r["id"] for r in quant["rows"] if r["flip"]]
        assert bool(flipped) == (quant["label"] != "self")  # the baseline as a quant flips none
        assert all(f"<td>{i}</td>" in page for i in flipped)
        assert all(f"`{i}` turn 1 " in markdown for i in flipped[:10])  # the first ten
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "<script" not in page and "http" not in page.replace("ggflip", "")
    assert main(["report", str(gen_json)]) == 0  # no --html/--markdown: Markdown on stdout
    assert capsys.readouterr().out.startswith("# ggflip generate: fake, prompts (12 turns)")


def test_a_source_marked_label_is_explained_in_generation_reports(gen_json: Path) -> None:
    """A quant labelled `(≈ source)` gets the note among the Markdown's notes; none without."""
    from ggflip.reports.generation import render_gen_markdown
    from ggflip.reports.notes import SOURCE_NOTE

    document = json.loads(gen_json.read_text())
    assert SOURCE_NOTE not in render_gen_markdown(document)
    document["quants"][1]["label"] = "Q4_K_M (≈ source)"
    assert f"- {SOURCE_NOTE}" in render_gen_markdown(document).splitlines()


def test_flips_hidden_by_accuracy_are_said_in_generation_reports(gen_json: Path) -> None:
    """5 turns lost and 4 regained of 12: McNemar p = 2 * P(X <= 4 | 9, 1/2) = 1 by hand, so
    accuracy cannot tell; the sentence names it after the table. Without flips, none."""
    import math

    from ggflip.reports.generation import render_gen_markdown

    document = json.loads(gen_json.read_text())
    p = min(1.0, 2 * sum(math.comb(9, i) for i in range(5)) / 2**9)
    quant = document["quants"][1]
    quant.update(
        n_flips_lost=5,
        n_flips_gained=4,
        flips_lost=5 / 12,
        flips_gained=4 / 12,
        mcnemar_p=p,
        accuracy=3 / 12,
        baseline_accuracy=4 / 12,
    )
    markdown = render_gen_markdown(document)
    sentence = (
        f"Accuracy is within noise here, flips are not: {quant['label']} -8.3 pt (McNemar p = 1) "
        "with 75.0% of answers flipped (5 c→i, 4 i→c)"
    )
    assert sentence in markdown
    for each in document["quants"]:
        each.update(n_flips_lost=0, n_flips_gained=0)
    assert "within noise" not in render_gen_markdown(document)
