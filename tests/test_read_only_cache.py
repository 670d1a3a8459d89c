"""A cache directory that cannot be written: a finished run is read from it, anything else is
one error naming --no-cache."""

from __future__ import annotations

import dataclasses
import errno
import pathlib
from pathlib import Path
from typing import Any

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import RunFinished
from ggflip.choice.resume import run_progress
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.errors import ExitCode, ReadOnlyCacheError
from tests.tui_helpers import FAKE_MODELS, write_fake_set


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _make_read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """What a read-only directory does to ggflip (root ignores permission bits, so the tests
    cannot chmod): creating a folder or opening a file for writing under it fails with EACCES."""
    real_mkdir, real_open = pathlib.Path.mkdir, pathlib.Path.open

    def inside(path: Path) -> bool:
        return Path(path).absolute().is_relative_to(root)

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if inside(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if inside(self) and any(flag in mode for flag in "wax+"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(pathlib.Path, "open", open_)


def _options(folder: Path) -> RunOptions:
    return dataclasses.replace(write_fake_set(folder), no_cache=False, cache_dir=folder / "cache")


def test_a_finished_run_is_read_from_a_read_only_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = _options(tmp_path)
    first = list(run_comparison(resolve_run_spec(options), FakeBackendFactory(FAKE_MODELS)))
    assert isinstance(first[-1], RunFinished)
    cache = (tmp_path / "cache").absolute()
    before = _files(cache)
    _make_read_only(monkeypatch, cache)
    factory = FakeBackendFactory(FAKE_MODELS)
    spec = resolve_run_spec(options)
    assert run_progress(spec, factory) == {"F16": 40, "Q8_0": 40, "Q2_K": 40}
    again = list(run_comparison(spec, factory))
    assert isinstance(again[-1], RunFinished)
    assert factory.opened == []  # nothing scored again
    for old, new in zip(first[-1].report.quants, again[-1].report.quants):
        assert [r.kl for r in new.rows] == [r.kl for r in old.rows]
    assert _files(cache) == before  # and nothing written


def test_an_unfinished_run_in_a_read_only_cache_names_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = _options(tmp_path)
    list(run_comparison(resolve_run_spec(options), FakeBackendFactory(FAKE_MODELS)))
    _make_read_only(monkeypatch, (tmp_path / "cache").absolute())
    other = resolve_run_spec(dataclasses.replace(options, limit=10))  # not in the cache
    with pytest.raises(ReadOnlyCacheError, match="read-only .* pass --no-cache") as info:
        list(run_comparison(other, FakeBackendFactory(FAKE_MODELS)))
    assert info.value.exit_code == ExitCode.CACHE
