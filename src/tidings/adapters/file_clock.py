"""A clock read from a file, so tests can drive a daemon running in another process.

Test-only, and off unless `TIDINGS_CLOCK_FILE` (setting `clock_file`) names a file. The file
holds one ISO 8601 time with an offset (`2030-01-01T09:00:00+00:00`); the test rewrites it to
move time, then sends the daemon SIGUSR1 to make it look at what is now due. Nothing ever sleeps
through a wait.

The time is read on every call; a file being rewritten can be seen empty for an instant, so
the last good value is kept in that case. Time never goes backwards through this clock.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from tidings.adapters.clock import as_utc
from tidings.errors import ConfigError


class FileClock:
    """The time written in a file (UTC)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        value = self._read()
        if value is None:
            raise ConfigError(f"{path}: expected an ISO 8601 time with an offset")
        self._last = value

    def now(self) -> datetime:
        """The time in the file, or the last good one while the file is being rewritten."""
        value = self._read()
        if value is not None and value > self._last:
            self._last = value
        return self._last

    def _read(self) -> datetime | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
            return as_utc(datetime.fromisoformat(text))
        except (OSError, ValueError):
            return None


def write_clock_file(path: Path, when: datetime) -> None:
    """Set a file clock's time atomically (write a sibling, then rename over)."""
    as_utc(when)  # refuse naive times here rather than in the daemon
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(when.isoformat())
    Path(temporary).replace(path)
