"""The one exception tree of Tidings.

    TidingsError
    ├── ConfigError                 settings that cannot be used
    ├── DefinitionError             a workflow or template that does not validate
    │   └── (carries a list of Problem, each located to file:line:col)
    ├── TemplateError               a template failed to compile or render
    │   └── UndefinedVariableError  a variable the template needs is missing
    ├── ConditionError              a condition expression failed to compile or evaluate
    ├── EventError                  an event that cannot be accepted (names the field)
    │   └── BatchEventError         a batch with invalid items (index and reason of each)
    ├── StoreError                  the store refused or lost an operation
    └── DeliveryError               a message could not be delivered
        ├── TemporaryDeliveryError  try again later (4xx, connection refused, timeout)
        └── PermanentDeliveryError  never retry (5xx, address the server cannot take)

Control flow is not error handling: a false condition ends a run with an outcome, it never
raises. Only delivery errors are retried; configuration and template errors never are.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TidingsError(Exception):
    """Root of every error Tidings raises on purpose."""


class ConfigError(TidingsError):
    """Settings that cannot be used (bad URL, missing directory, conflicting options)."""


@dataclass(frozen=True, order=True)
class Location:
    """Where something is in a source file: 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        if self.column <= 0:  # no column known (e.g. a template error raised while rendering)
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One validation problem: where, the path inside the document, and what was wrong."""

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: {self.path}: " if self.path else f"{self.location}: "
        return where + self.message


@dataclass
class DefinitionError(TidingsError):
    """A workflow or template file that does not validate; lists every problem found."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class TemplateError(TidingsError):
    """A template failed to compile or render; the message names the template and line."""

    def __init__(self, message: str, *, template: str, line: int | None = None) -> None:
        self.template = template
        self.line = line
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message}")


class UndefinedVariableError(TemplateError):
    """A template used a variable that its context does not have."""

    def __init__(self, variable: str, *, template: str, line: int | None = None) -> None:
        self.variable = variable
        super().__init__(f"undefined variable {variable!r}", template=template, line=line)


class ConditionError(TidingsError):
    """A condition expression failed to compile or to evaluate."""

    def __init__(self, message: str, *, expression: str) -> None:
        self.expression = expression
        super().__init__(f"{message} (in condition {expression!r})")


class EventError(TidingsError):
    """An event that cannot be accepted; names the offending field and the reason."""

    def __init__(self, field_path: str, reason: str, *, code: str = "invalid_parameter") -> None:
        self.field = field_path
        self.reason = reason
        self.code = code
        super().__init__(f"{field_path}: {reason}" if field_path else reason)


class BatchEventError(EventError):
    """A batch refused whole because some items are invalid; lists each failing index."""

    def __init__(self, problems: list[tuple[int, EventError]]) -> None:
        self.problems = problems
        reasons = "; ".join(
            f"{self.item_path(index, error)}: {error.reason}" for index, error in problems
        )
        super().__init__("events", f"{len(problems)} invalid event(s): {reasons}")
        # Each reason already names its own path: do not prefix the message with `events: `.
        self.args = (f"{len(problems)} invalid event(s): {reasons}",)

    @staticmethod
    def item_path(index: int, error: EventError) -> str:
        """`events[3].identifiers.email_id`: where in the batch the problem is."""
        return f"events[{index}].{error.field}" if error.field else f"events[{index}]"


class StoreError(TidingsError):
    """The store could not carry out an operation."""


class DeliveryError(TidingsError):
    """A message could not be delivered."""


class TemporaryDeliveryError(DeliveryError):
    """Delivery failed for now; the outbox retries with backoff."""


class PermanentDeliveryError(DeliveryError):
    """Delivery can never succeed (e.g. 5xx reply); recorded and not retried."""
