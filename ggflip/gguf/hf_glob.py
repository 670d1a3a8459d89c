"""`hf://OWNER/REPO[@REVISION]/PATTERN` with glob magic (`*`, `?`, `[..]`): the repository's
matching GGUF files, each as a single `hf://` reference that `hf.resolve_hf` then downloads.

The file list comes from the Hub in one request (no retries); offline (`HF_HUB_OFFLINE=1`, or
the Hub unreachable) it comes from the repository's snapshot already in the Hugging Face cache,
and one warning says so. `fnmatch` matches the whole path in the repository (`*` crosses `/`);
a split GGUF (`NAME-00001-of-00003.gguf`) counts once, by its first part; matches go largest
first, as local globs do.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
from pathlib import Path

from ggflip.errors import UsageError
from ggflip.gguf.header import split_parts

log = logging.getLogger("ggflip.hf")

_PATTERN = re.compile(
    r"^hf://(?P<owner>[^/@\s]+)/(?P<repo>[^/@\s]+)(?:@(?P<revision>[^/\s]+))?/(?P<pattern>\S+)$"
)
_LATER_PART = re.compile(r"-(?!00001)\d{5}-of-\d{5}\.gguf$")
_TRUE = {"1", "ON", "YES", "TRUE"}


def is_hf_glob(ref: str) -> bool:
    """Whether `ref` is an `hf://` reference whose file part has glob magic."""
    match = _PATTERN.match(ref)
    return match is not None and glob.has_magic(match["pattern"])


def list_online(repo_id: str, revision: str | None) -> dict[str, int | None]:
    """The repository's file paths and sizes from the Hub, in one request (`model_info`'s
    siblings: no retry loop, so no network fails at once)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    return {sibling.rfilename: sibling.size for sibling in info.siblings or ()}


def _offline_mode() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.upper() in _TRUE or constants.HF_HUB_OFFLINE


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(os.path.expanduser(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE))


def list_cached(repo_id: str, revision: str | None) -> dict[str, int | None]:
    """The repository's file paths and sizes in the local Hugging Face cache: the snapshot of
    `revision` (a branch or tag through `refs/`, or a commit hash), `main` by default; {} when
    not cached."""
    repo = _hub_cache() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    snapshot = repo / "snapshots" / commit
    if not commit or not snapshot.is_dir():
        return {}
    return {
        path.relative_to(snapshot).as_posix(): path.stat().st_size if path.exists() else None
        for path in sorted(snapshot.rglob("*"))
        if path.is_file() or path.is_symlink()
    }


def _listing(repo_id: str, revision: str | None) -> tuple[dict[str, int | None], str | None]:
    """(file paths and sizes, why they came from the cache: None when the Hub answered)."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if _offline_mode():
        return list_cached(repo_id, revision), "HF_HUB_OFFLINE=1"
    try:
        return list_online(repo_id, revision), None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise UsageError(
            f"hf://{repo_id}: {type(exc).__name__}: no such repository or revision "
            "(or a gated one: log in with `hf auth login`)"
        ) from None
    except (HfHubHTTPError, OSError, _transport_error()) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return list_cached(repo_id, revision), f"Hub unreachable: {first_line}"


def _transport_error() -> type[Exception]:
    """The HTTP client's connection/timeout error class (`httpx2` or `httpx`), else OSError."""
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        return getattr(module, "TransportError", OSError)  # type: ignore[no-any-return]
    return OSError


def _total_size(name: str, files: dict[str, int | None]) -> int:
    """The bytes of every part of `name` (0 for a size the listing does not know)."""
    sizes = [files.get(part.as_posix()) for part in split_parts(Path(name))]
    return sum(size for size in sizes if size is not None)


def expand_hf_glob(ref: str) -> list[str]:
    """The `hf://owner/repo[@revision]/file.gguf` references of every `.gguf` file in the
    repository that the pattern matches, split models once (by their first part), largest first
    (all parts counted; most bits per weight first, as for local globs), then by path.

    Raises:
        UsageError: `ref` is not a pattern reference, the repository or revision does not
            exist, or nothing matches (online, or in the cache when offline).
    """
    match = _PATTERN.match(ref)
    if not match or not glob.has_magic(match["pattern"]):
        raise UsageError(f"expected hf://OWNER/REPO[@REVISION]/PATTERN, got {ref!r}")
    repo_id, revision = f"{match['owner']}/{match['repo']}", match["revision"]
    files, offline = _listing(repo_id, revision)
    if offline:
        log.warning(
            "%s: offline (%s): matching the files in the local Hugging Face cache", ref, offline
        )
    hits = sorted(
        (
            name
            for name in files
            if name.endswith(".gguf")
            and not _LATER_PART.search(name)
            and fnmatch.fnmatchcase(name, match["pattern"])
        ),
        key=lambda name: (-_total_size(name, files), name),
    )
    if not hits:
        where = "among its files in the local Hugging Face cache (offline)" if offline else ""
        raise UsageError(
            f"--quant {ref}: no .gguf file of {repo_id} matches {match['pattern']} {where}".rstrip()
        )
    at = f"@{revision}" if revision else ""
    return [f"hf://{repo_id}{at}/{name}" for name in hits]
