"""Snapshots of every TUI view at 120x40 and at 80x24 on the fake backend
(pytest-textual-snapshot); update with --snapshot-update.

Each is taken once the app has settled (`tests.tui_helpers.settle`: workers done, messages
handled, tables laid out) and with a frozen clock, so a slow or loaded machine draws the same
screen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.setup import RunOptions
from ggflip.tui.corpus_view import KldOptions
from tests.tui_helpers import FAKE_MODELS, fake_app, settle, start_run, write_fake_set

SIZES = pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
SnapCompare = Callable[..., bool]


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TestSetupView:
    @SIZES
    def test_sets_models_with_size_and_bits_per_weight(
        self, snap_compare: SnapCompare, fake_dir: Path, tiny_gguf_dir: Path, size: tuple[int, int]
    ) -> None:
        """The setup view lists the sets, each model's size and bits per weight read from its GGUF,
        and the form."""
        base, q8, q4 = (
            tiny_gguf_dir / name for name in ("base_f16.gguf", "q8_0.gguf", "q4_0.gguf")
        )
        (fake_dir / "models.toml").write_text(
            '[sets.tiny]\ndescription = "tiny generated llama"\n'
            f'baseline = {{ path = "{base}", label = "F16" }}\n'
            f'quants = [ {{ path = "{q8}", label = "Q8_0" }}, '
            f'{{ path = "{q4}", label = "Q4_0" }} ]\n'
            '[sets.other]\nbaseline = { path = "/m/f16.gguf", label = "F16" }\n'
        )
        factory = FakeBackendFactory({str(base): FAKE_MODELS["/m/f16.gguf"]})
        app = fake_app(
            RunOptions(models_path=Path("models.toml"), limit=20, seed=1), fake_dir, factory=factory
        )
        assert snap_compare(app, terminal_size=size, run_before=settle)


class TestRunView:
    @SIZES
    def test_finished_run_with_flips(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """The run view after the run, with the noise floor as the TUI scores it by default:
        per-model table with each quant's verdict, progress bars (not at 24 rows), and the flip
        list of the last quant."""
        app = fake_app(dataclasses.replace(write_fake_set(fake_dir), floor=True), fake_dir)
        assert snap_compare(app, terminal_size=size, run_before=start_run)


class TestQuestionDetail:
    @SIZES
    def test_detail_of_the_first_flip(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """Enter on a flip: question, options, baseline vs quant probability bars, gold, KL,
        margin."""

        async def open_detail(pilot: Pilot[Any]) -> None:
            screen = await start_run(pilot)
            screen.query_one("#flips", DataTable).focus()
            await pilot.press("enter")
            await settle(pilot)

        app = fake_app(write_fake_set(fake_dir), fake_dir)
        assert snap_compare(app, terminal_size=size, run_before=open_detail)


class TestTopMarginView:
    @SIZES
    def test_flip_rate_per_margin_bucket(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """m: flip rate per baseline top-margin bucket, one bar chart per quant."""

        async def open_margins(pilot: Pilot[Any]) -> None:
            await start_run(pilot)
            await pilot.press("m")
            await settle(pilot)

        app = fake_app(write_fake_set(fake_dir), fake_dir)
        assert snap_compare(app, terminal_size=size, run_before=open_margins)


class TestKldView:
    @SIZES
    def test_per_token_kl_view(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """Corpus mode after the run: statistics per model, progress, and chunk 2 of Q2_K shaded by
        KL."""

        async def second_chunk(pilot: Pilot[Any]) -> None:
            await settle(pilot)
            await pilot.press("n")
            await settle(pilot)

        (fake_dir / "corpus.txt").write_text(
            " ".join(f"word{(i * 7) % 41} thing{i % 13}" for i in range(150))
        )
        app = fake_app(write_fake_set(fake_dir), fake_dir)
        app.kld = KldOptions(texts=(Path("corpus.txt"),), ctx=64, chunks=3, no_cache=True)
        assert snap_compare(app, terminal_size=size, run_before=second_chunk)


class TestHelp:
    @SIZES
    def test_legend_and_keys(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """?: what each number means, and the keys."""

        async def open_help(pilot: Pilot[Any]) -> None:
            await start_run(pilot)
            await pilot.press("question_mark")
            await settle(pilot)

        app = fake_app(write_fake_set(fake_dir), fake_dir)
        assert snap_compare(app, terminal_size=size, run_before=open_help)


class TestErrorBox:
    @SIZES
    def test_a_failed_model_keeps_the_app_usable(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """A model that cannot be opened: the box with its one-line message over the run view."""
        app = fake_app(write_fake_set(fake_dir, extra_quant="/m/[x]missing.gguf"), fake_dir)
        assert snap_compare(app, terminal_size=size, run_before=start_run)


def _gen_app(folder: Path) -> Any:
    """The generation run view on twelve prompts with gold answers (some flip)."""
    import shutil

    from ggflip.generate.setup import GenOptions

    shutil.copy(Path(__file__).parent / "data" / "gen-tui-prompts.jsonl", folder / "prompts.jsonl")
    app = fake_app(write_fake_set(folder), folder)
    app.gen = GenOptions(task="prompts", data="prompts.jsonl", no_cache=True, max_new_tokens=8)
    return app


async def _open_gen_detail(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    pilot.app.screen.query_one("#turns", DataTable).focus()
    await pilot.press("enter")
    await pilot.pause()


class TestGenView:
    @SIZES
    def test_finished_generation_run(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """The generation run view after the run: per-model table and the last quant's flips."""
        assert snap_compare(_gen_app(fake_dir), terminal_size=size, run_before=settle)

    @SIZES
    def test_both_texts_side_by_side(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """Enter on a flip: the prompt, both generations, KL shading and the first divergence."""
        assert snap_compare(_gen_app(fake_dir), terminal_size=size, run_before=_open_gen_detail)


async def _open_help(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("question_mark")
    await settle(pilot)


class TestHelpPerView:
    @SIZES
    def test_corpus_legend_and_keys(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """? in the corpus view: PPL ratio ±, RMS Δp and the chunk keys, not multiple choice's."""
        (fake_dir / "corpus.txt").write_text(
            " ".join(f"word{(i * 7) % 41} thing{i % 13}" for i in range(150))
        )
        app = fake_app(write_fake_set(fake_dir), fake_dir)
        app.kld = KldOptions(texts=(Path("corpus.txt"),), ctx=64, chunks=3, no_cache=True)
        assert snap_compare(app, terminal_size=size, run_before=_open_help)

    @SIZES
    def test_generation_legend_and_keys(
        self, snap_compare: SnapCompare, fake_dir: Path, size: tuple[int, int]
    ) -> None:
        """? in the generation view: same text, 1st div, top-1, ∅ and the turn list's keys."""
        assert snap_compare(_gen_app(fake_dir), terminal_size=size, run_before=_open_help)
