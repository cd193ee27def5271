"""CSV rows that become events together, as a mapping's `groups` say (`csv_mapping`).

`accumulate` turns each row into the group's list as it now stands (a cart); `merge` holds
rows until the group's window closes, then emits them as one event (an order). A merge group
closes when a row comes more than `within` after the group's first row; the groups still open
at the end of the file close there. Closed groups come out in the order of their first rows.

Which groups a row closes is found from a heap of their closing times rather than by looking
at every open group on every row (a file with many sessions keeps many orders open).
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings.service.csv_mapping import GroupSpec, Mapping

Body = dict[str, Any]
GroupKey = tuple[str, ...]  # (event name, contact, *values of the group's `by` columns)


@dataclass
class _Group:
    """An event being built from several rows."""

    line: int
    started: datetime
    body: Body
    items: list[Body] = field(default_factory=list)
    last: datetime | None = None  # the latest row's time: the merged event's date


class Groups:
    """The groups a file's rows are building; `rule` says which rows belong to one."""

    def __init__(self, mapping: Mapping) -> None:
        self._rules: dict[str, GroupSpec] = {}
        for rule in mapping.groups:
            self._rules.setdefault(rule.event, rule)  # the first rule of a name, as `group_for`
        self._open: dict[GroupKey, _Group] = {}  # merge groups waiting for more rows
        self._carts: dict[GroupKey, list[Body]] = {}  # accumulate state
        # (closing time, first line, key) of each open merge group; the line tells a group
        # from a later one of the same key once the first has been emitted.
        self._closing: list[tuple[datetime, int, GroupKey]] = []

    def rule(self, event_name: str) -> GroupSpec | None:
        """The grouping rule for an event name, if any."""
        return self._rules.get(event_name)

    def accumulate(
        self, group: GroupSpec, key: GroupKey, body: Body, *, removes: bool = False
    ) -> Body:
        """The row's event with the group's items as they stand after it."""
        items = self._carts.setdefault(key, [])
        item = _item(group, body)
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
        return _with_items(group, body, items)

    def merge(self, line: int, group: GroupSpec, key: GroupKey, body: Body, when: datetime) -> None:
        """Add the row to its open group (a new one when none is open for its key)."""
        current = self._open.get(key)
        if current is None:
            current = self._open[key] = _Group(line, when, body)
            # Closed by a row at `now` when now - started > within, i.e. now > started +
            # within; past the last representable time, no row can come late enough.
            with contextlib.suppress(OverflowError):
                heapq.heappush(self._closing, (when + group.within, line, key))
        current.items.append(_item(group, body))
        current.last = when

    def closed_before(self, when: datetime) -> Iterator[tuple[int, Body]]:
        """(first line, event) of the groups a row at `when` closes, by first line."""
        closing = self._closing
        keys: list[GroupKey] = []
        while closing and closing[0][0] < when:
            _, line, key = heapq.heappop(closing)
            group = self._open.get(key)
            if group is not None and group.line == line:
                keys.append(key)
        if keys:
            yield from self._emit(keys)

    def remaining(self) -> Iterator[tuple[int, Body]]:
        """(first line, event) of every group still open (the file has ended), by first line."""
        self._closing = []
        yield from self._emit(list(self._open))

    def _emit(self, keys: list[GroupKey]) -> Iterator[tuple[int, Body]]:
        groups = sorted(((self._open.pop(k), k) for k in keys), key=lambda pair: pair[0].line)
        for group, key in groups:
            spec = self._rules[key[0]]
            body = _with_items(spec, group.body, group.items)
            # Dated at its last row: an order is complete when its last item is bought, so a
            # cart updated between two purchase rows of the order is ended by it (the exit
            # goal counts orders dated at or after the cart).
            body["event_date"] = (group.last or group.started).isoformat()
            if spec.id_property is not None:
                # key = (event, contact, *by values): the group's own values, then its start.
                stamp = group.started.strftime("%Y%m%dT%H%M%SZ")
                body["event_properties"][spec.id_property] = "-".join([*key[2:], stamp])
            yield group.line, body


def _item(group: GroupSpec, body: Body) -> Body:
    props = body["event_properties"]
    return {k: props[k] for k in group.item_properties if k in props}


def _with_items(group: GroupSpec, body: Body, items: list[Body]) -> Body:
    props = {k: v for k, v in body["event_properties"].items() if k not in group.item_properties}
    props[group.items] = [dict(item) for item in items]
    for total, item_key in group.totals.items():
        props[total] = round(sum(float(i.get(item_key, 0) or 0) for i in items), 2)
    return {**body, "event_properties": props}
