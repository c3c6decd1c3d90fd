"""Which rating is held out when a user has several at their latest timestamp, and its digest.

Why it needs a rule of its own: the held-out item decides how hard the benchmark is, and ties at
the latest timestamp are common (bulk-entered ratings: 94 of 610 users in ml-latest-small, 415 of
943 in ml-100k). A rule that looks at the item id is not neutral: low MovieLens ids are the early,
popular titles (rank correlation of id and rating count about -0.8 in ml-100k), so "largest id"
holds out unpopular items and makes the set harder, "smallest id" easier. The MLPerf reference used
an unstable sort, whose choice depends on the numpy build and the file's row order, so it cannot be
reproduced across machines. A keyed hash is the deterministic, popularity-neutral stand-in.

The rule (`TIEBREAK_RULE`): among a user's ratings at their latest timestamp, hold out the one
with the smallest key `splitmix64_step((raw_user_id << 32) | raw_item_id)`, keys compared as
unsigned 64-bit integers. Raw ids are the integers of the rating file (synthetic sets: generator
id + 1, what their CSV writer writes). The key depends on (user, item) only, so the choice is
independent of row order and of the dense remapping.
"""
from __future__ import annotations

import hashlib

import numpy as np

from harness.data.rng import splitmix64_step
from harness.core.errors import UserError

TIEBREAK_RULE = "splitmix64"
RAW_ID_LIMIT = 1 << 32   # user and item ids are packed into one 64-bit key, 32 bits each


def check_raw_ids(users: np.ndarray, items: np.ndarray, where: str) -> None:
    """Raise UserError unless every raw id fits the 32 bits the tie-break key gives it."""
    for label, ids in (("user", users), ("item", items)):
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= RAW_ID_LIMIT):
            raise UserError(f"{where} has {label} ids outside 0..{RAW_ID_LIMIT - 1} "
                            f"(found {int(ids.min())}..{int(ids.max())}), which the held-out tie-break cannot key.")


def tiebreak_keys(raw_users: np.ndarray, raw_items: np.ndarray) -> np.ndarray:
    """uint64 [n]: the tie-break key of each (raw user, raw item) pair; the smallest is held out."""
    packed = (raw_users.astype(np.uint64) << np.uint64(32)) | raw_items.astype(np.uint64)  # [n]
    return splitmix64_step(packed)                                                           # [n]


def choose_among_ties(candidate_rows: np.ndarray, owners: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The held-out row of every owner: the candidate with the smallest key.

    Contract: `candidate_rows`, `owners` and `keys` are parallel, grouped by owner in ascending
    order, and every owner 0..n-1 has at least one candidate. Equal keys mean the same (user,
    item) rated twice at the same second; either copy is the same item, the last is taken.
    Method: per-group minimum by `np.minimum.reduceat`, then the last row of the group that
    carries it, by `np.maximum.reduceat` over the row positions (others masked to -1).
    """
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])                 # [users]
    smallest = np.minimum.reduceat(keys, starts)                                     # [users] uint64
    sizes = np.diff(np.r_[starts, keys.size])                                        # [users]
    at_min = keys == np.repeat(smallest, sizes)                                      # [candidates]
    position = np.maximum.reduceat(np.where(at_min, np.arange(keys.size), -1), starts)  # [users]
    return candidate_rows[position]                                                  # [users]


def heldout_sha256(raw_users: np.ndarray, raw_items: np.ndarray) -> str:
    """Hex SHA-256 of one line "user,item\\n" per user, raw ids in decimal, users ascending.

    Comparable across implementations: it names the held-out set in the file's own ids, so two
    preparations agree on the eval positives exactly when their digests agree.
    """
    order = np.argsort(raw_users, kind="stable")
    text = "".join(f"{user},{item}\n" for user, item in zip(raw_users[order].tolist(), raw_items[order].tolist()))
    return hashlib.sha256(text.encode("ascii")).hexdigest()
