"""scripts/check_size.py: modules over 400 lines and functions over 60 are named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_size.py"


def _function(name: str, n_lines: int, indent: str = "") -> str:
    """A function of exactly `n_lines` lines, def line included."""
    body = [f"{indent}    x = {i}" for i in range(n_lines - 1)]
    return "\n".join([f"{indent}def {name}() -> None:", *body]) + "\n"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_a_function_of_61_lines_fails_and_one_of_60_passes(tmp_path: Path) -> None:
    """The limit is 60 lines from `def` to the last line, methods and nested functions included."""
    ok, long = tmp_path / "ok.py", tmp_path / "long.py"
    ok.write_text(_function("fits", 60))
    long.write_text("class Screen:\n" + _function("compose", 61, indent="    "))
    assert _check(str(ok)).returncode == 0
    result = _check(str(ok), str(long))
    assert result.returncode == 1
    assert f"{long}:2: Screen.compose has 61 lines (limit 60)" in result.stderr
    assert "fits" not in result.stderr


def test_a_module_of_401_lines_fails_and_list_exits_0(tmp_path: Path) -> None:
    """401 lines fail the module limit, 400 pass; --list prints the offenders, largest first."""
    fits, big = tmp_path / "fits.py", tmp_path / "big.py"
    fits.write_text("x = 1\n" * 400)
    big.write_text("x = 1\n" * 340 + _function("outer", 61))
    assert _check(str(fits)).returncode == 0
    result = _check("--list", str(fits), str(big))
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"{big}: module has 401 lines (limit 400)",
        f"{big}:341: outer has 61 lines (limit 60)",
    ]
