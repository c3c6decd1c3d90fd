"""The datasets the harness knows: where each comes from and how to tell a genuine copy.

A `DatasetSpec` says where a dataset's zip lives, the MD5 GroupLens publishes for it, which file
inside the zip holds the ratings and in which of the GroupLens formats (docs/reference-facts.md §1).

"Verified" means exactly one thing: the zip matched a checksum GroupLens published. That is why
`published` is a field of its own and why `register_dataset` (for tests and private mirrors that
serve their own zips) always sets it to False: a spec someone registers at runtime carries a
checksum that person chose, so it can confirm the download is intact but never that it is the
published dataset.

Synthetic datasets have no spec in the table: their names (`synthetic-small`,
`synthetic-ml20m`, `synthetic-ml20mx4x2`, ...) are parsed by `harness.data.synthetic`.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import UserError

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens"

# Formats understood by `harness.data.movielens` (one name per GroupLens layout), plus the
# marker of generated data.
CSV_FORMAT = "csv"            # userId,movieId,rating,timestamp with that header (ml-20m, ml-25m, ml-latest*)
DAT_FORMAT = "dat"            # UserID::MovieID::Rating::Timestamp, no header (ml-1m)
TSV_FORMAT = "tsv"            # user<TAB>item<TAB>rating<TAB>timestamp, no header (ml-100k u.data)
SYNTHETIC_FORMAT = "synthetic"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens-style dataset comes from and how its zip is laid out."""

    name: str            # e.g. "ml-20m"; also the zip's base name and its top-level folder
    url: str             # default download location of <name>.zip
    md5: str | None      # expected MD5 of the zip; None when nobody published one
    member: str          # path of the rating file inside the zip, e.g. "ml-20m/ratings.csv"
    format: str          # one of CSV_FORMAT, DAT_FORMAT, TSV_FORMAT, SYNTHETIC_FORMAT
    published: bool      # True only for checksums GroupLens published (docs/reference-facts.md §1)

    @property
    def rating_file_name(self) -> str:
        """Base name of the rating file, e.g. "ratings.csv" (what an extracted folder holds)."""
        return self.member.rsplit("/", 1)[-1]


def _grouplens(name: str, md5: str | None, rating_file: str, fmt: str) -> DatasetSpec:
    return DatasetSpec(name=name, url=f"{GROUPLENS_BASE_URL}/{name}.zip", md5=md5,
                       member=f"{name}/{rating_file}", format=fmt, published=md5 is not None)


_BUILTIN: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _grouplens("ml-20m", "cd245b17a1ae2cc31bb14903e1204af3", "ratings.csv", CSV_FORMAT),
        _grouplens("ml-1m", "c4d9eecfca2ab87c1945afe126590906", "ratings.dat", DAT_FORMAT),
        _grouplens("ml-100k", "0e33842e24a9c977be4e0107933c0723", "u.data", TSV_FORMAT),
        _grouplens("ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", CSV_FORMAT),
        # The development set: GroupLens publishes no checksum for it, so it is never "verified".
        _grouplens("ml-latest-small", None, "ratings.csv", CSV_FORMAT),
    )
}

# Specs added at runtime by `register_dataset` (never published).
_REGISTERED: dict[str, DatasetSpec] = {}

_FILE_FORMATS = (CSV_FORMAT, DAT_FORMAT, TSV_FORMAT)


def register_dataset(name: str, *, url: str, md5: str | None, member: str, format: str) -> DatasetSpec:
    """Add (or replace) a dataset served by someone other than GroupLens, e.g. a test's server.

    The spec is marked unpublished, so data loaded through it is at best "unverified", however
    well its checksum matches. Built-in names cannot be redefined: that would let a private
    checksum pass for the published one.
    """
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in dataset and cannot be re-registered")
    if name.startswith("synthetic-"):
        raise ValueError(f"names starting with 'synthetic-' are reserved for generated data, got {name!r}")
    if format not in _FILE_FORMATS:
        raise ValueError(f"format must be one of {_FILE_FORMATS}, got {format!r}")
    spec = DatasetSpec(name=name, url=url, md5=md5, member=member, format=format, published=False)
    _REGISTERED[name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Remove a runtime registration (tests clean up after themselves)."""
    _REGISTERED.pop(name, None)


def builtin_names() -> list[str]:
    """Names of the GroupLens datasets, in the order of docs/reference-facts.md §1."""
    return list(_BUILTIN)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a file-based dataset; UserError for a name nobody defined.

    Synthetic names are not handled here (see `harness.data.synthetic.parse_name`); the caller
    dispatches on the `synthetic-` prefix first.
    """
    spec = _BUILTIN.get(name) or _REGISTERED.get(name)
    if spec is None:
        known = ", ".join([*_BUILTIN, *_REGISTERED, "synthetic-small", "synthetic-ml20m", "synthetic-ml20mx<k>x<m>"])
        raise UserError(f"Unknown dataset {name!r}; known datasets: {known}.")
    return spec
