"""The pack file: one uncompressed tar of a manifest and a baseline cache entry, checksummed.

Layout: the first member is `manifest.json` (UTF-8 JSON, see `docs/baseline-packs.md`), then one
member `entry/<name>` per file of the mode's cache entry, `<name>` being the file's path under
the cache directory (`baselines/<key>.npz`, `corpus/<key>/tokens.npy`, `generate/<key>.npz`).
The manifest lists every file with its size and sha256 and carries a sha256 of itself
(`manifest_sha256`, over the canonical JSON of the other fields), so a truncated, edited or
damaged pack is refused in one line, never half used. A pack is written to a temporary name and
renamed (`store.atomic.atomic_output`), so it is complete or absent.

`write_pack(out, manifest, files)` is the whole writing API: any mode (or an importer of another
tool's baseline) that has a cache entry on disk and a manifest writes a pack with it.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ggflip.errors import PackError
from ggflip.store.atomic import atomic_output
from ggflip.store.reading import file_sha256

PACK_SCHEMA = "ggflip.baseline-pack/1"
MANIFEST = "manifest.json"
ENTRY = "entry/"
_BLOCK = 1 << 20


@dataclass(frozen=True)
class PackFile:
    """One file of the cache entry a pack holds: its path under the cache directory."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Pack:
    """A read pack: where it is, its manifest (checksum verified) and its files."""

    path: Path
    manifest: Mapping[str, Any]

    @property
    def mode(self) -> str:
        """ "choice", "corpus" or "generate"."""
        return str(self.manifest["mode"])

    @property
    def files(self) -> tuple[PackFile, ...]:
        return tuple(
            PackFile(str(f["name"]), int(f["size"]), str(f["sha256"]))
            for f in self.manifest["files"]
        )

    @property
    def size(self) -> int:
        """Bytes of the pack file."""
        return self.path.stat().st_size

    def install(self, cache_dir: Path) -> None:
        """Extract the entry into `cache_dir` under its names, each file checked against its
        sha256 while written and renamed into place (the entry's meta files come last, so an
        interrupted install leaves an entry the cache sees as absent).

        Raises:
            PackError: the pack is damaged; DiskFullError, ModelFileError: cannot write.
        """
        self._each_file(cache_dir)

    def verify(self) -> None:
        """Read every file and check its size and sha256.

        Raises:
            PackError: naming the first damaged or missing file.
        """
        self._each_file(None)

    def _each_file(self, cache_dir: Path | None) -> None:
        """Read every file, checking its sha256; with `cache_dir`, write it there too."""
        expected = {f.name: f for f in self.files}
        try:
            with _Members(self) as members:
                for member, handle in members:
                    name = member.name[len(ENTRY) :]
                    if cache_dir is None:
                        digest = _copy(handle, None)
                    else:
                        with atomic_output(cache_dir / name) as tmp, tmp.open("wb") as out:
                            digest = _copy(handle, out)
                            _check(self.path, name, digest, expected[name].sha256)
                    _check(self.path, name, digest, expected[name].sha256)
        except (tarfile.TarError, EOFError) as exc:
            raise PackError(
                f"{self.path}: truncated or damaged pack ({exc}); get it again"
            ) from None


def _check(where: Path, name: str, digest: str, expected: str) -> None:
    if digest != expected:
        raise PackError(f"{where}: {name} is damaged (checksum); get it again")


class _Members:
    """The entry's members in file order, each with a reader; a missing, extra or short member
    is a PackError (a truncated download)."""

    def __init__(self, pack: Pack) -> None:
        self.pack = pack
        self.tar: tarfile.TarFile | None = None

    def __enter__(self) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
        self.tar = _open_tar(self.pack.path)
        return self._walk(self.tar)

    def __exit__(self, *exc: object) -> None:
        if self.tar is not None:
            self.tar.close()

    def _walk(self, tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
        files = list(self.pack.files)
        where = self.pack.path
        try:
            tar.next()  # the manifest, read by read_pack
            for expected in files:
                member = tar.next()
                if member is None:
                    raise PackError(f"{where}: truncated: {expected.name} missing; get it again")
                if member.name != ENTRY + expected.name or member.size != expected.size:
                    raise PackError(f"{where}: damaged: unexpected member {member.name}")
                handle = tar.extractfile(member)
                assert handle is not None
                yield member, handle
            if tar.next() is not None:
                raise PackError(f"{where}: damaged: members beyond the manifest's files")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PackError(f"{where}: truncated or damaged pack ({exc}); get it again") from None


def _copy(handle: IO[bytes], out: IO[bytes] | None) -> str:
    """sha256 of what `handle` holds, written to `out` on the way."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(_BLOCK), b""):
        digest.update(block)
        if out is not None:
            out.write(block)
    return digest.hexdigest()


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON without its own checksum field."""
    body = {name: value for name, value in manifest.items() if name != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_pack(out: Path, manifest: Mapping[str, Any], files: Mapping[str, Path]) -> Pack:
    """Write a pack: `manifest` (any JSON mapping with a "mode"; `schema`, `files` and
    `manifest_sha256` are filled in) and `files`, each a name under the cache directory mapped
    to the file to store. Files whose name ends in `.json` are stored last.

    Raises:
        DiskFullError, ModelFileError: the pack cannot be written (nothing is left at `out`).
    """
    names = sorted(files, key=lambda name: (name.endswith(".json"), name))
    listed = [
        {"name": name, "size": files[name].stat().st_size, "sha256": file_sha256(files[name])}
        for name in names
    ]
    document: dict[str, Any] = {**manifest, "schema": PACK_SCHEMA, "files": listed}
    document["manifest_sha256"] = manifest_digest(document)
    blob = json.dumps(document, indent=1, sort_keys=True).encode()
    with atomic_output(out) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(blob)
        tar.addfile(info, _BytesReader(blob))
        for name in names:
            info = tarfile.TarInfo(ENTRY + name)
            info.size = files[name].stat().st_size
            with files[name].open("rb") as handle:
                tar.addfile(info, handle)
    return Pack(out, document)


class _BytesReader:
    """A file-like view of bytes for `tarfile.addfile`."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk, self.offset = self.data[self.offset : end], min(end, len(self.data))
        return chunk


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except FileNotFoundError:
        raise PackError(f"{path}: no such baseline pack") from None
    except (tarfile.TarError, OSError, EOFError):
        raise PackError(
            f"{path}: not a ggflip baseline pack (make one with `ggflip baseline export`)"
        ) from None


def read_pack(path: Path, *, verify: bool = True) -> Pack:
    """Open a pack and check its manifest (and, with `verify`, every file's checksum).

    Raises:
        PackError: not a pack, another format version, or damaged.
    """
    if path.is_dir():
        raise PackError(f"{path}: a folder, not a ggflip baseline pack")
    with _open_tar(path) as tar:
        try:
            first = tar.next()
            handle = tar.extractfile(first) if first is not None else None
            if first is None or first.name != MANIFEST or handle is None:
                raise PackError(
                    f"{path}: not a ggflip baseline pack (no {MANIFEST} first; make one with "
                    "`ggflip baseline export`)"
                )
            manifest = json.loads(handle.read())
        except (tarfile.TarError, OSError, EOFError, ValueError):
            raise PackError(f"{path}: truncated or damaged pack (manifest); get it again") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != PACK_SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise PackError(f"{path}: pack format {found!r}; this ggflip reads {PACK_SCHEMA}")
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise PackError(f"{path}: damaged: the manifest's checksum does not match; get it again")
    pack = Pack(path, manifest)
    if verify:
        pack.verify()
    return pack
