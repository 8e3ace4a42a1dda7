"""Train/valid/test splits of your own data: ratios checked, items dealt out in a given order."""

from __future__ import annotations

import math
from collections.abc import Sequence

from latentflow.data.errors import DataError

SPLITS = ("train", "valid", "test")


def check_split(split: Sequence[float], key: str = "data.split") -> list[float]:
    """Three non-negative ratios (train, valid, test) summing to 1, as floats."""
    ratios = [float(r) for r in split]
    if len(ratios) != 3 or any(not r >= 0 for r in ratios) or not math.isclose(sum(ratios), 1.0):
        raise DataError(
            f"{key} must be three ratios (train, valid, test) summing to 1, got {split}"
        )
    return ratios


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """How many of ``n`` items go to each split (largest remainders; sums to n)."""
    raw = [n * r for r in ratios]
    counts = [int(math.floor(v)) for v in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True):
        if sum(counts) == n:
            break
        counts[i] += 1
    return counts


def deal_splits(order: Sequence[int], ratios: Sequence[float], what: str) -> dict[str, list[int]]:
    """The items of ``order`` (a shuffled list of indices) cut into train, valid and test by
    ``ratios``, in that order. A split left empty is a DataError; ``what`` names the items
    (e.g. "12 MIDI files")."""
    out, start = {}, 0
    for name, count in zip(SPLITS, split_counts(len(order), ratios), strict=True):
        out[name] = list(order[start : start + count])
        start += count
        if not out[name]:
            raise DataError(
                f"data.split={list(ratios)} leaves the {name} split empty for {what}: give it "
                "a larger ratio, or add data"
            )
    return out
