"""Runs in SQL: bulk upserts, per-contact lookups, and claims of due runs."""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from tidings.adapters.sql import mapping
from tidings.adapters.sql.driver import DriverStatement, update_by_key
from tidings.adapters.sql.statements import CHUNK, Queries, chunks
from tidings.adapters.sql.tables import WAITING, UTCDateTime, runs
from tidings.errors import StoreError
from tidings.model.runs import Run, RunStatus
from tidings.ports import ContactRuns, RunCount

_r = runs
_ACTIVE = _r.c.status != sa.literal_column(f"'{RunStatus.finished.value}'")
_CONTACT: sa.BindParameter[str] = sa.bindparam("contact_id", type_=sa.Text())
# A run row's columns as the driver returns them; ranked, with `newest` after them (`_ranked`).
_COLUMNS = tuple(_r.c.keys())
_RANKED = (*_COLUMNS, "newest")
_ID = _COLUMNS.index("id")
# A run's fields named as its columns, read in C.
_FIELDS = operator.attrgetter(*_COLUMNS)
_POSITIONS = tuple(range(len(_COLUMNS)))
_WHERE_ID = "where_id"


def _by_code_point(postgres: bool, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    return column.collate("C") if postgres else column


# The per-contact reads run several times for every event and timer: each statement is built
# once per dialect with a bound contact id, so SQLAlchemy neither rebuilds it nor recomputes its
# cache key on every call (that cost more than executing it).
@functools.cache
def _runs_for_contact(postgres: bool, active_only: bool) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(_r)
        .where(_r.c.contact_id == _CONTACT, *([_ACTIVE] if active_only else []))
        .order_by(_r.c.started_at, _by_code_point(postgres, _r.c.id))
    )


def _ranked(postgres: bool, where: sa.ColumnElement[bool]) -> sa.Subquery:
    """The runs matching `where`, each with `newest`: 1 for the newest (by start, then id) of
    its contact, workflow and key."""
    newest = (
        sa.func.row_number()
        .over(
            partition_by=(_r.c.contact_id, _r.c.workflow_id, _r.c.key),
            order_by=(_r.c.started_at.desc(), _by_code_point(postgres, _r.c.id).desc()),
        )
        .label("newest")
    )
    return sa.select(_r, newest).where(where).subquery()


@functools.cache
def _last_runs(postgres: bool) -> sa.Select[tuple[object, ...]]:
    ranked = _ranked(postgres, _r.c.contact_id == _CONTACT)
    return (
        sa.select(ranked)
        .where(ranked.c.newest == 1)
        .order_by(ranked.c.started_at, _by_code_point(postgres, ranked.c.id))
    )


# A batch's runs: of each contact in `ids`, the active runs and the newest of each (workflow,
# key) together, each row read once (they are mostly the same rows).
@functools.cache
def _runs_of_contacts(postgres: bool) -> sa.Select[tuple[object, ...]]:
    ranked = _ranked(postgres, _r.c.contact_id.in_(sa.bindparam("ids", expanding=True)))
    active = ranked.c.status != sa.literal_column(f"'{RunStatus.finished.value}'")
    return (
        sa.select(ranked)
        .where(sa.or_(ranked.c.newest == 1, active))
        .order_by(ranked.c.started_at, _by_code_point(postgres, ranked.c.id))
    )


# The same reads without the newest runs, for a batch that starts no run by trigger (timers):
# ranking every row, then sorting them again, cost twice SQLite's indexed read of the rows.
@functools.cache
def _active_runs_of_contacts(postgres: bool) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(_r)
        .where(_r.c.contact_id.in_(sa.bindparam("ids", expanding=True)), _ACTIVE)
        .order_by(_r.c.started_at, _by_code_point(postgres, _r.c.id))
    )


@functools.cache
def _due_runs(postgres: bool) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(_r)
        .where(WAITING, _r.c.due_at <= sa.bindparam("now", type_=UTCDateTime()))
        .order_by(_r.c.due_at, _by_code_point(postgres, _r.c.id))
        .limit(sa.bindparam("limit", type_=sa.Integer()))
        .with_for_update(skip_locked=True)
    )


# Bounded: a dialect is one engine's, and tests make many engines.
@functools.lru_cache(maxsize=64)
def _update(dialect: Dialect, columns: tuple[str, ...]) -> DriverStatement:
    """`UPDATE runs SET columns WHERE id = ...`, compiled once per dialect and columns."""
    return update_by_key(dialect, _r, _r.c.id, _WHERE_ID, columns)


def _changed(stored: Run, run: Run) -> tuple[int, ...]:
    """The columns (positions in `_COLUMNS`) `run` may write otherwise than `stored`: those
    whose value is another object. A run's copies share every value they do not change; an
    equal value written again (a new time of the same instant) writes the same text, and equal
    JSON objects may not."""
    return tuple(
        itertools.compress(_POSITIONS, map(operator.is_not, _FIELDS(stored), _FIELDS(run)))
    )


@functools.cache
def _next_due() -> sa.Select[Any]:
    """The earliest due time of a waiting run, built once: asked after every engine pass."""
    return sa.select(sa.func.min(_r.c.due_at).label("earliest")).where(WAITING)


class RunQueries(Queries):
    """The `RunStore` port over one connection."""

    def __init__(self, connection: sa.Connection) -> None:
        super().__init__(connection)
        # SQLite: the runs the last claim read, by id, with the row each was read from. A
        # batch's states read its claimed runs again; a row read again unchanged is the same
        # run, not converted twice (a run's JSON and model cost more than its query).
        self._claimed: dict[str, tuple[tuple[Any, ...], Run]] = {}
        # SQLite: the runs of the last claim as they are stored now (as claimed, then as saved).
        # Saved again, such a run is an UPDATE of the columns it changed: most of a run (its
        # event, contact, workflow, key and start) never changes once it is stored, and writing
        # it again cost its JSON's encoding and an index entry moved for nothing.
        self._stored: dict[str, Run] = {}

    def save_runs(self, runs: Sequence[Run]) -> None:
        """Insert or replace runs by id, in order (one executemany per statement)."""
        if not self._stored:
            self._upsert(_r, [mapping.run_values(run) for run in runs], "id")
            return
        writes: list[tuple[tuple[int, ...] | None, Any]] = []
        for run in runs:
            stored = self._stored.get(run.id)
            if stored is None:
                writes.append((None, mapping.run_values(run)))
                continue
            self._stored[run.id] = run
            if changed := _changed(stored, run):
                row = mapping.run_row(run)  # in `_COLUMNS` order, as the table's
                writes.append((changed, (*[row[i] for i in changed], run.id)))
        # Consecutive writes of one statement together, so a run saved twice keeps its last.
        for changed, same in itertools.groupby(writes, key=operator.itemgetter(0)):
            rows = [values for _, values in same]
            if changed is None:
                self._upsert(_r, rows, "id")
                continue
            columns = tuple(_COLUMNS[i] for i in changed)
            update = _update(self._conn.dialect, columns)
            if update.keys != (*columns, _WHERE_ID):  # pragma: no cover - SQLite sets in order
                raise StoreError(f"unexpected order of parameters {update.keys}")
            self._driver_many_ordered(update, rows)

    def get_run(self, run_id: str) -> Run | None:
        """One run by id."""
        row = self._execute(sa.select(_r).where(_r.c.id == run_id)).mappings().first()
        return mapping.run_from_row(row) if row else None

    def runs_for_contact(self, contact_id: str, *, active_only: bool = True) -> list[Run]:
        """A contact's runs, oldest first (by start, then id)."""
        stmt = _runs_for_contact(self._postgres, active_only)
        rows = self._execute(stmt, {"contact_id": contact_id}).mappings()
        return [mapping.run_from_row(row) for row in rows]

    def last_runs(self, contact_id: str) -> list[Run]:
        """The most recent run (by start, then id) of each (workflow, key), oldest first."""
        rows = self._execute(_last_runs(self._postgres), {"contact_id": contact_id}).mappings()
        return [mapping.run_from_row(row) for row in rows]

    def runs_of_contacts(
        self, contact_ids: Collection[str], *, last: bool = True
    ) -> dict[str, ContactRuns]:
        """`runs_for_contact` and `last_runs` of each id, one query per chunk of ids
        (`last=False`: the active runs only, `last` left empty)."""
        found = {contact_id: ContactRuns([], []) for contact_id in contact_ids}
        for part in chunks(sorted(found)):
            if not last:
                for run, _ in self._read_runs(_active_runs_of_contacts(self._postgres), part):
                    found[run.contact_id].active.append(run)
                continue
            for run, newest in self._read_runs(_runs_of_contacts(self._postgres), part):
                runs = found[run.contact_id]  # frozen: one object in both lists
                if run.is_active:
                    runs.active.append(run)
                if newest:
                    runs.last.append(run)
        return found

    def _read_runs(
        self, statement: sa.Select[tuple[object, ...]], contact_ids: Sequence[str]
    ) -> Iterator[tuple[Run, bool]]:
        """The runs a read of many contacts finds, each with whether it is its key's newest
        (when the statement ranks them: `newest` after the run's columns); on SQLite a run the
        last claim read from the same row is that claim's run."""
        values = {"ids": contact_ids}
        if self._postgres:
            for row in self._select_rows(statement, values):
                yield mapping.run_from_row(row), row.get("newest") == 1
            return
        select, rows = self._driver_rows(statement, values)
        ranked = select.keys == _RANKED
        reuse = bool(self._claimed) and (ranked or select.keys == _COLUMNS)
        width = len(_COLUMNS)
        for raw in rows:
            claimed = self._claimed.get(raw[_ID]) if reuse else None
            newest = ranked and raw[width] == 1
            if claimed is not None and claimed[0] == (raw[:width] if ranked else raw):
                yield claimed[1], newest
            else:
                yield mapping.run_from_row(select.row(raw)), newest

    def claim_due_runs(self, now: datetime, limit: int) -> list[Run]:
        """Waiting runs with `due_at <= now`, earliest first, locked for this transaction."""
        statement, values = _due_runs(self._postgres), {"now": now, "limit": limit}
        if self._postgres:
            return [mapping.run_from_row(row) for row in self._select_rows(statement, values)]
        select, rows = self._driver_rows(statement, values)
        claimed = [mapping.run_from_row(select.row(row)) for row in rows]
        # Kept for the batch's reads; not a replay's claim of every due run at once.
        kept = len(rows) <= CHUNK and select.keys == _COLUMNS
        self._claimed = (
            {run.id: (row, run) for row, run in zip(rows, claimed, strict=True)} if kept else {}
        )
        self._stored = {run.id: run for _, run in self._claimed.values()}
        return claimed

    def next_due_at(self) -> datetime | None:
        """The earliest due time of any waiting run."""
        (row,) = self._select_rows(_next_due(), {})
        earliest: datetime | None = row["earliest"]
        return earliest

    def runs_off_version(self, workflow_id: str, version: str, limit: int) -> list[Run]:
        """Waiting runs of this workflow on any other version, oldest first (by start, id)."""
        stmt = (
            sa.select(_r)
            .where(WAITING, _r.c.workflow_id == workflow_id, _r.c.workflow_version != version)
            .order_by(_r.c.started_at, self._text_order(_r.c.id))
            .limit(limit)
        )
        return [mapping.run_from_row(row) for row in self._execute(stmt).mappings()]

    def run_counts(self) -> list[RunCount]:
        """Runs per workflow, status and step, with the earliest due time among them."""
        stmt = sa.select(
            _r.c.workflow_id,
            _r.c.status,
            _r.c.position,
            sa.func.count(),
            sa.func.min(_r.c.due_at),
        ).group_by(_r.c.workflow_id, _r.c.status, _r.c.position)
        counts = [
            RunCount(workflow_id=w, status=s, position=p, count=n, next_due_at=due)
            for w, s, p, n, due in self._execute(stmt).all()
        ]
        # Sorted here, by code point, so every database lists them in the same order.
        return sorted(counts, key=lambda c: (c.workflow_id, c.status, c.position))
