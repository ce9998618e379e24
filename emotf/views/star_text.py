"""STAR text as the session files hold it: cells, loop blocks and a small loop reader.

Cells are written as ``starfile`` writes a table (tab separated, strings with a space or
empty quoted, missing values ``<NA>``) except floats, which use ``repr`` so the values read
back are exactly the record's. Nothing here needs pandas: appending a batch stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HEADER = "# Created by emotf (session STAR file, extended batch by batch)\n\n\n"
NA = "<NA>"
TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|\S+')


def cell(value: Any) -> str:
    """One value as a STAR cell."""
    if value is None:
        return NA
    if isinstance(value, float):
        return NA if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return f'"{value}"' if " " in value or not value else value
    return str(value)


def loop_head(name: str, columns: Iterable[str]) -> str:
    """``data_<name>`` and its ``loop_`` column list (rows follow, one per line)."""
    names = "".join(f"_{c} #{i}\n" for i, c in enumerate(columns, 1))
    return f"data_{name}\n\nloop_\n{names}"


def loop_block(name: str, columns: list[str], rows: Iterable[list[str]]) -> str:
    """A whole loop block followed by the blank lines that end it."""
    lines = "".join("\t".join(r) + "\n" for r in rows)
    return f"{loop_head(name, columns)}{lines}\n\n"


def unquote(token: str) -> str:
    if len(token) > 1 and token[0] in "\"'" and token[-1] == token[0]:
        return token[1:-1]
    return token


def value_of(token: str) -> Any:
    """A cell read back as a number when it is one (for comparing optics parameters)."""
    if len(token) > 1 and token[0] in "\"'" and token[-1] == token[0]:
        return token[1:-1]
    try:
        return float(token)
    except ValueError:
        return token


class Loop:
    """One ``loop_`` block of a STAR file: column names and rows of raw cell tokens."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.rows: list[list[str]] = []


def read_loops(path: Path) -> dict[str, Loop]:
    """The loop blocks of a STAR file (as RELION writes them), cells kept as written."""
    loops: dict[str, Loop] = {}
    block = ""
    current: Loop | None = None
    in_rows = False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.strip()
            if line.startswith("data_"):
                block, current, in_rows = line[5:], None, False
            elif line.startswith("loop_"):
                current = loops[block] = Loop([])
                in_rows = False
            elif not line or line.startswith("#"):
                if in_rows:
                    current = None
            elif current is None:
                continue  # key/value pairs of a simple block: not used here
            elif line.startswith("_") and not in_rows:
                current.columns.append(line[1:].split()[0])
            else:
                in_rows = True
                quoted = '"' in line or "'" in line
                current.rows.append(TOKEN.findall(line) if quoted else line.split())
    return loops
