"""Every test writes only under a temporary folder, and the real cache stays untouched.

Before any test module is imported, ggflip's cache (`$GGFLIP_CACHE_DIR`), `$HOME`,
`$XDG_CACHE_HOME` and the Hugging Face cache (`$HF_HOME`) point into one folder made for this
session; subprocesses inherit them. The demo models are found the way ggflip finds them
(`default_cache_dir()` under the environment pytest was started with: `$GGFLIP_CACHE_DIR`, else
`$XDG_CACHE_HOME/ggflip`, else `~/.cache/ggflip`) and linked file by file into the session cache's
`models/`, so `{cache}/models/...` in models.toml reaches them read-only while anything a test
writes (baselines, run stores, a remade model: written beside and renamed over its link) lands in
the session folder. A test that builds a path from the real home finds nothing there.

The real cache's `models/` (the one part tests can reach, through the links) is listed with sizes
and modification times at the start and compared at the end; a change fails the session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ggflip.config.models_toml import default_cache_dir

REDIRECTED = ("HOME", "XDG_CACHE_HOME", "GGFLIP_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE")


@dataclass(frozen=True)
class Sandbox:
    """Where this session's tests write, and the real cache they read the demo models from."""

    root: Path
    cache: Path
    home: Path
    real_cache: Path


SANDBOX: Sandbox | None = None
_saved_env: dict[str, str | None] = {}
_real_models_listing: dict[str, tuple[int, int]] = {}


def sandbox() -> Sandbox:
    """The session's sandbox (set up by pytest_configure)."""
    assert SANDBOX is not None, "tests/hermetic.py is not loaded as a plugin"
    return SANDBOX


def link_models(real_models: Path, models: Path) -> None:
    """Mirror `real_models/<name>/<file>` as symlinks under `models/`, one real folder per name."""
    if not real_models.is_dir():
        return
    for folder in sorted(p for p in real_models.iterdir() if p.is_dir()):
        target = models / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            (target / file.name).symlink_to(file.resolve())


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time (ns); empty if absent."""
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def pytest_configure(config: pytest.Config) -> None:
    global SANDBOX
    real_cache = default_cache_dir().resolve()
    root = Path(tempfile.mkdtemp(prefix="ggflip-tests-")).resolve()
    SANDBOX = Sandbox(root, root / "cache", root / "home", real_cache)
    SANDBOX.home.mkdir()
    link_models(real_cache / "models", SANDBOX.cache / "models")
    _real_models_listing.update(listing(real_cache / "models"))
    _saved_env.update({name: os.environ.get(name) for name in REDIRECTED})
    os.environ.update(
        HOME=str(SANDBOX.home),
        XDG_CACHE_HOME=str(SANDBOX.home / ".cache"),
        GGFLIP_CACHE_DIR=str(SANDBOX.cache),
        HF_HOME=str(root / "huggingface"),
        HF_HUB_CACHE=str(root / "huggingface" / "hub"),
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SANDBOX is None:
        return
    now = listing(SANDBOX.real_cache / "models")
    if now != _real_models_listing:
        changed = sorted(set(now.items()) ^ set(_real_models_listing.items()))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"a test changed the real cache {SANDBOX.real_cache / 'models'}: " + ", ".join(
            name for name, _ in changed
        )
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    global SANDBOX
    if SANDBOX is None:
        return
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(SANDBOX.root, ignore_errors=True)
    SANDBOX = None
