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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from tidings.compile.sandbox import describe, make_environment
from tidings.errors import TidingsError
from tidings.service.csv_mapping import GroupSpec, Mapping, PropertySpec, typed


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
        digest = hashlib.sha256(json.dumps(self.body, sort_keys=True).encode()).hexdigest()
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


@dataclass
class _Group:
    """An event being built from several rows."""

    line: int
    started: datetime
    body: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    last: datetime | None = None  # the latest row's time: the merged event's date


class CsvReader:
    """Turns CSV rows into events through a mapping, grouping rows where it says so."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self._zone = ZoneInfo(mapping.time.timezone)
        self._env = make_environment()
        self._compiled: dict[str, jinja2.Template] = {}
        self._open: dict[tuple[str, ...], _Group] = {}  # merge groups waiting for more rows
        self._carts: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # accumulate state

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
        yield from self._flush_all()

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
        yield from self._flush_before(when)
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
            "event_properties": self._values(self.mapping.properties, cells),
        }
        attributes = self._values(self.mapping.contact_properties, cells)
        if attributes:
            body["contact_properties"] = attributes
        group = self.mapping.group_for(name)
        if group is None:
            yield SourceRow(line, body=body)
        elif group.how == "accumulate":
            removes = group.remove is not None and source_name in group.remove.names
            key = self._key(group, cells, contact)
            yield self._accumulate(line, group, key, body, removes=removes)
        else:
            self._merge(line, group, self._key(group, cells, contact), body, when)

    def _time(self, text: str) -> datetime:
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

    def _values(self, specs: dict[str, PropertySpec], cells: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            if spec.value is not None:
                values[name] = spec.value
                continue
            if spec.template is not None:
                text = self._render(spec.template, cells, name)
            else:
                text = cells[spec.column or ""]
            if not text.strip():
                if spec.empty == "omit":
                    continue
                if spec.empty == "null":
                    values[name] = None
                    continue
                values[name] = text
                continue
            try:
                values[name] = typed(text, spec.type)
            except ValueError as exc:
                raise ValueError(f"{spec.column or name}: {exc}") from exc
        return values

    def _render(self, source: str, cells: dict[str, str], name: str) -> str:
        """A property template over the row (`row.brand`), compiled once, in the sandbox."""
        try:
            template = self._compiled.get(source)
            if template is None:
                template = self._compiled[source] = self._env.from_string(source)
            return template.render(row=cells)
        except jinja2.TemplateError as exc:
            raise ValueError(f"{name}: {describe(exc, source)}") from exc

    def _key(self, group: GroupSpec, cells: dict[str, str], contact: str) -> tuple[str, ...]:
        return (group.event, contact, *(cells[c] for c in group.by))

    def _item(self, group: GroupSpec, body: dict[str, Any]) -> dict[str, Any]:
        props = body["event_properties"]
        return {k: props[k] for k in group.item_properties if k in props}

    def _with_items(
        self, group: GroupSpec, body: dict[str, Any], items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        props = {
            k: v for k, v in body["event_properties"].items() if k not in group.item_properties
        }
        props[group.items] = [dict(item) for item in items]
        for total, item_key in group.totals.items():
            props[total] = round(sum(float(i.get(item_key, 0) or 0) for i in items), 2)
        return {**body, "event_properties": props}

    def _accumulate(
        self,
        line: int,
        group: GroupSpec,
        key: tuple[str, ...],
        body: dict[str, Any],
        *,
        removes: bool = False,
    ) -> SourceRow:
        items = self._carts.setdefault(key, [])
        item = self._item(group, body)
        if not removes:
            items.append(item)
        elif group.remove is not None:
            # The latest matching item goes; removing what is not there leaves the list as is
            # (the row still says how the cart stands, so it is still an event).
            same = [item.get(m) for m in group.remove.match]
            for index in range(len(items) - 1, -1, -1):
                if [items[index].get(m) for m in group.remove.match] == same:
                    del items[index]
                    break
        return SourceRow(line, body=self._with_items(group, body, items))

    def _merge(
        self,
        line: int,
        group: GroupSpec,
        key: tuple[str, ...],
        body: dict[str, Any],
        when: datetime,
    ) -> None:
        current = self._open.get(key)
        if current is None:
            current = self._open[key] = _Group(line, when, body)
        current.items.append(self._item(group, body))
        current.last = when

    def _flush_before(self, when: datetime) -> Iterator[SourceRow]:
        closed = [key for key, g in self._open.items() if when - g.started > self._window(key[0])]
        yield from self._emit(closed)

    def _flush_all(self) -> Iterator[SourceRow]:
        yield from self._emit(list(self._open))

    def _emit(self, keys: list[tuple[str, ...]]) -> Iterator[SourceRow]:
        groups = sorted(((self._open.pop(k), k) for k in keys), key=lambda pair: pair[0].line)
        for group, key in groups:
            spec = self.mapping.group_for(key[0])
            assert spec is not None
            body = self._with_items(spec, group.body, group.items)
            # Dated at its last row: an order is complete when its last item is bought, so a
            # cart updated between two purchase rows of the order is ended by it (the exit
            # goal counts orders dated at or after the cart).
            body["event_date"] = (group.last or group.started).isoformat()
            if spec.id_property is not None:
                # key = (event, contact, *by values): the group's own values, then its start.
                stamp = group.started.strftime("%Y%m%dT%H%M%SZ")
                body["event_properties"][spec.id_property] = "-".join([*key[2:], stamp])
            yield SourceRow(group.line, body=body)

    def _window(self, event_name: str) -> timedelta:
        spec = self.mapping.group_for(event_name)
        return spec.within if spec is not None else timedelta(0)
