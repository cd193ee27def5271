"""Senders for worker tests: one that dies after sending, one that answers from a script."""

from __future__ import annotations

from typing import Any

from tidings.model.messages import Message


class Crash(BaseException):
    """The process dying mid-send: not an Exception, so nothing may catch it."""


class CrashAfterSending:
    """Wraps a sender: the first `crashes` sends reach the provider, then the process dies."""

    def __init__(self, inner: Any, crashes: int = 1) -> None:
        self.inner = inner
        self.crashes = crashes
        self.calls = 0

    async def send_email(self, message: Message) -> str:
        reference: str = await self.inner.send_email(message)
        return self._maybe_crash(reference)

    async def send_sms(self, message: Message) -> str:
        reference: str = await self.inner.send_sms(message)
        return self._maybe_crash(reference)

    def _maybe_crash(self, reference: str) -> str:
        self.calls += 1
        if self.crashes > 0:
            self.crashes -= 1
            raise Crash
        return reference


class ScriptedSender:
    """Answers per recipient: an exception to raise, or a reference to return."""

    def __init__(self, answers: dict[str, BaseException | str]) -> None:
        self.answers = answers

    async def send_email(self, message: Message) -> str:
        answer = self.answers.get(message.to, f"ref-{message.key}")
        if isinstance(answer, BaseException):
            raise answer
        return answer

    send_sms = send_email
