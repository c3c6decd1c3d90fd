"""Read GroupLens rating files: (user ids, item ids, timestamps) from a zip member or a plain file.

The three layouts of docs/reference-facts.md §1 differ only in separator and header, so one pandas C-engine
reader covers them all (the pyarrow engine is not available and the python engine is ten times
slower). The rating value is parsed, so a non-numeric rating counts as a malformed row, and then
dropped: every rating is an implicit positive.

Malformed input is the user's problem, not a crash: wrong column counts, non-numeric or
out-of-range ids, an empty file or a zip that is truncated all raise `UserError` naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from harness.data.bad_rows import first_bad_row, safe_excerpt
from harness.data.heldout import check_raw_ids
from harness.data.registry import CSV_FORMAT, DAT_FORMAT, TSV_FORMAT
from harness.core.errors import UserError


@dataclass(frozen=True)
class FileLayout:
    """How one GroupLens format separates fields and whether it starts with a header line."""

    separator: str
    header: str | None   # the exact header line, or None when the file has none


LAYOUTS: dict[str, FileLayout] = {
    CSV_FORMAT: FileLayout(",", "userId,movieId,rating,timestamp"),
    DAT_FORMAT: FileLayout("::", None),
    TSV_FORMAT: FileLayout("\t", None),
}
NUM_COLUMNS = 4  # user, item, rating, timestamp in every layout
_READ_CHUNK = 1 << 22


@dataclass(frozen=True)
class RatingFile:
    """A rating file: `member` inside the zip at `path`, or the plain file `path` (member None)."""

    path: Path
    member: str | None
    format: str
    label: str | None = None  # how messages name the zip (e.g. its URL while it is still a partial download)

    def describe(self) -> str:
        """Human-readable location, used in messages and as the dataset's `source`."""
        where = self.label or str(self.path)
        return f"{where}:{self.member}" if self.member else where

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """The rating file's bytes as a stream; zip problems become one-sentence UserErrors."""
        try:
            if self.member is None:
                with open(self.path, "rb") as handle:
                    yield handle
                return
            with zipfile.ZipFile(self.path) as archive:
                if self.member not in archive.namelist():
                    raise UserError(f"{self.label or self.path} has no member {self.member}.")
                with archive.open(self.member) as handle:
                    yield handle
        except (zipfile.BadZipFile, EOFError) as exc:
            raise UserError(f"{self.label or self.path} is not a readable zip (truncated or corrupt: {exc}).") from exc


def check_zip(path: Path, member: str, label: str | None = None) -> None:
    """Raise UserError unless `path` opens as a zip that lists `member` (a cheap structural check).

    A truncated zip loses its central directory at the end, so this catches interrupted
    downloads even when no checksum is known; member CRCs are checked when the file is read.
    """
    with RatingFile(path, member, CSV_FORMAT, label).open():
        pass


def sha256_of(rating_file: RatingFile) -> str:
    """SHA-256 of the (uncompressed) rating file: the key of the prepared-data cache."""
    digest = hashlib.sha256()
    with rating_file.open() as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_ratings(rating_file: RatingFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a rating file into int64 arrays (user ids, item ids, timestamps), in file order.

    Raises UserError for an unknown format, a wrong header, a row with a column count other than
    four, non-numeric or out-of-range fields, and a file without ratings.
    """
    import pandas as pd  # keeps `import harness.data` light; pandas costs ~0.3 s to import

    layout = LAYOUTS.get(rating_file.format)
    if layout is None:
        raise UserError(f"{rating_file.describe()} has unknown format {rating_file.format!r}.")
    where = rating_file.describe()
    with rating_file.open() as handle:
        stream: BinaryIO = handle
        if layout.header is not None:
            first = handle.readline().rstrip(b"\r\n")
            if first != layout.header.encode():
                if not first.strip():
                    raise UserError(f"{where} is empty.")
                raise UserError(f"{where} starts with {safe_excerpt(first)!r}, expected the header {layout.header!r}.")
        separator = layout.separator
        if len(separator) > 1:
            # The C engine takes one-character separators only; ml-1m (24 MB) fits in memory.
            stream = io.BytesIO(handle.read().replace(separator.encode(), b"\t"))
            separator = "\t"
        try:
            frame = pd.read_csv(stream, sep=separator, header=None, engine="c",
                                dtype={0: np.int64, 1: np.int64, 2: np.float64, 3: np.int64})
        except pd.errors.EmptyDataError as exc:
            raise UserError(f"{where} has no ratings.") from exc
        except (pd.errors.ParserError, ValueError, OverflowError) as exc:
            raise UserError(_malformed_row_sentence(rating_file, layout, exc)) from exc
    if frame.shape[1] != NUM_COLUMNS:
        raise UserError(f"{where} has rows of {frame.shape[1]} fields, expected {NUM_COLUMNS} "
                        f"(user, item, rating, timestamp).")
    if len(frame) == 0:
        raise UserError(f"{where} has no ratings.")
    columns = [frame[i].to_numpy(dtype=np.int64) for i in (0, 1, 3)]
    del frame
    users, items, timestamps = columns
    if users.min() < 0 or items.min() < 0:
        raise UserError(f"{where} has negative user or item ids.")
    check_raw_ids(users, items, where)
    return users, items, timestamps


def _malformed_row_sentence(rating_file: RatingFile, layout: FileLayout, exc: Exception) -> str:
    """Name the first bad row by its line in the file (header counted), found by a second pass.

    pandas' own message is the fallback only for a failure the row scan does not reproduce.
    """
    where = rating_file.describe()
    with rating_file.open() as handle:
        if layout.header is not None:
            handle.readline()
        bad = first_bad_row(handle, layout.separator, NUM_COLUMNS, first_line=2 if layout.header else 1)
    if bad is not None:
        return bad.sentence(where)
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{where} has a malformed row ({safe_excerpt(detail.encode('ascii', 'replace'), 120)})."
