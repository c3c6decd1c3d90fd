"""Eval-row layout and duplicate mask of the NCF benchmark (docs/reference-facts.md §3), implemented once, here.

Every user is evaluated on one row of `EVAL_ROW` (1,000) candidates: the user's 999 eval
negatives in the order they were drawn (columns 0..998), then the held-out true item LAST
(column `TRUE_ITEM_COLUMN` = 999). The last position is what the seed's code uses (its eval
labels are one-hot at `NUM_EVAL_NEGATIVES`), although its docstrings still say "first".

The negatives are drawn with replacement, so a row can hold the same item several times and
can even hold the true item among its negatives. The duplicate mask marks every repeat of an
item after its first occurrence, where the true item counts as occurring FIRST although it sits
in the last column: a negative equal to the true item is a duplicate, the true item never is.
With `match_mlperf` the metrics push duplicates to the bottom of the ranking so each distinct
item counts once, and the true item, never masked, is still ranked.

Masks are int8 (0/1): 1 byte per candidate keeps an ml-20m eval set (138,493 x 1,000) at
139 MB instead of 554 MB in float32; the metrics cast the mask to the logits' dtype as the seed
does.

numpy only: this runs on the host once per run (inside the timed region) and feeds any device.
"""
from __future__ import annotations

import numpy as np

from reference.constants import EVAL_ROW, NUM_EVAL_NEGATIVES, TRUE_ITEM_COLUMN

MASK_DTYPE = np.int8

# Bits reserved below the item id in the sort key of `duplicate_mask`; 2**10 > EVAL_ROW.
_PRIORITY_BITS = 10
assert EVAL_ROW <= 1 << _PRIORITY_BITS

# Rows per chunk in `duplicate_mask`: bounds the int64 sort keys to about 130 MB at a time.
_DEFAULT_CHUNK_ROWS = 16384


def eval_items(eval_negatives: np.ndarray, test_items: np.ndarray) -> np.ndarray:
    """Candidate items per user: the 999 eval negatives, then the true (test) item last.

    Args:
        eval_negatives: int [U, 999], each user's eval negatives in drawing order.
        test_items: int [U], each user's held-out item.
    Returns:
        int32 [U, 1000] with `test_items` in column `TRUE_ITEM_COLUMN` (999).
    Raises:
        ValueError: on shapes that do not form eval rows (a programming error, not a user one).
    """
    negatives = np.asarray(eval_negatives)
    tests = np.asarray(test_items)
    if negatives.ndim != 2 or negatives.shape[1] != NUM_EVAL_NEGATIVES:
        raise ValueError(f"eval_negatives must have shape [users, {NUM_EVAL_NEGATIVES}], got {negatives.shape}.")
    if tests.shape != (negatives.shape[0],):
        raise ValueError(f"test_items must have shape [{negatives.shape[0]}], got {tests.shape}.")
    items = np.empty((negatives.shape[0], EVAL_ROW), dtype=np.int32)
    items[:, :TRUE_ITEM_COLUMN] = negatives
    items[:, TRUE_ITEM_COLUMN] = tests
    return items


def duplicate_mask(items: np.ndarray, *, chunk_rows: int = _DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """int8 [U, 1000]: 1 where the candidate repeats an item seen earlier in its row, else 0.

    "Earlier" is the order true item (column 999) first, then columns 0, 1, ..., 998, so a
    negative equal to the true item is marked and the true item never is (docs/reference-facts.md §3).

    How (vectorised, no loop over users): each candidate gets a priority, 0 for the true item and
    column + 1 for a negative, and a sort key `item * 1024 + priority`. Keys are unique within a
    row, so a plain (unstable, fast) sort of each row groups equal items with the first occurrence
    leading its group; a candidate is a duplicate when its item equals its left neighbour's in the
    sorted row. Only the repeats (about 2% of candidates at ml-20m) are scattered back, to the
    columns decoded from their keys. Rows go in chunks of `chunk_rows` to bound memory; ml-20m
    (138,493 rows) takes about 3 s on one core.
    """
    items = np.asarray(items)
    if items.ndim != 2 or items.shape[1] != EVAL_ROW:
        raise ValueError(f"items must have shape [users, {EVAL_ROW}], got {items.shape}.")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}.")
    # Priority of each column: the true item 0, negative j gets j + 1.
    priority = (np.arange(EVAL_ROW, dtype=np.int64) + 1) % EVAL_ROW
    # int32 keys sort about twice as fast; they suffice while item ids stay below 2**21.
    small_ids = items.size == 0 or (items.min() >= 0 and items.max() < 1 << (31 - _PRIORITY_BITS))
    key_dtype = np.int32 if small_ids else np.int64
    priority = priority.astype(key_dtype)[np.newaxis, :]
    mask = np.zeros(items.shape, dtype=MASK_DTYPE)
    for start in range(0, items.shape[0], chunk_rows):
        keys = (items[start:start + chunk_rows].astype(key_dtype) << _PRIORITY_BITS) | priority
        keys.sort(axis=1)
        sorted_items = keys >> _PRIORITY_BITS
        rows, places = np.nonzero(sorted_items[:, 1:] == sorted_items[:, :-1])
        # Column of each repeat from its key's priority p: column (p - 1) mod 1000.
        repeat_priority = keys[rows, places + 1] & ((1 << _PRIORITY_BITS) - 1)
        mask[start + rows, (repeat_priority + TRUE_ITEM_COLUMN) % EVAL_ROW] = 1
    return mask


def padding_rows(num_rows: int, item: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows that pad an eval batch to full size: (items int32 [n, 1000], mask int8 [n, 1000]).

    Every candidate is `item`, so the mask has 999 ones and a 0 in the true column; such a row
    gets metric weight 0 (the seed's padding test) and contributes nothing to HR, NDCG or the
    eval loss, whatever its logits. `item` must be a valid id for the model being evaluated.
    """
    if num_rows < 0:
        raise ValueError(f"num_rows must be non-negative, got {num_rows}.")
    items = np.full((num_rows, EVAL_ROW), item, dtype=np.int32)
    mask = np.ones((num_rows, EVAL_ROW), dtype=MASK_DTYPE)
    mask[:, TRUE_ITEM_COLUMN] = 0
    return items, mask


def pad_eval_rows(items: np.ndarray, mask: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Append padding rows so the row count is a multiple of `multiple` (e.g. the global batch).

    Static batch shapes let a compiled eval step (XLA, TPU) run every batch with one program;
    the padding rows weigh 0, so the metrics are those of the real rows.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}.")
    if items.shape != mask.shape or items.ndim != 2 or items.shape[1] != EVAL_ROW:
        raise ValueError(f"items and mask must both have shape [users, {EVAL_ROW}], got {items.shape} and {mask.shape}.")
    extra = -items.shape[0] % multiple
    pad_items, pad_mask = padding_rows(extra)
    return (np.concatenate([items.astype(np.int32, copy=False), pad_items]),
            np.concatenate([mask.astype(MASK_DTYPE, copy=False), pad_mask]))
