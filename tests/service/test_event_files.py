"""Reading event files: JSONL, CSV through a mapping, grouping, BOM/CRLF, and refused rows."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tidings.errors import ConfigError
from tidings.service.csv_mapping import load_mapping
from tidings.service.event_files import CsvReader, SourceRow, open_text, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
REES46 = ROOT.parent / "shared" / "data" / "rees46_multicategory_2019-10-01_head.csv"
MAPPING = ROOT / "mappings" / "rees46.yaml"

HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)
ROWS = [
    "2019-10-01 00:00:00 UTC,view,1,2053013555631882655,electronics.smartphone,apple,10.00,7,s1",
    "2019-10-01 00:00:05 UTC,cart,1,2053013555631882655,electronics.smartphone,apple,10.00,7,s1",
    "2019-10-01 00:00:09 UTC,cart,2,2053013555631882655,,,5.50,7,s1",
    "2019-10-01 00:01:00 UTC,purchase,1,2053013555631882655,electronics.smartphone,apple,10.00,7,s1",
    "2019-10-01 00:01:02 UTC,purchase,2,2053013555631882655,,,5.50,7,s1",
    "2019-10-01 00:30:00 UTC,view,3,2053013555631882655,,,1.00,8,s2",
]


def read_csv(text: str) -> list[SourceRow]:
    return list(CsvReader(load_mapping(MAPPING)).read(text.splitlines(keepends=True)))


def bodies(rows: list[SourceRow]) -> list[dict]:
    return [r.body for r in rows if r.body is not None]


def test_cart_rows_accumulate_into_the_cart_as_it_stands() -> None:
    carts = [
        b for b in bodies(read_csv("\n".join([HEADER, *ROWS]))) if b["event_name"] == "cart_updated"
    ]
    assert [len(c["event_properties"]["items"]) for c in carts] == [1, 2]
    assert carts[1]["event_properties"]["total"] == 15.5
    assert carts[1]["event_properties"]["cart_id"] == "s1"
    assert carts[1]["identifiers"] == {"ext_id": "7"}


def test_purchase_rows_of_one_session_merge_into_one_order() -> None:
    orders = [
        b
        for b in bodies(read_csv("\n".join([HEADER, *ROWS])))
        if b["event_name"] == "order_completed"
    ]
    assert len(orders) == 1
    order = orders[0]["event_properties"]
    assert [i["product_id"] for i in order["items"]] == [1, 2]
    assert order["total"] == 15.5
    assert orders[0]["event_date"] == "2019-10-01T00:01:02+00:00"  # dated at its last row


def test_each_order_of_a_session_has_its_own_id_from_its_first_row_time() -> None:
    later = [  # the same session buys again 10 minutes later: a second order
        "2019-10-01 00:11:00 UTC,purchase,3,2053013555631882655,,,2.00,7,s1",
        "2019-10-01 00:12:00 UTC,purchase,4,2053013555631882655,,,3.00,7,s1",
    ]
    orders = [
        b["event_properties"]
        for b in bodies(read_csv("\n".join([HEADER, *ROWS, *later])))
        if b["event_name"] == "order_completed"
    ]
    assert [(o["order_id"], o["total"]) for o in orders] == [
        ("s1-20191001T000100Z", 15.5),
        ("s1-20191001T001100Z", 5.0),
    ]
    assert [o["cart_id"] for o in orders] == ["s1", "s1"]  # still the cart they came from


def test_a_removed_item_leaves_the_cart() -> None:
    rows = [
        "2019-10-01 00:00:01 UTC,cart,1,2053013555631882655,,acme,80.00,7,s1",
        "2019-10-01 00:00:02 UTC,cart,2,2053013555631882655,,acme,20.00,7,s1",
        "2019-10-01 00:00:03 UTC,cart,3,2053013555631882655,,acme,20.00,7,s1",
        "2019-10-01 00:00:04 UTC,remove_from_cart,3,2053013555631882655,,acme,20.00,7,s1",
        "2019-10-01 00:00:05 UTC,remove_from_cart,9,2053013555631882655,,acme,5.00,7,s1",
        "2019-10-01 00:00:06 UTC,remove_from_cart,1,2053013555631882655,,acme,80.00,7,s1",
        "2019-10-01 00:00:07 UTC,remove_from_cart,2,2053013555631882655,,acme,20.00,7,s1",
    ]
    carts = [b["event_properties"] for b in bodies(read_csv("\n".join([HEADER, *rows])))]
    assert [([i["product_id"] for i in c["items"]], c["total"]) for c in carts] == [
        ([1], 80),
        ([1, 2], 100),
        ([1, 2, 3], 120),
        ([1, 2], 100),  # product 3 is out again
        ([1, 2], 100),  # removing what is not in the cart changes nothing
        ([2], 20),
        ([], 0),  # emptied
    ]


@pytest.mark.parametrize(
    ("group", "reason"),
    [
        ("{event: e, how: accumulate, by: [s], id_property: x}", "'id_property' needs how: merge"),
        ("{event: e, how: merge, by: [s], item_properties: [p], remove: {names: [r], match: [p]}}",
         "'remove' needs how: accumulate"),
        ("{event: e, how: accumulate, by: [s], item_properties: [p], remove: {names: [r], match: [q]}}",
         "remove.match: not in item_properties: q"),
        ("{event: e, how: accumulate, by: [s], item_properties: [p], remove: {names: [x], match: [p]}}",
         "remove.names: 'x' must be mapped to 'e' in event.names"),
    ],
)  # fmt: skip
def test_grouping_options_that_cannot_apply_are_refused(
    tmp_path: Path, group: str, reason: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "time: {column: t}\nevent: {column: n, names: {a: e, r: e}}\n"
        f"contact: {{column: u}}\ngroups:\n  - {group}\n"
    )
    with pytest.raises(ConfigError, match=re.escape(reason)):
        load_mapping(path)


def test_category_ids_stay_exact_text_and_empty_cells_are_omitted() -> None:
    view = bodies(read_csv("\n".join([HEADER, ROWS[5]])))[0]["event_properties"]
    assert view["category_id"] == "2053013555631882655"
    assert "brand" not in view and "category" not in view
    assert view["name"] == "Item"


def test_bom_and_crlf_read_the_same_as_plain_text(tmp_path: Path) -> None:
    plain = "\n".join([HEADER, *ROWS]) + "\n"
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode())
    with open_text(path) as handle:
        from_file = list(CsvReader(load_mapping(MAPPING)).read(handle))
    assert bodies(from_file) == bodies(read_csv(plain))
    assert [r.event_id for r in from_file] == [r.event_id for r in read_csv(plain)]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("yesterday,view,1,2,,,1.00,7,s", "event_time: time data 'yesterday' does not match"),
        ("2019-10-01 00:00:00 UTC,view,x,2,,,1.00,7,s", "product_id: invalid literal for int()"),
        ("2019-10-01 00:00:00 UTC,view,1,2,,,abc,7,s", "price: expected a decimal number"),
        ("2019-10-01 00:00:00 UTC,view,1,2,,,1.00,,s", "empty contact identifier"),
        ("2019-10-01 00:00:00 UTC,view,1,2,,,1.00,7,s,extra", "1 more cell(s) than the header"),
        ("2019-10-01 00:00:00 UTC,view,1,2", "4 cell(s), the header has 9"),
    ],
)
def test_a_bad_row_is_reported_with_its_line_and_reason_and_the_rest_still_read(
    row: str, reason: str
) -> None:
    rows = read_csv("\n".join([HEADER, row, ROWS[0]]))
    assert rows[0].line == 2 and rows[0].body is None
    assert reason in (rows[0].error or "")
    assert bodies(rows)[0]["event_name"] == "product_viewed"


def test_a_short_row_says_how_many_cells_it_has_not_which_cell_is_empty() -> None:
    rows = read_csv("\n".join([HEADER, "2019-10-01 00:00:00 UTC,view,1,2"]))
    assert rows == [SourceRow(2, error="4 cell(s), the header has 9")]


def test_a_line_that_is_not_utf8_is_refused_and_the_rest_still_read(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    bad = b"2019-10-01 00:00:00 UTC,view,1,2,,caf\xe9,1.00,7,s"
    path.write_bytes(
        b"\xef\xbb\xbf" + b"\r\n".join([HEADER.encode(), ROWS[0].encode(), bad, ROWS[5].encode()])
    )
    with open_text(path) as handle:
        rows = list(CsvReader(load_mapping(MAPPING)).read(handle))
    assert [(r.line, r.error) for r in rows if r.body is None] == [
        (3, "not UTF-8 at byte 38 of the line (0xe9)")
    ]
    assert [(r.line, r.body["identifiers"]) for r in rows if r.body is not None] == [
        (2, {"ext_id": "7"}),
        (4, {"ext_id": "8"}),
    ]


def test_a_header_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"event_time,\xff\n" + ROWS[0].encode())
    with open_text(path) as handle:
        rows = list(CsvReader(load_mapping(MAPPING)).read(handle))
    assert rows == [SourceRow(1, error="header: not UTF-8 at byte 12 of the line (0xff)")]


def test_a_jsonl_line_that_is_not_utf8_is_refused_and_the_rest_still_read(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"event_name": "a"}\n{"event_name": "caf\xc3"}\n{"event_name": "b"}\n')
    with open_text(path) as handle:
        rows = list(read_jsonl(handle))
    assert rows == [
        SourceRow(1, body={"event_name": "a"}),
        SourceRow(2, error="not UTF-8 at byte 20 of the line (0xc3)"),
        SourceRow(3, body={"event_name": "b"}),
    ]


def test_unmapped_event_names_are_skipped_and_counted_not_dropped_silently() -> None:
    rows = read_csv("\n".join([HEADER, ROWS[0].replace(",view,", ",wishlist,")]))
    assert rows == [SourceRow(2, skipped=True, error="unmapped event 'wishlist'")]


def test_a_file_missing_a_mapped_column_says_which() -> None:
    rows = read_csv("event_time,event_type\n2019-10-01 00:00:00 UTC,view\n")
    assert rows[0].error is not None and "missing column(s): brand, category_code" in rows[0].error


def test_a_broken_mapping_names_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("time: {column: t}\nevent: {column: e}\ncontact: {colum: u}\n")
    with pytest.raises(ConfigError, match=r"m.yaml: contact.column: Field required"):
        load_mapping(bad)


def test_jsonl_lines_become_bodies_and_bad_lines_are_reported() -> None:
    rows = list(read_jsonl(['{"event_name": "a"}\n', "\n", "{oops\n", "[1]\n"]))
    assert rows[0] == SourceRow(1, body={"event_name": "a"})
    assert rows[1].line == 3 and "malformed JSON" in (rows[1].error or "")
    assert rows[2].line == 4 and rows[2].error == "expected a JSON object, found list"


def test_the_rees46_sample_reads_whole_with_counts_matching_the_raw_rows() -> None:
    with open_text(REES46) as handle:
        rows = list(CsvReader(load_mapping(MAPPING)).read(handle))
    with REES46.open(encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    # Independent count of orders: purchase rows grouped by (user, session), split when a row
    # comes more than 5 minutes after the first row of its group.
    starts: dict[tuple[str, str], list[str]] = defaultdict(list)
    orders = 0
    for r in raw:
        if r["event_type"] != "purchase":
            continue
        key = (r["user_id"], r["user_session"])
        if not starts[key] or _seconds(r["event_time"]) - _seconds(starts[key][-1]) > 300:
            starts[key].append(r["event_time"])
            orders += 1
    counts = Counter(b["event_name"] for b in bodies(rows))
    assert not [r for r in rows if r.error]
    assert counts == {
        "product_viewed": sum(r["event_type"] == "view" for r in raw),
        "cart_updated": sum(r["event_type"] == "cart" for r in raw),
        "order_completed": orders,
    }


def _seconds(stamp: str) -> int:
    hours, minutes, seconds = stamp.split(" ")[1].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def test_rows_sharing_a_time_cell_and_a_bad_time_repeated_are_each_read_on_their_own() -> None:
    rows = read_csv(
        "\n".join(
            [
                HEADER,
                "2019-10-01 00:00:01 UTC,view,1,2053013555631882655,,,1.00,7,s1",
                "2019-10-01 00:00:01 UTC,view,2,2053013555631882655,,,1.00,8,s2",
                "yesterday,view,3,2053013555631882655,,,1.00,7,s1",
                "yesterday,view,4,2053013555631882655,,,1.00,7,s1",
                "2019-10-01 00:00:02 UTC,view,5,2053013555631882655,,,1.00,7,s1",
            ]
        )
    )
    assert [(r.line, r.body["event_date"] if r.body else r.error) for r in rows] == [
        (2, "2019-10-01T00:00:01+00:00"),
        (3, "2019-10-01T00:00:01+00:00"),
        (4, "event_time: time data 'yesterday' does not match format '%Y-%m-%d %H:%M:%S UTC'"),
        (5, "event_time: time data 'yesterday' does not match format '%Y-%m-%d %H:%M:%S UTC'"),
        (6, "2019-10-01T00:00:02+00:00"),
    ]
