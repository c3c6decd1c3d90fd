"""Fetch a dataset zip into the cache: streamed, checksummed, renamed into place.

Restart policy: a clean restart, never a resume. Bytes stream into `.<name>.zip.<pid>.part`
beside the final file while their MD5 is computed; only a complete body (as long as the server's
Content-Length) whose MD5 matches and which opens as a zip listing the rating file is renamed onto
`<name>.zip` with `os.replace`. Any failure, Ctrl-C included, deletes the partial file, and a partial
left behind by a killed process (its pid no longer running) is deleted by the next download of the
same dataset. Resuming was rejected because a half-file from an unknown server state cannot be
trusted without re-reading it, and MovieLens zips take seconds to fetch again.

Locations: the mirror passed as `--mirror`, else the environment's `NCF_DATA_MIRROR`, else the
dataset's own URL; a mirror is a base URL to which `<name>.zip` is appended. The cache directory
is `--cache-dir`, else `NCF_CACHE_DIR`, else `~/.cache/ncf-benchmark`.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from harness.data.movielens import check_zip
from harness.data.registry import DatasetSpec
from harness.core.errors import UserError
from harness.core.writable import writing_to

Progress = Callable[[str], None]

MIRROR_ENV = "NCF_DATA_MIRROR"
CACHE_ENV = "NCF_CACHE_DIR"
CACHE_FLAG = "--cache-dir"   # what an unwritable cache tells the user to change
DEFAULT_CACHE_DIR = Path("~/.cache/ncf-benchmark")
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_PARTIAL_SUFFIX = ".part"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: the argument, else $NCF_CACHE_DIR, else ~/.cache/ncf-benchmark."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def zip_url(spec: DatasetSpec, mirror: str | None = None) -> str:
    """Where to fetch `spec`'s zip: `<mirror>/<name>.zip` when a mirror is set, else `spec.url`."""
    base = mirror or os.environ.get(MIRROR_ENV)
    if base:
        return f"{base.rstrip('/')}/{spec.name}.zip"
    return spec.url


def file_md5(path: Path) -> str:
    """MD5 of a file, streamed (GroupLens publishes MD5s, so that is what we compare)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, spec: DatasetSpec) -> None:
    """UserError unless the zip at `path` has `spec.md5` (no-op when the spec has no checksum)."""
    if spec.md5 is None:
        return
    actual = file_md5(path)
    if actual != spec.md5:
        raise UserError(f"{path} does not match the expected MD5 of {spec.name} "
                        f"(expected {spec.md5}, got {actual}).")


def fetch_zip(spec: DatasetSpec, cache_dir: Path, mirror: str | None = None,
              progress: Progress | None = None) -> Path:
    """The dataset's zip in `<cache_dir>/downloads/`, downloaded unless a good copy is there.

    A cached copy whose MD5 no longer matches (disk corruption, a hand edit) is deleted and
    fetched again rather than trusted.
    """
    target = cache_dir / "downloads" / f"{spec.name}.zip"
    if target.exists():
        try:
            check_md5(target, spec)
            check_zip(target, spec.member)
            return target
        except UserError:
            if progress:
                progress(f"cached {target.name} is damaged; downloading it again")
            with writing_to(target.parent, CACHE_FLAG):
                target.unlink(missing_ok=True)
    download(zip_url(spec, mirror), target, spec, progress)
    return target


def download(url: str, target: Path, spec: DatasetSpec, progress: Progress | None = None) -> None:
    """Stream `url` to `target` atomically; UserError (and no file left) on any failure."""
    with writing_to(target.parent, CACHE_FLAG):
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphaned_partials(target)
    partial = target.with_name(f".{target.name}.{os.getpid()}{_PARTIAL_SUFFIX}")
    if progress:
        progress(f"downloading {url}")
    try:
        md5 = _stream_to(url, partial)
        if spec.md5 is not None and md5 != spec.md5:
            raise UserError(f"Download of {spec.name} from {url} does not match the expected MD5 "
                            f"(expected {spec.md5}, got {md5}).")
        check_zip(partial, spec.member, label=url)
        with writing_to(target.parent, CACHE_FLAG):
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _stream_to(url: str, partial: Path) -> str:
    """Write the body of `url` to `partial`; return its MD5. Network failures become UserError.

    The file is opened before the connection and every write is wrapped on its own: a cache that
    cannot be written is named as such, not reported as a failed download.
    """
    digest = hashlib.md5()
    with writing_to(partial.parent, CACHE_FLAG):
        out = open(partial, "wb")
    try:
        with out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            announced = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(_CHUNK):
                with writing_to(partial.parent, CACHE_FLAG):
                    out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
            with writing_to(partial.parent, CACHE_FLAG):
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        raise UserError(f"Downloading {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except urllib.error.URLError as exc:
        raise UserError(f"Downloading {url} failed: {exc.reason}.") from exc
    except http.client.IncompleteRead as exc:
        raise UserError(f"Downloading {url} was cut off before the end of the file.") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise UserError(f"Downloading {url} failed: {exc}.") from exc
    if announced is not None and announced.isdigit() and received != int(announced):
        raise UserError(f"Downloading {url} was cut off: got {received} of {announced} bytes.")
    return digest.hexdigest()


def _remove_orphaned_partials(target: Path) -> None:
    """Delete partial downloads of `target` whose writing process no longer runs."""
    import psutil

    for partial in target.parent.glob(f".{target.name}.*{_PARTIAL_SUFFIX}"):
        pid_text = partial.name[len(f".{target.name}."):-len(_PARTIAL_SUFFIX)]
        if pid_text.isdigit() and not psutil.pid_exists(int(pid_text)):
            partial.unlink(missing_ok=True)
