"""The bundled browse-abandonment workflow over every store: views of the run's product count.

Given a contact's product views logged as ingestion logs them, when the engine applies them and
the 30-minute wait ends, then the email goes only when THAT product was viewed three times in
the day without a cart: views of other products do not add up to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tidings.adapters.clock import ManualClock
from tidings.engine.core import Environment
from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.runs import Outcome
from tidings.ports import Store
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)  # a Monday morning: outside quiet hours
LAPTOP, HEATER = 1307067, 3900821


@pytest.fixture
def replay(store: Store, tmp_path: Path) -> Callable[[list[tuple[int, int]]], list[str]]:
    """Log (minutes after T0, product_id) views for one contact, run the engine an hour on,
    and return the subjects of the emails it queued."""

    def _replay(views: list[tuple[int, int]]) -> list[str]:
        workflows = tmp_path / "workflows"
        workflows.mkdir()
        shutil.copy(ROOT / "workflows" / "browse_abandonment.yaml", workflows)
        registry, outcome = WorkflowRegistry.from_directory(workflows, ROOT / "templates")
        assert outcome.problems == [], [str(p) for p in outcome.problems]
        registry.record_versions(store)
        clock = ManualClock(T0)
        env = Environment(
            templates=registry.catalog,
            mail_from="Shop <shop@example.com>",
            sms_sender="Shop",
            unsubscribe_url=lambda cid, ch: f"https://shop.test/u/{cid}/{ch}",
        )
        processor = Processor(store, registry, env, clock)
        with store.transaction() as uow:
            uow.save_contact(
                Contact(
                    id="c1",
                    identifiers={IdentifierKind.email_id: "noah@example.com"},
                    attributes={"FIRSTNAME": "Noah"},
                    created_at=T0,
                    updated_at=T0,
                )
            )
        for number, (minutes, product_id) in enumerate(views):
            clock.set(T0 + timedelta(minutes=minutes))
            with store.transaction() as uow:
                uow.add_event(_view(f"e{number}", clock.now(), product_id))
            processor.run_until_idle()
        clock.set(clock.now() + timedelta(hours=1))
        processor.run_until_idle()
        with store.transaction() as uow:
            runs = uow.runs_for_contact("c1", active_only=False)
            assert all(run.outcome is Outcome.finished for run in runs)
            return [m.subject or "" for m in uow.messages_for_contact("c1")]

    return _replay


def _view(event_id: str, at: datetime, product_id: int) -> Event:
    properties: dict[str, Any] = {
        "product_id": product_id,
        "name": {LAPTOP: "Lenovo IdeaPad notebook", HEATER: "Aqua water heater"}[product_id],
        "brand": "lenovo",
        "price": 251.74,
        "currency": "EUR",
    }
    return Event(
        id=event_id,
        name="product_viewed",
        identifiers={IdentifierKind.email_id: "noah@example.com"},
        occurred_at=at,
        received_at=at,
        properties=properties,
        contact_id="c1",
    )


def test_three_views_of_the_same_product_send_the_email(replay: Callable[..., list[str]]) -> None:
    subjects = replay([(-120, LAPTOP), (-60, LAPTOP), (0, LAPTOP)])

    assert subjects == ["Still thinking about the Lenovo IdeaPad notebook?"]


def test_views_of_other_products_do_not_count_towards_this_one(
    replay: Callable[..., list[str]],
) -> None:
    # Three views in the day, but of two products: neither was viewed "several times".
    subjects = replay([(-120, HEATER), (-60, LAPTOP), (0, LAPTOP)])

    assert subjects == []
