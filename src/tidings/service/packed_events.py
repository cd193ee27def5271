"""Events read from a file, held compressed in memory and handed out in event-time order.

A replay must see a log in time order whatever order the file has (a merged order is emitted
after its last row, dated at its first), so the whole file is read before anything is
replayed. Kept as models, a million events would take gigabytes; here each event is its JSON,
compressed a block of BLOCK events at a time (JSON of alike events compresses well), with its
time, line and position in plain arrays: about 150 bytes an event. Files in (or nearly in)
time order, the usual case, read back block after block; a recently read block is kept
decompressed, so events a little out of order cost nothing more.
"""

from __future__ import annotations

import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime

from tidings.model.events import Event

BLOCK = 1000
KEPT = 32  # decompressed blocks kept for events read out of order


class PackedEvents:
    """An append-only set of events; `in_order` yields them by time (file order on ties)."""

    def __init__(self) -> None:
        self._blocks: list[bytes] = []
        self._open: list[bytes] = []  # the block being filled, not yet compressed
        self._times = array("d")  # POSIX timestamps: exact to the microsecond for these dates
        self._lines = array("q")
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first(self) -> datetime | None:
        """The earliest event time."""
        return self._first

    @property
    def last(self) -> datetime | None:
        """The latest event time."""
        return self._last

    def append(self, event: Event, line: int) -> None:
        """Keep one event, read from `line` of the file."""
        at = event.occurred_at
        if self._first is None or at < self._first:
            self._first = at
        if self._last is None or at > self._last:
            self._last = at
        self._times.append(at.timestamp())
        self._lines.append(line)
        self._open.append(event.model_dump_json().encode())
        if len(self._open) == BLOCK:
            self._seal()

    def _seal(self) -> None:
        self._blocks.append(zlib.compress(b"\n".join(self._open), 1))
        self._open = []

    def in_order(self) -> Iterator[tuple[int, Event]]:
        """(line, event), earliest first; events of the same time in the order they came."""
        times = self._times
        for index in sorted(range(len(times)), key=times.__getitem__):
            yield self._lines[index], Event.model_validate_json(self._get(index))

    def _get(self, index: int) -> bytes:
        number, offset = divmod(index, BLOCK)
        if number == len(self._blocks):
            return self._open[offset]  # the block still being filled
        block = self._cache.get(number)
        if block is None:
            block = zlib.decompress(self._blocks[number]).split(b"\n")
            self._cache[number] = block
            if len(self._cache) > KEPT:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(number)
        return block[offset]
