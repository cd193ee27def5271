"""The floor under ingestion: the least a Python server under uvicorn can do per request, for
`bench.ingest --server floor` (and `floor-http`), so the daemon's figures stand beside what the
same machine, HTTP server and load reach with nothing of Tidings in the way.

    .venv/bin/python -m bench.floor_server --port 8099 --database-url sqlite:////tmp/x.db
    .venv/bin/python -m bench.floor_server --port 8099 --database-url sqlite:////tmp/x.db --http-only

A bare ASGI app (no framework) on the daemon's uvicorn settings. Per request it reads the body,
then, unless `--http-only`: `json.loads` it, and appends each event's JSON text as one row to
`events` in a SQLite file with the store's durability (WAL, `synchronous=FULL`), committed by
one writer thread that takes every row waiting at once (a group commit, as the daemon's
writer). It answers (204 single, 202 batch) after the commit. No validation, no contacts, no
deduplication, no engine: none of what the product promises, only HTTP, JSON and a durable row.
`/ready` answers once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from bench.common import HOST

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class GroupWriter:
    """Rows handed in while a commit runs are written together by the next one."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body TEXT)")
        self._waiting: list[tuple[list[tuple[str]], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def write(self, rows: list[tuple[str]]) -> None:
        """Return once `rows` are committed."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        self._wake.set()
        await done

    async def run(self) -> None:
        """Commit whatever is waiting, again and again."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken, self._waiting = self._waiting, []
            rows = [row for part, _ in taken for row in part]
            await asyncio.to_thread(self._commit, rows)
            for _, done in taken:
                done.set_result(None)

    def _commit(self, rows: list[tuple[str]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT INTO events (body) VALUES (?)", rows)
        self._db.execute("COMMIT")


def make_app(writer: GroupWriter | None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The bare app: `/ready`, and every POST read (and stored, with a writer) then answered."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, writer)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status = 200
        if scope["method"] == "POST":
            batch = scope["path"].endswith("/batch")
            status = 202 if batch else 204
            if writer is not None:
                parsed = json.loads(body)
                events = parsed["events"] if batch else [parsed]
                await writer.write([(json.dumps(event),) for event in events])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _lifespan(receive: Receive, send: Send, writer: GroupWriter | None) -> None:
    tasks: list[asyncio.Task[None]] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if writer is not None:
                tasks.append(asyncio.create_task(writer.run()))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for task in tasks:
                task.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    """Serve the floor app until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True, help="sqlite:///PATH")
    parser.add_argument("--http-only", action="store_true", help="answer without parsing")
    args = parser.parse_args()
    path = args.database_url.removeprefix("sqlite:///")
    writer = None if args.http_only else GroupWriter(path)
    if writer is None:  # the bench counts rows afterwards: an empty table says none were kept
        sqlite3.connect(path).execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER)").close()
    app = make_app(writer)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
