"""Reading a text file: one reader for PTB's char files and for your own text."""

from __future__ import annotations

from pathlib import Path

from latentflow.data.errors import DataError


def read_text(path: Path, encoding: str = "utf-8", hint: str = "") -> str:
    """A file's text. Missing, unreadable or blank is a DataError naming the file; so is a byte
    the encoding cannot decode, named by line and column (``hint`` is added to that message).
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{path}, line {line}, column {column}: byte 0x{data[err.start]:02x} is not "
            f"{encoding} text{hint}"
        ) from None
    except LookupError:
        raise DataError(f"data.encoding: unknown encoding {encoding!r}") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text
