"""The setup view: pick a comparison set from models.toml, a task, the questions; Enter starts
the run view of the task's mode (multiple choice, generation, or corpus mode for the task "kld").

Each model's file size and bits per weight (tensor bits / parameter count, from the GGUF header, as
`ggflip inspect`) are read in a thread worker, so a slow disk never freezes the view.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Header,
    Input,
    Label,
    OptionList,
    Select,
    Static,
)
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from ggflip.backends.registry import backend_factory
from ggflip.choice.setup import RunOptions, check_options
from ggflip.config.models_toml import ModelsConfig, ModelSet
from ggflip.config.resolve import models_for_setup
from ggflip.corpus.setup import KldOptions
from ggflip.errors import GgflipError
from ggflip.gguf.header import read_header
from ggflip.tasks.generation import GEN_TASKS
from ggflip.tasks.registry import TASKS
from ggflip.tui.choice_tables import fitted_widths
from ggflip.tui.choice_view import ChoiceScreen
from ggflip.tui.corpus_view import CORPUS_TASK, KldScreen
from ggflip.tui.gen_live import gen_options
from ggflip.tui.gen_view import GenScreen
from ggflip.tui.run_widgets import footer
from ggflip.tui.setup_models import MODEL_COLUMNS, model_rows

DEMO_LIMIT = 300
"""The Limit the form shows when none was given: the demo's sample (`scripts/demo.sh`), so one
Enter never starts a whole-benchmark run (14,042 MMLU questions); clear it to use them all."""
LIMIT_PLACEHOLDERS = {"choice": "all questions", "generate": "all prompts", "kld": "all chunks"}

CORPUS_DESCRIPTION = (
    "full-vocabulary KL, PPL and top-token agreement on a text (Data: text files or folders, "
    "comma-separated; Limit: chunks per text)"
)


class SetupScreen(Screen[None]):
    """Choose what to compare; Enter (or the Start button) opens the run view."""

    HELP_MODE = "setup"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start", show=False),
        Binding("q", "app.quit", "Quit"),
    ]
    DEFAULT_CSS = """
    SetupScreen #body { height: 1fr; }
    SetupScreen #sets-pane { width: 34; border-right: solid $accent; }
    SetupScreen.narrow #sets-pane { width: 22; }
    SetupScreen.narrow .field { margin-bottom: 0; }
    SetupScreen #sets { height: 1fr; border: none; }
    SetupScreen #details { padding: 0 1; height: auto; }
    SetupScreen.narrow #details { height: 1fr; }
    SetupScreen .heading { text-style: bold; padding-top: 1; }
    SetupScreen #models { height: auto; max-height: 12; }
    SetupScreen .field { height: 1; margin-bottom: 1; }
    SetupScreen .field Label { width: 14; }
    SetupScreen .field Input, SetupScreen .field Select { width: 1fr; max-width: 60; }
    SetupScreen #form { width: 1fr; }
    SetupScreen #start { margin: 0 1; }
    """

    class ModelInfo(Message):
        """A model file's size, parameter count and bits per weight were read (or why they could not
        be)."""

        def __init__(
            self,
            path: Path,
            size: int | None,
            n_params: int | None,
            bits_per_weight: float | None,
            problem: str | None,
        ) -> None:
            super().__init__()
            self.path, self.size, self.n_params, self.problem = path, size, n_params, problem
            self.bits_per_weight = bits_per_weight

    def __init__(self, options: RunOptions) -> None:
        super().__init__()
        self.options = options
        self.config: ModelsConfig | None = None
        self.model_info: dict[Path, SetupScreen.ModelInfo] = {}
        self.chosen: str | None = None
        self._task_names: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="sets-pane"):
                yield Label("Comparison sets", classes="heading")
                yield OptionList(id="sets")
            # The form scrolls on a short terminal; the Start button stays in view below it.
            with Vertical(id="form"):
                with VerticalScroll(id="details"):
                    yield Static("", id="set-description", classes="heading")
                    table: DataTable[str] = DataTable(id="models", cursor_type="none")
                    table.can_focus = False
                    yield table
                    yield Static("", id="llama")
                    yield Label("Run", classes="heading", id="run-heading")
                    yield from self._run_fields()
                yield Button("Start  (Enter)", id="start", variant="primary", compact=True)
        yield footer()

    def _run_fields(self) -> ComposeResult:
        """The run's form fields: task, data, limit, seed, subjects, batch size."""
        tasks = self._task_choices()
        known = self._task_names = {name for _, name in tasks}
        task = self.options.task if self.options.task in known else next(iter(TASKS))
        yield self._field(
            "Task", Select(tasks, value=task, allow_blank=False, compact=True, id="task")
        )
        yield self._field(
            "Data",
            Input(
                self.options.data or "",
                placeholder="the task's default questions (or a JSONL file, hf:NAME…)",
                compact=True,
                id="data",
            ),
        )
        yield self._field(
            "Limit",
            Input(
                self._text(DEMO_LIMIT if self.options.limit is None else self.options.limit),
                placeholder=self._limit_placeholder(task),
                type="integer",
                compact=True,
                id="limit",
            ),
        )
        yield self._field(
            "Seed",
            Input(
                self._text(self.options.seed),
                placeholder="0 (a sample stratified by subject)",
                type="integer",
                compact=True,
                id="seed",
            ),
        )
        yield self._field(
            "Subjects",
            Input(
                ", ".join(self.options.subjects),
                placeholder="all (comma-separated to filter)",
                compact=True,
                id="subjects",
            ),
        )
        yield self._field(
            "Batch size",
            Input(str(self.options.batch_size), type="integer", compact=True, id="batch"),
        )

    def _limit_placeholder(self, task: str) -> str:
        """What an empty Limit means for `task`: every question, prompt or chunk."""
        if task == CORPUS_TASK:
            return LIMIT_PLACEHOLDERS["kld"]
        generation = gen_options(replace(self.options, task=task)) is not None
        return LIMIT_PLACEHOLDERS["generate" if generation else "choice"]

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "task" and isinstance(event.value, str):
            self.query_one("#limit", Input).placeholder = self._limit_placeholder(event.value)

    @staticmethod
    def _task_choices() -> list[tuple[str, str]]:
        """Every task the setup starts: multiple choice, generation, then corpus mode."""
        tasks = [(f"{t.name}: {t.description}", t.name) for t in TASKS.values()]
        tasks += [(f"{t.name}: {t.description}", t.name) for t in GEN_TASKS.values()]
        return [*tasks, (f"{CORPUS_TASK}: {CORPUS_DESCRIPTION}", CORPUS_TASK)]

    @staticmethod
    def _field(name: str, widget: Input | Select[str]) -> Horizontal:
        return Horizontal(Label(name), widget, classes="field")

    @staticmethod
    def _text(value: int | None) -> str:
        return "" if value is None else str(value)

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < 100 or event.size.height < 30, "narrow")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 100 or self.app.size.height < 30, "narrow")
        self.sub_title = str(self.options.models_path)
        sets, o = self.query_one("#sets", OptionList), self.options
        pack = self.app.pack  # type: ignore[attr-defined]
        try:
            self.config = (
                pack.models(o) if pack else models_for_setup(o.models_path, o.baseline, o.quants)
            )
        except GgflipError as exc:
            self.query_one("#set-description", Static).update(
                Text(f"Cannot open the models file: {exc}")
            )
            self.notify(str(exc), title="models.toml", severity="error", timeout=10, markup=False)
            return
        for name, model_set in self.config.sets.items():
            label = Text(name)
            label.append(f"\n{len(model_set.quants)} quant(s)", style="dim")
            sets.add_option(Option(label, id=name))
        if not self.config.sets:
            self.query_one("#set-description", Static).update(
                Text(f"{self.config.path}: no sets defined")
            )
            return
        wanted = self.options.set_name if self.options.set_name in self.config.sets else None
        wanted = wanted or next(iter(self.config.sets))
        sets.highlighted = sets.get_option_index(wanted)
        self._show_set(wanted)
        sets.focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self._show_set(event.option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_start()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def _show_set(self, name: str) -> None:
        assert self.config is not None
        self.chosen = name
        model_set = self.config.sets[name]
        self.query_one("#set-description", Static).update(
            Text(f"{name}: {model_set.description or 'no description'}")
        )
        pack = self.app.pack  # type: ignore[attr-defined]
        try:
            runs_with = backend_factory(model_set).describe(model_set.baseline, "baseline")
        except GgflipError as exc:
            runs_with = str(exc)
        if pack is not None:  # the pack's questions and settings: no form, no floor
            runs_with = f"{pack.description()}\n{runs_with}"
            self.query(".field, #run-heading").set(display=False)
            base = model_set.baseline.path  # its row from the pack: the file is not here
            self.model_info[base] = self.ModelInfo(base, *pack.baseline_facts())
        self.query_one("#llama", Static).update(Text(runs_with))
        self._draw_models(model_set)
        missing = [m.path for m in model_set.models if m.path not in self.model_info]
        if missing:
            self._read_model_info(missing)

    def _draw_models(self, model_set: ModelSet) -> None:
        rows = model_rows(model_set, self.model_info)
        # Explicit widths, fitted to what was read (see `tables`: auto widths race the render).
        labels = MODEL_COLUMNS
        table = self.query_one("#models", DataTable)
        table.clear(columns=True)
        for label, width in zip(labels, fitted_widths(labels, rows)):
            table.add_column(label, width=width)
        for row in rows:
            table.add_row(*row)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gguf")
    def _read_model_info(self, paths: list[Path]) -> None:
        """Read each file's size and parameter count from its GGUF header."""
        worker = get_current_worker()
        for path in dict.fromkeys(paths):
            if worker.is_cancelled:
                return
            try:
                header = read_header(path)
                problem = None if header.n_params else "no tensors"
                self.post_message(
                    self.ModelInfo(
                        path, header.file_size, header.n_params, header.bits_per_weight, problem
                    )
                )
            except GgflipError as exc:
                problem = "missing" if "not found" in str(exc) else "unreadable"
                self.post_message(self.ModelInfo(path, None, None, None, problem))

    def on_setup_screen_model_info(self, message: ModelInfo) -> None:
        self.model_info[message.path] = message
        if self.config is not None and self.chosen is not None:
            self._draw_models(self.config.sets[self.chosen])

    def _int(self, widget_id: str) -> int | None:
        text = self.query_one(f"#{widget_id}", Input).value.strip()
        return int(text) if text else None

    def action_start(self) -> None:
        """Build the run options from the form and open the run view."""
        if self.config is None or self.chosen is None:
            self.notify("No comparison set to run: fix the models file first.", severity="error")
            return
        if self.app.pack is not None:  # type: ignore[attr-defined]
            self.app.push_screen(ChoiceScreen(replace(self.options, set_name=self.chosen)))
            return
        try:
            batch = self._int("batch")
            options = replace(
                self.options,
                set_name=self.chosen,
                task=str(self.query_one("#task", Select).value),
                data=self.query_one("#data", Input).value.strip() or None,
                limit=self._int("limit"),
                seed=self._int("seed"),
                subjects=tuple(
                    s.strip()
                    for s in self.query_one("#subjects", Input).value.split(",")
                    if s.strip()
                ),
                batch_size=batch if batch is not None else self.options.batch_size,
            )
            check_options(options)
        except ValueError:
            self.notify("Limit, seed and batch size must be whole numbers.", severity="error")
            return
        except GgflipError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.options = options
        if options.task == CORPUS_TASK:
            self._start_corpus(options)
            return
        chosen = self.app.gen  # type: ignore[attr-defined]
        gen = gen_options(
            options,
            chat=bool(chosen and chosen.chat),
            system=chosen.system if chosen else None,
            max_new_tokens=chosen.max_new_tokens if chosen else None,
        )
        self.app.push_screen(GenScreen(gen) if gen is not None else ChoiceScreen(options))

    def _start_corpus(self, options: RunOptions) -> None:
        """Open corpus mode on the texts named in Data (the `ggflip tui --text` run's other
        choices kept)."""
        texts = tuple(Path(p.strip()) for p in (options.data or "").split(",") if p.strip())
        if not texts:
            self.notify(
                "Corpus mode reads a text: name a file or folder in Data.", severity="error"
            )
            return
        earlier = self.app.kld or KldOptions(texts)  # type: ignore[attr-defined]
        self.app.push_screen(
            KldScreen(
                replace(
                    earlier,
                    texts=texts,
                    models_path=options.models_path,
                    set_name=options.set_name,
                    chunks=options.limit,
                    cache_dir=options.cache_dir,
                    no_cache=options.no_cache,
                    scoring_threads=options.scoring_threads,
                )
            )
        )

    def restore(self, options: RunOptions) -> None:
        """Show `options` in the form again (Esc from a run view: the run's mode and values)."""
        self.options = options
        task = self.query_one("#task", Select)
        if options.task in self._task_names:
            task.value = options.task
        self.query_one("#data", Input).value = options.data or ""
        self.query_one("#limit", Input).value = self._text(options.limit)
        self.query_one("#seed", Input).value = self._text(options.seed)
        self.query_one("#subjects", Input).value = ", ".join(options.subjects)
        self.query_one("#batch", Input).value = str(options.batch_size)
        if self.config is not None and options.set_name and options.set_name in self.config.sets:
            sets = self.query_one("#sets", OptionList)
            sets.highlighted = sets.get_option_index(options.set_name)
