"""The test sandbox (tests/hermetic.py): ggflip's cache and $HOME point into a per-session folder,
in this process and in subprocesses, and the demo models are reached there through links to the
real cache, which no test writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ggflip.config.models_toml import default_cache_dir, load_models_toml
from ggflip.demo.models import demo_model_path, is_complete
from tests.hermetic import link_models, listing, sandbox

REPO = Path(__file__).resolve().parents[1]


def test_cache_and_home_point_into_the_session_folder() -> None:
    box = sandbox()
    assert default_cache_dir() == box.cache != box.real_cache
    assert Path.home() == box.home == Path("~/.cache/ggflip").expanduser().parent.parent
    assert box.real_cache not in default_cache_dir().parents


def test_a_subprocess_sees_the_same_sandbox() -> None:
    code = "from ggflip.config.models_toml import default_cache_dir as d; import pathlib\n"
    code += "print(d()); print(pathlib.Path.home())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [str(sandbox().cache), str(sandbox().home)]


def test_demo_models_resolve_through_links_to_the_real_cache() -> None:
    """models.toml's `{cache}` paths name the session cache; each existing demo file there is a
    link to the real one, so it reads the same and a rename over it leaves the real file alone."""
    box = sandbox()
    baseline = load_models_toml(REPO / "models.toml").get_set("gemma-270m").baseline.path
    assert baseline == demo_model_path(box.cache / "models", "F16")
    real = demo_model_path(box.real_cache / "models", "F16")
    assert baseline.is_symlink() == real.is_file()
    if real.is_file():
        assert baseline.resolve() == real.resolve() and is_complete(baseline) == is_complete(real)


def test_link_models_mirrors_files_and_writes_stay_beside_the_links(tmp_path: Path) -> None:
    """A file replaced in the mirror (written beside its link, renamed over it) and a new file
    change only the mirror; the real folder's listing is the same."""
    real = tmp_path / "real" / "models"
    (real / "m").mkdir(parents=True)
    (real / "m" / "a.gguf").write_bytes(b"real")
    before = listing(real)
    mirror = tmp_path / "box" / "models"
    link_models(real, mirror)
    assert (mirror / "m" / "a.gguf").read_bytes() == b"real"
    (mirror / "m" / "a.gguf.tmp").write_bytes(b"remade")
    (mirror / "m" / "a.gguf.tmp").replace(mirror / "m" / "a.gguf")
    (mirror / "m" / "b.gguf").write_bytes(b"new")
    assert listing(real) == before and (real / "m" / "a.gguf").read_bytes() == b"real"
    assert sorted(listing(mirror)) == ["m/a.gguf", "m/b.gguf"]


def _inner_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """A pytest session with the sandbox plugin whose "real" cache is a folder under tmp_path
    holding one demo file, running one test with `body`."""
    real = tmp_path / "real-cache"
    (real / "models" / "m").mkdir(parents=True)
    (real / "models" / "m" / "a.gguf").write_bytes(b"real")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(
        "from tests.hermetic import sandbox\n\n\ndef test_it():\n    box = sandbox()\n" + body
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "GGFLIP_CACHE_DIR": str(real)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.hermetic", "-p"]
    command += ["no:cacheprovider", str(inner)]
    return subprocess.run(command, env=env, cwd=inner, capture_output=True, text=True)


def test_a_write_into_the_real_models_fails_the_session(tmp_path: Path) -> None:
    """The guard itself: a test that passes but wrote into the real cache's models/ fails the
    session, naming the file; one that wrote through the sandbox's link does not."""
    bad = _inner_session(
        tmp_path, '    (box.real_cache / "models" / "m" / "b.gguf").write_text("x")\n'
    )
    assert bad.returncode == 1 and "1 passed" in bad.stdout
    assert (
        f"a test changed the real cache {tmp_path / 'real-cache' / 'models'}: m/b.gguf"
        in bad.stdout
    )
    good = _inner_session(
        tmp_path / "again",
        '    (box.cache / "models" / "m" / "a.gguf").unlink()\n'
        '    (box.cache / "models" / "m" / "b.gguf").write_text("x")\n',
    )
    assert good.returncode == 0, good.stdout
    assert (tmp_path / "again" / "real-cache" / "models" / "m" / "a.gguf").read_bytes() == b"real"
