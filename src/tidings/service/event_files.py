"""Event files for `import` and `simulate`: JSONL in the `/v3/events` shape, or CSV + mapping.

Readers yield one `SourceRow` per event, or per row that could not be read (with its line
number and the reason): nothing is dropped silently. CSV with a UTF-8 BOM or CRLF line endings
reads the same as plain UTF-8 with LF. A line with bytes that are not UTF-8 is one refused row
("not UTF-8 at byte N of the line", N counted from 1), not the end of the file. Event ids are
derived from the file's content and line, so reading the same file twice gives the same ids (and
`simulate` the same report).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tidings.errors import TidingsError
from tidings.service.csv_groups import Groups
from tidings.service.csv_mapping import Mapping
from tidings.service.csv_values import RowValues

_SORTED_JSON = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True), made once


@dataclass(frozen=True)
class SourceRow:
    """One event read from a file (`body`, in the `/v3/events` shape), or a row refused."""

    line: int
    body: dict[str, Any] | None = None
    error: str | None = None
    skipped: bool = False  # a row the mapping leaves out on purpose (unmapped event name)

    @property
    def event_id(self) -> str:
        """A stable id for the event this row became."""
        digest = hashlib.sha256(_SORTED_JSON.encode(self.body).encode()).hexdigest()
        return f"L{self.line}-{digest[:12]}"


def open_text(path: Path) -> io.TextIOWrapper:
    """Open an event file as text: UTF-8 with or without BOM, any line ending.

    Bytes that are not UTF-8 come through as lone surrogates (`surrogateescape`) rather than
    aborting the file: the readers refuse the line that has them (`undecoded`) and go on.
    """
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


_UNDECODED = re.compile("[\udc80-\udcff]")  # how surrogateescape carries a byte it could not decode


def undecoded(line: str) -> str | None:
    """Why a line read by `open_text` is refused, when it had bytes that are not UTF-8."""
    if line.isascii():  # the usual case, and the cheapest test there is
        return None
    found = _UNDECODED.search(line)
    if found is None:
        return None
    at = len(line[: found.start()].encode("utf-8", "surrogateescape")) + 1
    return f"not UTF-8 at byte {at} of the line (0x{ord(found[0]) - 0xDC00:02x})"


def read_jsonl(lines: Iterable[str]) -> Iterator[SourceRow]:
    """Rows of a JSONL file: one `/v3/events` object per line; blank lines are ignored."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if reason := undecoded(line):
            yield SourceRow(number, error=reason)
            continue
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            yield SourceRow(number, error=f"malformed JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(body, dict):
            yield SourceRow(number, error=f"expected a JSON object, found {type(body).__name__}")
            continue
        yield SourceRow(number, body=body)


class CsvReader:
    """Turns CSV rows into events through a mapping, grouping rows where it says so."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self._zone = ZoneInfo(mapping.time.timezone)
        self._groups = Groups(mapping)
        self._values = RowValues(())
        # The last time cell read and its time: rows of a log often share their second.
        self._last_time: tuple[str, datetime] | None = None

    def read(self, lines: Iterable[str]) -> Iterator[SourceRow]:
        """Every event (and refused row) of the file, in file order of each event's first row."""
        # The csv module reads no further than the record it returns, so the lines found
        # undecodable since the last record are this record's.
        bad: dict[int, str] = {}

        def checked() -> Iterator[str]:
            for number, line in enumerate(lines, start=1):
                if reason := undecoded(line):
                    bad[number] = reason
                yield line

        reader = csv.DictReader(checked())
        header = reader.fieldnames or []
        if bad:
            yield SourceRow(1, error=f"header: {bad[min(bad)]}")
            return
        missing = self._missing_columns(header)
        if missing:
            yield SourceRow(1, error=f"missing column(s): {', '.join(missing)}")
            return
        self._values = RowValues(header)
        for row in reader:
            line = reader.line_num
            if bad:
                first = min(bad)
                yield SourceRow(first, error=bad[first])
                bad.clear()
                continue
            try:
                yield from self._row(line, row, len(header))
            except (ValueError, TidingsError) as exc:
                yield SourceRow(line, error=str(exc))
        for first, body in self._groups.remaining():
            yield SourceRow(first, body=body)

    def _missing_columns(self, header: Sequence[str]) -> list[str]:
        m = self.mapping
        wanted = {m.time.column, m.event.column, m.contact.column}
        for spec in [*m.properties.values(), *m.contact_properties.values()]:
            if spec.column:
                wanted.add(spec.column)
        for group in m.groups:
            wanted.update(group.by)
        return sorted(wanted - set(header))

    def _row(self, line: int, row: dict[str, str | None], columns: int) -> Iterator[SourceRow]:
        if None in row:
            extra = row[None]  # type: ignore[index]  # DictReader's key for surplus cells
            raise ValueError(f"{len(extra or [])} more cell(s) than the header has")
        if None in row.values():  # DictReader's filler for the cells a short row lacks
            given = sum(value is not None for value in row.values())
            raise ValueError(f"{given} cell(s), the header has {columns}")
        cells = {k: v or "" for k, v in row.items()}
        when = self._time(cells[self.mapping.time.column])
        # Groups whose window closed before this row are complete: emit them first.
        for first, body in self._groups.closed_before(when):
            yield SourceRow(first, body=body)
        source_name = cells[self.mapping.event.column].strip()
        name = self.mapping.event.names.get(source_name)
        if name is None:
            if not self.mapping.event.keep_unmapped:
                yield SourceRow(line, skipped=True, error=f"unmapped event {source_name!r}")
                return
            name = source_name
        contact = cells[self.mapping.contact.column].strip()
        if not contact:
            raise ValueError(f"empty contact identifier in column {self.mapping.contact.column!r}")
        body = {
            "event_name": name,
            "event_date": when.isoformat(),
            "identifiers": {self.mapping.contact.identifier.value: contact},
            "event_properties": self._values.values(self.mapping.properties, cells),
        }
        attributes = self._values.values(self.mapping.contact_properties, cells)
        if attributes:
            body["contact_properties"] = attributes
        group = self._groups.rule(name)
        if group is None:
            yield SourceRow(line, body=body)
            return
        key = (group.event, contact, *(cells[c] for c in group.by))
        if group.how == "accumulate":
            removes = group.remove is not None and source_name in group.remove.names
            yield SourceRow(line, body=self._groups.accumulate(group, key, body, removes=removes))
        else:
            self._groups.merge(line, group, key, body, when)

    def _time(self, text: str) -> datetime:
        last = self._last_time
        if last is not None and last[0] == text:
            return last[1]
        when = self._parse_time(text)
        self._last_time = (text, when)
        return when

    def _parse_time(self, text: str) -> datetime:
        spec = self.mapping.time
        try:
            if spec.format == "iso":
                when = datetime.fromisoformat(text.strip())
            else:
                when = datetime.strptime(text.strip(), spec.format)
        except ValueError as exc:
            raise ValueError(f"{spec.column}: {exc}") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=self._zone)
        return when.astimezone(UTC)
