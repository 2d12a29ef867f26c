"""Label files as tools write them: the one reader for tab-separated label files and list files.

    for row in read_rows(path, 2, 3, "filename<TAB>latex[<TAB>split]"):
        row.line, row.fields, row.error   # error set: the row cannot be used, and says why

Spreadsheets, pandas, Notepad and old Mac editors write the same table differently. Read alike: UTF-8
with or without a BOM; UTF-16 with a BOM (or without one, told by its NUL bytes); LF, CRLF and CR-only
line ends; csv quoting with a tab delimiter (a quoted field holds tabs, doubled quotes and line breaks);
fields of any length. A lone CR in an unquoted field of a file of LF lines is not a line end but a space.
A row that cannot be read (too few or too many fields, bytes that are not text, a quote never closed)
comes back with the line it starts on and the reason, and reading goes on at the next line.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A long label is the formula filter's business (max_tokens), not a reason for csv to stop the import;
# 2**31 - 1 is the largest limit every platform's C long holds.
_FIELD_LIMIT = 2**31 - 1
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_STRAY_CR = re.compile(r"\r(?!\n)")
_NOT_TEXT = re.compile("[\ud800-\udfff]")  # bytes the decoder could not read, escaped as surrogates
_CSV_ERRORS = {
    "unexpected end of data": "a quote opened here is never closed (double a quote inside a quoted field)",
    "expected after": "text follows a closing quote (quote the whole field and double quotes inside it)",
}


@dataclass(frozen=True)
class LabelRow:
    line: int  # the 1-based line the row starts on
    fields: list[str]  # a broken row's fields are its first line's, split on tabs (to name its image)
    error: str | None = None


def read_text(path: Path) -> tuple[str, str]:
    """(text, encoding name) of a label or list file; bytes that are not text stay as surrogates."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except PermissionError:
        raise PermissionError(f"cannot read {path}: permission denied (check its permissions)") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path} is a folder, not a labels or list file") from None
    return decode(data)


def decode(data: bytes) -> tuple[str, str]:
    """(text, "UTF-8" or "UTF-16"): the name goes into the message about a row that is not text."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom) :], codec), _name(codec)
    codec = _utf16_without_bom(data) or "utf-8"
    return _decode(data, codec), _name(codec)


def _name(codec: str) -> str:
    return "UTF-8" if codec == "utf-8" else "UTF-16"


def _decode(data: bytes, encoding: str) -> str:
    if encoding == "utf-8":
        return data.decode("utf-8", "surrogateescape")
    # surrogatepass keeps a lone UTF-16 surrogate visible, so its row is reported like a bad UTF-8 byte
    tail = chr(0xDC00 | data[-1]) if len(data) % 2 else ""
    return data[: len(data) - len(data) % 2].decode(encoding, "surrogatepass") + tail


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 saved without a BOM: ASCII text puts a NUL in every other byte, which UTF-8 text never has."""
    half = len(data) // 2
    if half < 2 or b"\x00" not in data:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    if odd >= half // 4 and even <= odd // 10:
        return "utf-16-le"
    if even >= half // 4 and odd <= even // 10:
        return "utf-16-be"
    return None


def split_lines(text: str) -> list[str]:
    """Lines with their ends kept, split on LF only (im2latex formulas hold \\x0c and friends that
    str.splitlines would split on). In a file whose lines end in a lone CR (old Mac tools, which may
    still write LF inside a cell) every lone CR is a line end."""
    if text.count("\r") - text.count("\r\n") > text.count("\n"):
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = text.split("\n")
    last = parts.pop()
    return [part + "\n" for part in parts] + ([last] if last else [])


def is_text(value: str) -> bool:
    return _NOT_TEXT.search(value) is None


def read_rows(path: Path, min_fields: int, max_fields: int, columns: str) -> Iterator[LabelRow]:
    """Every non-blank row of a tab-separated file; `columns` describes a row for error messages."""
    path = Path(path)
    text, encoding = read_text(path)
    yield from parse_rows(text, min_fields, max_fields, columns, name=path.name, encoding=encoding)


def parse_rows(
    text: str, min_fields: int, max_fields: int, columns: str, *, name: str = "the file", encoding="UTF-8"
) -> Iterator[LabelRow]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    where = f"{name} ({encoding})"
    lines = split_lines(text)
    start = 0  # index of the first line the current reader reads
    while start < len(lines):
        reader = csv.reader(iter(lines[start:]), delimiter="\t", quotechar='"', strict=True)
        done = 0  # lines this reader consumed before the row it is reading
        try:
            for fields in reader:
                line, done = start + done + 1, reader.line_num
                if any(f.strip() for f in fields):
                    yield _checked(line, fields, (min_fields, max_fields), columns, where, encoding)
            return
        except csv.Error as e:
            line = start + done + 1
            if _drop_stray_cr(lines, start + reader.line_num - 1, e):
                start = line - 1  # read the row again without it
                continue
            why = next((v for k, v in _CSV_ERRORS.items() if k in str(e)), f"unreadable row ({e})")
            yield LabelRow(line, lines[line - 1].rstrip("\r\n").split("\t"), f"line {line} of {where}: {why}")
            start = line  # a broken row costs its first line only: the next line starts afresh


def _drop_stray_cr(lines: list[str], index: int, error: csv.Error) -> bool:
    """A lone CR in a file of LF lines is no line end (csv refuses it in an unquoted field): a space, as
    the editor that pasted it would show it. Inside quotes csv keeps it, so the label stays intact."""
    if "new-line character" not in str(error) or not 0 <= index < len(lines):
        return False
    fixed = _STRAY_CR.sub(" ", lines[index])
    if fixed == lines[index]:
        return False
    lines[index] = fixed
    return True


def _checked(line: int, fields: list[str], limits: tuple[int, int], columns: str, where: str, encoding: str):
    lo, hi = limits
    while len(fields) > hi and not fields[-1].strip():
        fields = fields[:-1]  # a spreadsheet pads every row to its widest one with empty cells
    if not all(is_text(f) for f in fields):
        return LabelRow(line, fields, f"line {line} of {where} is not {encoding} text")
    if lo <= len(fields) <= hi:
        return LabelRow(line, fields)
    expected = f"{lo}" if lo == hi else f"{lo} or {hi}" if hi == lo + 1 else f"{lo} to {hi}"
    hint = "is it tab-separated?" if len(fields) < lo else "quote a field that holds a tab"
    return LabelRow(
        line,
        fields,
        f"line {line} of {where}: {len(fields)} field{'s' * (len(fields) != 1)} where {expected} are "
        f"expected ({columns}); {hint}",
    )
