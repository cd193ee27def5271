"""A local SMTP server for the benchmarks (aiosmtpd on 127.0.0.1), in its own process so its
CPU is not the measured process's: it accepts every message and appends one line per message
to `--out`: `<monotonic seconds> <recipient> <connection number>`.

    .venv/bin/python -m bench.smtp_sink --port 2525 --out /tmp/received.txt

CLOCK_MONOTONIC is one clock for every process on the machine, so a benchmark compares these
times with its own `time.monotonic()`. It prints `ready` once it listens, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any, TextIO

from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.common import HOST


class Recorder:
    """aiosmtpd handler: one line per accepted message, flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Record the message and accept it."""
        self.count += 1
        number = getattr(session, "bench_connection", 0)
        for rcpt in envelope.rcpt_tos:
            self.out.write(f"{time.monotonic():.6f} {rcpt} {number}\n")
        self.out.flush()
        return f"250 2.0.0 Ok: queued as {self.count}"


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))


async def serve(port: int, path: str) -> None:
    """Listen on loopback and record every message until SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    connections = 0
    with open(path, "a", encoding="utf-8") as out:
        recorder = Recorder(out)

        def factory() -> SMTP:
            nonlocal connections
            connections += 1
            return _Numbered(connections, recorder, hostname="bench-sink", enable_SMTPUTF8=True)

        server = await loop.create_server(factory, HOST, port, reuse_address=True)
        print("ready", flush=True)
        await stop.wait()
        server.close()


class _Numbered(SMTP):
    """aiosmtpd's protocol, stamping the connection's number on its sessions."""

    def __init__(self, number: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._number = number

    def _create_session(self) -> Session:
        session = super()._create_session()
        session.bench_connection = self._number  # type: ignore[attr-defined]
        return session


if __name__ == "__main__":
    main()
