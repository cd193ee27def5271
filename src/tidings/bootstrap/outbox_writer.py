"""Writing a simulation's messages as files, in a worker process while the replay goes on.

Building an `.eml` file (MIME, headers, encodings) costs about as much as deciding to send it,
and a replay can record thousands of messages: a second process writes them while the first
replays, so the two share the machine's cores. The worker is `python -m
tidings.bootstrap.outbox_writer`, fed on its standard input: one JSON line with the outbox
settings, then one message (JSON) per line. When its input ends it prints, one JSON line each,
the messages it could not write (a malformed phone number...) and exits 0; a folder that
cannot be written makes it exit 3 with the reason on its standard error, and the simulation
stops with that reason.

The file a message goes to is known in advance (`OutboxDirSender.path_for`), so the replay
records the message as sent at once; the ones reported back are recorded as failed at the end.
With `workers=0` the files are written in this process, one batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from tidings.adapters.outbox_dir import OutboxDirSender
from tidings.errors import DeliveryError, TemporaryDeliveryError
from tidings.model.contacts import Channel
from tidings.model.messages import Message
from tidings.service.consent import ConsentTokens, unsubscribe_url

EXIT_FOLDER = 3
QUEUED = 64  # batches waiting for the worker before the replay waits too


@dataclass(frozen=True)
class OutboxSpec:
    """Where and how message files are written (sent to the worker as JSON)."""

    directory: str
    mail_from: str
    public_url: str
    secret_key: str  # signs the List-Unsubscribe links, as the daemon's sender does

    def sender(self) -> OutboxDirSender:
        """The folder sender."""
        tokens = ConsentTokens(self.secret_key)

        def list_unsubscribe(message: Message) -> str | None:
            if message.transactional:
                return None
            return unsubscribe_url(
                self.public_url, tokens.create(message.contact_id, Channel.email)
            )

        return OutboxDirSender(
            Path(self.directory), mail_from=self.mail_from, unsubscribe_url=list_unsubscribe
        )


async def _write(sender: OutboxDirSender, messages: Iterable[Message]) -> list[tuple[str, str]]:
    """Write each message's file; (key, reason) of those that cannot be written."""
    failed: list[tuple[str, str]] = []
    for message in messages:
        try:
            if message.channel is Channel.email:
                await sender.send_email(message)
            else:
                await sender.send_sms(message)
        except TemporaryDeliveryError:
            raise  # the folder itself: nothing else can be written either
        except DeliveryError as exc:
            failed.append((message.key, str(exc)))
    return failed


class OutboxWriter:
    """Hands messages to the worker process; `close` waits and reports the failures.

    A feeder thread writes to the worker's pipe, so the replay never waits for the worker
    unless it is far ahead (QUEUED batches); the thread spends its time blocked in `write`,
    which does not hold the interpreter lock.
    """

    def __init__(self, spec: OutboxSpec, *, workers: int = 1) -> None:
        self.spec = spec
        self._sender = spec.sender()
        self._failed: list[tuple[str, str]] = []
        self._worker: subprocess.Popen[bytes] | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUED)
        self._feeder: threading.Thread | None = None
        self._broken = False
        if workers > 0:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "tidings.bootstrap.outbox_writer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            self._feeder = threading.Thread(
                target=self._feed, args=(self._worker,), name="outbox-feeder", daemon=True
            )
            self._feeder.start()
            self._queue.put((json.dumps(asdict(spec)) + "\n").encode())

    def file_name(self, message: Message) -> str:
        """The name of the file the message is written to."""
        return self._sender.path_for(message).name

    def submit(self, messages: Sequence[Message]) -> None:
        """Write these messages' files (in the worker, when there is one)."""
        if self._worker is None:
            self._failed.extend(asyncio.run(_write(self._sender, messages)))
            return
        if self._broken:
            self.close()  # raises the worker's reason
        if messages:
            self._queue.put("".join(f"{m.model_dump_json()}\n" for m in messages).encode())

    def _feed(self, worker: subprocess.Popen[bytes]) -> None:
        """The feeder thread: batches from the queue into the worker's standard input."""
        assert worker.stdin is not None
        while (data := self._queue.get()) is not None:
            if self._broken:
                continue  # keep draining so `submit` never blocks on a dead worker
            try:
                worker.stdin.write(data)
            except (BrokenPipeError, ValueError):
                self._broken = True
        with contextlib.suppress(BrokenPipeError):
            worker.stdin.close()

    def close(self) -> list[tuple[str, str]]:
        """Wait for every file; (key, reason) of the messages that could not be written."""
        worker, self._worker = self._worker, None
        if worker is not None:
            self._stop_feeder()
            worker.stdin = None  # the feeder closed it: communicate must not flush it
            out, err = worker.communicate()
            if worker.returncode != 0:
                reason = err.decode(errors="replace").strip().splitlines()
                raise TemporaryDeliveryError(reason[-1] if reason else "the outbox writer failed")
            for line in out.decode().splitlines():
                item = json.loads(line)
                self._failed.append((item["key"], item["reason"]))
        return sorted(self._failed)

    def abort(self) -> None:
        """Stop the worker without waiting for its files (the simulation failed)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()
            self._stop_feeder()
            worker.stdin = None
            worker.communicate()

    def _stop_feeder(self) -> None:
        if self._feeder is not None:
            self._queue.put(None)
            self._feeder.join()
            self._feeder = None


def serve(stdin: IO[bytes], stdout: IO[str]) -> int:
    """The worker: read the spec, then messages, write their files, report failures."""
    spec = OutboxSpec(**json.loads(stdin.readline()))
    messages = (Message.model_validate_json(line) for line in stdin if line.strip())
    try:
        failed = asyncio.run(_write(spec.sender(), messages))
    except TemporaryDeliveryError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FOLDER
    for key, reason in failed:
        stdout.write(json.dumps({"key": key, "reason": reason}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.stdin.buffer, sys.stdout))
