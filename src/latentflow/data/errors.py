"""The one error for bad data: a file missing, corrupt or malformed, or a data setting out of
range. It is a ``ValueError``, and its message is one line naming the file or the config key."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data or a bad data setting; the message names the file or the ``data.*`` key."""
