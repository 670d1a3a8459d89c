"""Hugging Face model references: `hf://owner/repo[@revision]/path/file.gguf`, resolved to local
files.

A reference is downloaded once with `huggingface_hub.hf_hub_download` into the Hugging Face
cache (`$HF_HUB_CACHE`, default `~/.cache/huggingface/hub`), with its progress bar on stderr,
and read from there afterwards; with `HF_HUB_OFFLINE=1` (or no network) a cached file is used
without any request. A split GGUF (`NAME-00001-of-00003.gguf`) brings every part into the same
snapshot folder, where llama.cpp finds them next to the first part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import ModelFileError
from ggflip.gguf.header import split_parts

PREFIX = "hf://"
_REF = re.compile(
    r"^hf://(?P<owner>[^/@\s]+)/(?P<repo>[^/@\s]+)(?:@(?P<revision>[^/\s]+))?/(?P<file>\S+)$"
)


@dataclass(frozen=True)
class HfRef:
    """One GGUF file in a Hugging Face model repository."""

    repo_id: str
    filename: str
    revision: str | None

    @property
    def placeholder(self) -> Path:
        """A display path for the file before it is resolved (never opened)."""
        return Path("hf") / self.repo_id / self.filename


def parse_hf_ref(ref: str, suffix: str = ".gguf") -> HfRef:
    """Split `hf://owner/repo[@revision]/path/file.gguf` into its parts (`suffix`: the file's
    required ending; "" for any file, such as a baseline pack).

    Raises:
        ValueError: the reference does not have that shape.
    """
    match = _REF.match(ref)
    if not match or not match["file"].endswith(suffix):
        raise ValueError(f"expected hf://OWNER/REPO[@REVISION]/FILE{suffix or ''}, got {ref!r}")
    return HfRef(f"{match['owner']}/{match['repo']}", match["file"], match["revision"])


def resolve_hf(ref: str, suffix: str = ".gguf") -> Path:
    """The local path of a reference's file (its first part when split), downloading what is
    missing; `suffix` as `parse_hf_ref`'s.

    Raises:
        ModelFileError: a malformed reference, or the file is neither cached nor downloadable.
    """
    try:
        parsed = parse_hf_ref(ref, suffix)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local: list[Path] = []
    for part in split_parts(Path(parsed.filename)):
        try:
            local.append(
                Path(hf_hub_download(parsed.repo_id, part.as_posix(), revision=parsed.revision))
            )
        except LocalEntryNotFoundError:
            raise ModelFileError(
                f"{ref}: {part} is not in the Hugging Face cache and cannot be downloaded now "
                "(offline or HF_HUB_OFFLINE=1); download it once while online"
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            raise ModelFileError(
                f"{ref}: {type(exc).__name__}: no such repository, revision or file"
            ) from None
        except (HfHubHTTPError, OSError) as exc:
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise ModelFileError(f"{ref}: download failed: {first_line}") from None
    return local[0]
