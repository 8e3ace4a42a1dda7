"""Checks on data settings and on what the data leaves: counts in range, no split empty."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized

from latentflow.data.errors import DataError


def check_count(key: str, value: int | None, minimum: int = 1, optional: bool = True) -> None:
    """``data.<key>`` must be an integer >= ``minimum`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"data.{key} must be an integer >= {minimum}, got {value!r}")


def why_empty(dropped: int, total: int, max_length: int | None, kept: str) -> str:
    """Why a split may have come out empty: "" when the length filter dropped nothing, else
    how many of how many it dropped and which lengths it keeps (``kept``, e.g. "T < max_length").
    """
    if not dropped:
        return ""
    return (
        f" ({dropped} of {total} dropped by the length filter data.max_length={max_length}: "
        f"{kept} is kept)"
    )


def require_sequences(splits: Mapping[str, Sized], why: Callable[[str], str]) -> None:
    """A split with no sequence is a DataError naming it, and ``why(split)`` (see why_empty)."""
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise DataError(f"data: the {split} split has no sequences{why(split)}")
