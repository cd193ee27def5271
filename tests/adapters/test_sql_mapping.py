"""Rows to domain objects: a row's values in a plain dict (SQLite's driver reads) give the same
run as any other mapping of them (SQLAlchemy's rows), and the same refusals."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType
from typing import Any

import pytest

from support.messages import T0
from support.records import make_contact, make_run
from tidings.adapters.sql import mapping
from tidings.model.contacts import Channel
from tidings.model.runs import Outcome, RunStatus

RUNS = [
    make_run(1),
    make_run(2, status=RunStatus.queued, vars={"wait_started_at": "x", "n": [1, {"a": None}]}),
    make_run(
        3,
        status=RunStatus.finished,
        outcome=Outcome.exited_goal,
        reason="goal reached: order_completed",
        due_at=None,
        finished_at=T0 + timedelta(hours=2),
        waiting_for=("order_completed", "cart_updated"),
        seq=4,
    ),
]


@pytest.mark.parametrize("run", RUNS, ids=["waiting", "queued", "finished"])
def test_a_run_read_from_a_dict_is_the_run_read_from_any_mapping(run: Any) -> None:
    values = mapping.run_values(run)
    values["waiting_for"] = list(values["waiting_for"])  # as JSON gives it back
    from_dict = mapping.run_from_row(dict(values))
    assert from_dict == mapping.run_from_row(MappingProxyType(values)) == run
    assert type(from_dict.status) is RunStatus and type(from_dict.waiting_for) is tuple


@pytest.mark.parametrize("column", ["status", "outcome"])
def test_a_run_row_of_an_unknown_state_is_refused_from_either(column: str) -> None:
    values = {**mapping.run_values(RUNS[2]), column: "paused"}
    for row in (dict(values), MappingProxyType(values)):
        with pytest.raises(ValueError, match="paused"):
            mapping.run_from_row(row)


def test_a_contact_s_unsubscribed_channels_read_back_as_a_set() -> None:
    contact = make_contact(unsubscribed=frozenset({Channel.sms, Channel.email}))
    values = mapping.contact_values(contact)
    read = mapping.contact_from_row(values, {"email_id": "user1@example.org"})
    assert read.unsubscribed == contact.unsubscribed
    assert all(type(channel) is Channel for channel in read.unsubscribed)
