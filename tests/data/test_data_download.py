"""Downloads and local copies against a local HTTP server: good, corrupt, truncated, failing, malformed.

Each bad case must give one clear sentence (UserError; through the CLI: `error: ...` on one line
of stderr and a non-zero exit) and leave nothing half-written in the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from harness.cli import main
from harness.data import registry
from harness.data.prepare import load_dataset
from harness.core.errors import UserError


def _csv(users: int = 25, per_user: int = 22) -> bytes:
    rows = ["userId,movieId,rating,timestamp"]
    for user in range(1, users + 1):
        rows += [f"{user},{(user * 7 + k) % 60 + 1},4.0,{1_000_000 + k}" for k in range(per_user)]
    return ("\n".join(rows) + "\n").encode()


def _zip(member: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, content)
    return buffer.getvalue()


class _Server:
    """Serves `routes` {path: (status, body, cut)}; `cut` announces the full length but sends less."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, bool]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                status, body, cut = server.routes.get(self.path, (404, b"not found", False))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, name: str, body: bytes, status: int = 200, cut: bool = False) -> None:
        self.routes[f"/{name}.zip"] = (status, body, cut)


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def dataset(server: _Server) -> Iterator[Callable[..., registry.DatasetSpec]]:
    """Register test datasets served by `server`; unregistered afterwards."""
    names: list[str] = []

    def make(name: str, body: bytes, *, md5: str | None = "auto", status: int = 200, cut: bool = False,
             member: str | None = None, fmt: str = registry.CSV_FORMAT) -> registry.DatasetSpec:
        server.serve(name, body, status, cut)
        names.append(name)
        checksum = hashlib.md5(body).hexdigest() if md5 == "auto" else md5
        return registry.register_dataset(name, url=f"{server.base}/{name}.zip", md5=checksum,
                                         member=member or f"{name}/ratings.csv", format=fmt)

    yield make
    for name in names:
        registry.unregister_dataset(name)


def _leftovers(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_good_zip_downloads_once_and_is_unverified(dataset, server: _Server, tmp_path: Path) -> None:
    dataset("t-good", _zip("t-good/ratings.csv", _csv()))
    data = load_dataset("t-good", cache_dir=tmp_path)
    assert (data.num_users, data.num_ratings, data.num_train) == (25, 25 * 22, 25 * 21)
    assert data.verification == "unverified"      # a registered checksum is never a published one
    assert data.raw_sha256 == hashlib.sha256(_csv()).hexdigest()
    assert _leftovers(tmp_path) == ["downloads/t-good.zip", Path(data.cache_path).relative_to(tmp_path).as_posix()]
    before = len(server.requests)
    load_dataset("t-good", cache_dir=tmp_path)
    assert len(server.requests) == before        # the cached zip is reused


def test_mirror_argument_and_environment(dataset, server: _Server, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataset("t-mirror", _zip("t-mirror/ratings.csv", _csv()))
    registry.register_dataset("t-mirror", url="http://127.0.0.1:9/nowhere.zip", md5=spec.md5,
                              member=spec.member, format=spec.format)
    assert load_dataset("t-mirror", cache_dir=tmp_path / "a", mirror=server.base + "/").num_users == 25
    monkeypatch.setenv("NCF_DATA_MIRROR", server.base)
    assert load_dataset("t-mirror", cache_dir=tmp_path / "b").num_users == 25


def test_registered_specs_cannot_claim_published_names() -> None:
    with pytest.raises(ValueError):
        registry.register_dataset("ml-20m", url="http://x/ml-20m.zip", md5="0" * 32,
                                  member="ml-20m/ratings.csv", format=registry.CSV_FORMAT)


def test_orphaned_partial_download_is_removed(dataset, tmp_path: Path) -> None:
    dataset("t-orphan", _zip("t-orphan/ratings.csv", _csv()))
    orphan = tmp_path / "downloads" / ".t-orphan.zip.999999999.part"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half")
    load_dataset("t-orphan", cache_dir=tmp_path)
    assert not orphan.exists()


BAD_CASES = {
    # name: (zip body, options, words the message must contain)
    "t-checksum": (_zip("t-checksum/ratings.csv", _csv()), {"md5": "0" * 32}, "MD5"),
    "t-truncated": (_zip("t-truncated/ratings.csv", _csv())[:200], {"md5": None}, "zip"),
    "t-truncated-md5": (_zip("t-truncated-md5/ratings.csv", _csv())[:200],
                        {"md5": hashlib.md5(_zip("t-truncated-md5/ratings.csv", _csv())).hexdigest()}, "MD5"),
    "t-cut": (_zip("t-cut/ratings.csv", _csv()), {"cut": True}, "cut off"),
    "t-500": (b"oops", {"status": 500}, "HTTP 500"),
    "t-404": (b"", {"status": 404}, "HTTP 404"),
    "t-columns": (_zip("t-columns/ratings.csv", _csv() + b"3,4,5.0,100,extra\n"), {}, "malformed"),
    "t-short-row": (_zip("t-short-row/ratings.csv", _csv() + b"3,4\n"), {}, "malformed"),
    "t-non-numeric": (_zip("t-non-numeric/ratings.csv", _csv() + b"abc,4,5.0,100\n"), {}, "malformed"),
    "t-empty": (_zip("t-empty/ratings.csv", b""), {}, "empty"),
    "t-header-only": (_zip("t-header-only/ratings.csv", b"userId,movieId,rating,timestamp\n"), {}, "no ratings"),
    "t-no-header": (_zip("t-no-header/ratings.csv", _csv().split(b"\n", 1)[1]), {}, "header"),
    "t-wrong-member": (_zip("elsewhere/ratings.csv", _csv()), {}, "no member"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_download_is_one_sentence_and_leaves_nothing(name: str, dataset, tmp_path: Path) -> None:
    body, options, words = BAD_CASES[name]
    dataset(name, body, **options)
    with pytest.raises(UserError, match=words) as caught:
        load_dataset(name, cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".")
    assert all(p == f"downloads/{name}.zip" for p in _leftovers(tmp_path)), _leftovers(tmp_path)
    if words in ("MD5", "zip", "cut off", "HTTP 500", "HTTP 404"):
        assert _leftovers(tmp_path) == []        # a bad download is never kept


@pytest.mark.parametrize("name", ["t-checksum", "t-500", "t-columns"])
def test_bad_cases_through_the_cli(name: str, dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    body, options, _ = BAD_CASES[name]
    dataset(name, body, **options)
    code = main(["data", "--dataset", name, "--cache-dir", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err


def test_unknown_dataset_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(UserError, match="Unknown dataset"):
        load_dataset("ml-5m", cache_dir=tmp_path)
    assert main(["data", "--dataset", "nope", "--cache-dir", str(tmp_path)]) != 0
    assert capsys.readouterr().err.startswith("error: Unknown dataset 'nope'")
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------- local copies (--data-dir)

def _builtin(monkeypatch: pytest.MonkeyPatch, name: str, **changes: object) -> registry.DatasetSpec:
    """Pretend GroupLens published `changes` (e.g. the MD5 of a zip the test built) for `name`."""
    spec = dataclasses.replace(registry.get_spec(name), **changes)
    monkeypatch.setitem(registry._BUILTIN, name, spec)
    return spec


def _tsv_rows() -> bytes:
    return "".join(f"{u}\t{(u * 3 + k) % 50 + 1}\t3\t{900_000_000 + k}\n"
                   for u in range(1, 31) for k in range(20)).encode()


def test_local_zip_matching_the_published_md5_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _zip("ml-100k/u.data", _tsv_rows())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ml-100k.zip").write_bytes(body)
    _builtin(monkeypatch, "ml-100k", md5=hashlib.md5(body).hexdigest())
    data = load_dataset("ml-100k", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert data.verification == "verified" and (data.num_users, data.num_ratings) == (30, 600)


def test_local_zip_with_another_md5_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.zip").write_bytes(_zip("ml-100k/u.data", _tsv_rows()))
    with pytest.raises(UserError, match="MD5"):
        load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_extracted_folders_in_each_format_are_unverified(tmp_path: Path) -> None:
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_bytes(_tsv_rows())
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_bytes(_tsv_rows().replace(b"\t", b"::"))
    with pytest.warns(UserWarning, match="unverified"):
        tsv = load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="unverified"):
        dat = load_dataset("ml-1m", data_dir=tmp_path / "ml-1m", cache_dir=tmp_path / "cache")
    assert tsv.verification == dat.verification == "unverified"
    assert tsv.raw_sha256 != dat.raw_sha256
    np.testing.assert_array_equal(tsv.train_items, dat.train_items)
    np.testing.assert_array_equal(tsv.test_items, dat.test_items)


def test_data_dir_without_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds neither"):
        load_dataset("ml-1m", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("ml-1m", data_dir=tmp_path / "missing", cache_dir=tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # nothing was accepted, so nothing to warn about
        with pytest.raises(UserError):
            load_dataset("ml-100k", data_dir=tmp_path, cache_dir=tmp_path / "cache")
