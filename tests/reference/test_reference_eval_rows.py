"""Eval-row layout and the duplicate-mask convention of docs/reference-facts.md §3 (reference/eval_rows.py)."""
from __future__ import annotations

import numpy as np
import pytest

from reference.constants import EVAL_ROW, NUM_EVAL_NEGATIVES, TRUE_ITEM_COLUMN
from reference.eval_rows import duplicate_mask, eval_items, pad_eval_rows, padding_rows


def slow_duplicate_mask(items: np.ndarray) -> np.ndarray:
    """Per-row Python statement of the convention: the true item is seen first, then columns 0..998."""
    mask = np.zeros(items.shape, dtype=np.int8)
    for r, row in enumerate(items.tolist()):
        seen = {row[TRUE_ITEM_COLUMN]}
        for c in range(NUM_EVAL_NEGATIVES):
            mask[r, c] = row[c] in seen
            seen.add(row[c])
    return mask


def random_items(rng: np.random.Generator, num_rows: int, offset: int = 0) -> np.ndarray:
    """Rows drawn with replacement from catalogues of very different sizes (many to few repeats)."""
    sizes = rng.choice([1, 2, 5, 40, 700, 100_000], size=num_rows)
    return (offset + rng.integers(0, sizes[:, None], size=(num_rows, EVAL_ROW))).astype(np.int64)


def test_eval_items_puts_the_true_item_last_as_int32():
    negatives = np.arange(3 * NUM_EVAL_NEGATIVES, dtype=np.int64).reshape(3, NUM_EVAL_NEGATIVES)
    items = eval_items(negatives, np.array([7, 8, 9]))
    assert items.dtype == np.int32 and items.shape == (3, EVAL_ROW)
    np.testing.assert_array_equal(items[:, TRUE_ITEM_COLUMN], [7, 8, 9])
    np.testing.assert_array_equal(items[:, :TRUE_ITEM_COLUMN], negatives)


@pytest.mark.parametrize("neg_shape, test_shape", [((3, 998), (3,)), ((3, 999), (4,)), ((999,), (1,))])
def test_eval_items_rejects_shapes_that_are_not_eval_rows(neg_shape, test_shape):
    with pytest.raises(ValueError):
        eval_items(np.zeros(neg_shape, np.int32), np.zeros(test_shape, np.int32))


def test_duplicate_mask_convention():
    true_item = 7
    negatives = np.arange(100, 100 + NUM_EVAL_NEGATIVES)
    negatives[0] = true_item      # a negative equal to the true item, before any other copy: duplicate
    negatives[1] = 3              # first occurrence: not a duplicate
    negatives[2] = 3              # repeat: duplicate
    negatives[5] = true_item      # another copy of the true item: duplicate
    negatives[998] = 3            # repeat in the last negative column: duplicate
    items = eval_items(negatives[None, :], np.array([true_item]))
    mask = duplicate_mask(items)
    assert mask.dtype == np.int8 and mask.shape == (1, EVAL_ROW)
    expected = np.zeros(EVAL_ROW, np.int8)
    expected[[0, 2, 5, 998]] = 1
    np.testing.assert_array_equal(mask[0], expected)


def test_true_item_is_never_a_duplicate_even_when_every_negative_equals_it():
    items = np.full((2, EVAL_ROW), 42, dtype=np.int32)
    mask = duplicate_mask(items)
    assert mask[:, TRUE_ITEM_COLUMN].tolist() == [0, 0]
    assert mask.sum(axis=1).tolist() == [NUM_EVAL_NEGATIVES] * 2


def test_rows_without_repeats_have_an_all_zero_mask():
    items = np.stack([np.arange(EVAL_ROW), np.arange(EVAL_ROW)[::-1] * 3])
    assert not duplicate_mask(items).any()


@pytest.mark.parametrize("chunk_rows", [1, 7, 16384])
def test_duplicate_mask_equals_the_slow_per_row_reference(chunk_rows):
    rng = np.random.default_rng(chunk_rows)
    items = random_items(rng, 120)
    expected = slow_duplicate_mask(items)
    assert expected.sum(axis=1).min() < 50 < expected.sum(axis=1).max()  # the draw spans few to many repeats
    np.testing.assert_array_equal(duplicate_mask(items, chunk_rows=chunk_rows), expected)


@pytest.mark.parametrize("offset", [2**21 - 3, 2**40, -50])
def test_duplicate_mask_handles_ids_outside_the_compact_key_range(offset):
    """Large ids take 64-bit sort keys; negative ids must not corrupt the decoded columns."""
    items = random_items(np.random.default_rng(5), 60, offset=offset)
    np.testing.assert_array_equal(duplicate_mask(items, chunk_rows=16), slow_duplicate_mask(items))


def test_ids_that_agree_in_their_low_bits_are_not_duplicates():
    items = np.arange(10, 10 + EVAL_ROW, dtype=np.int64)[None, :].repeat(2, axis=0)
    items[0, :3] = [5, 5 + 2**21, 5 + 2**22]
    items[1, :3] = [5, 5 + 2**32, 5 + 2**42]
    assert not duplicate_mask(items).any()


def test_duplicate_mask_rejects_rows_of_the_wrong_width():
    with pytest.raises(ValueError):
        duplicate_mask(np.zeros((2, NUM_EVAL_NEGATIVES), np.int32))


def test_duplicate_mask_of_no_rows_is_empty():
    assert duplicate_mask(np.zeros((0, EVAL_ROW), np.int32)).shape == (0, EVAL_ROW)


def test_padding_rows_are_999_duplicates_of_one_item():
    items, mask = padding_rows(3, item=5)
    assert items.dtype == np.int32 and mask.dtype == np.int8
    assert (items == 5).all()
    np.testing.assert_array_equal(mask, duplicate_mask(items))
    assert mask.sum(axis=1).tolist() == [NUM_EVAL_NEGATIVES] * 3


@pytest.mark.parametrize("rows, multiple, expected_rows", [(5, 4, 8), (8, 4, 8), (1, 1, 1), (0, 3, 0), (3, 10, 10)])
def test_pad_eval_rows_pads_to_a_multiple_with_weightless_rows(rows, multiple, expected_rows):
    rng = np.random.default_rng(rows)
    items = random_items(rng, rows).astype(np.int32)
    mask = duplicate_mask(items)
    padded_items, padded_mask = pad_eval_rows(items, mask, multiple)
    assert padded_items.shape == padded_mask.shape == (expected_rows, EVAL_ROW)
    np.testing.assert_array_equal(padded_items[:rows], items)
    np.testing.assert_array_equal(padded_mask[:rows], mask)
    assert (padded_mask[rows:].sum(axis=1) == NUM_EVAL_NEGATIVES).all()
