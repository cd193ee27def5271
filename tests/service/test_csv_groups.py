"""Grouped CSV rows: when a merge group closes, and in which order closed groups come out."""

from __future__ import annotations

from pathlib import Path

from tidings.service.csv_mapping import load_mapping
from tidings.service.event_files import CsvReader, SourceRow

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "rees46.yaml"
HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)


def row(time: str, kind: str, product: int, user: int, session: str) -> str:
    return f"{time} UTC,{kind},{product},2053013555631882655,,acme,1.00,{user},{session}"


def read(*rows: str) -> list[SourceRow]:
    lines = "\n".join([HEADER, *rows]).splitlines(keepends=True)
    return list(CsvReader(load_mapping(MAPPING)).read(lines))


def orders(rows: list[SourceRow]) -> list[tuple[int, str, list[int]]]:
    return [
        (r.line, r.body["event_properties"]["order_id"], [i["product_id"] for i in r.body["event_properties"]["items"]])
        for r in rows
        if r.body is not None and r.body["event_name"] == "order_completed"
    ]  # fmt: skip


def test_orders_closed_by_one_row_come_out_by_first_line_not_by_first_time() -> None:
    rows = read(
        row("2019-10-01 00:02:00", "purchase", 1, 7, "s2"),  # line 2, the later order
        row("2019-10-01 00:00:00", "purchase", 2, 8, "s1"),  # line 3, the earlier one
        row("2019-10-01 00:10:00", "view", 3, 9, "s3"),  # closes both
    )
    assert [r.line for r in rows] == [2, 3, 4]
    assert orders(rows) == [
        (2, "s2-20191001T000200Z", [1]),
        (3, "s1-20191001T000000Z", [2]),
    ]


def test_an_order_stays_open_until_a_row_comes_more_than_within_after_its_first() -> None:
    rows = read(
        row("2019-10-01 00:00:00", "purchase", 1, 7, "s1"),
        row("2019-10-01 00:01:00", "purchase", 2, 8, "s2"),
        row("2019-10-01 00:05:00", "view", 3, 9, "s3"),  # exactly 5 minutes: s1 still open
        row("2019-10-01 00:05:00", "purchase", 4, 7, "s1"),  # so it joins s1
        row("2019-10-01 00:05:01", "view", 5, 9, "s3"),  # closes s1 only
        row("2019-10-01 00:06:01", "view", 6, 9, "s3"),  # closes s2
    )
    assert [r.line for r in rows] == [4, 2, 6, 3, 7]
    assert orders(rows) == [
        (2, "s1-20191001T000000Z", [1, 4]),
        (3, "s2-20191001T000100Z", [2]),
    ]


def test_a_session_orders_again_after_its_first_order_closed() -> None:
    rows = read(
        row("2019-10-01 00:00:00", "purchase", 1, 7, "s1"),
        row("2019-10-01 00:06:00", "purchase", 2, 7, "s1"),  # closes the first, opens a second
        row("2019-10-01 00:10:00", "purchase", 3, 7, "s1"),  # joins the second
    )
    assert orders(rows) == [
        (2, "s1-20191001T000000Z", [1]),
        (3, "s1-20191001T000600Z", [2, 3]),
    ]


def test_an_order_whose_window_ends_past_the_last_representable_time_closes_at_the_end() -> None:
    rows = read(
        row("9999-12-31 23:58:00", "purchase", 1, 7, "s1"),
        row("9999-12-31 23:59:59", "view", 2, 8, "s2"),
    )
    assert [r.line for r in rows] == [3, 2]
    assert orders(rows) == [(2, "s1-99991231T235800Z", [1])]
