"""`tidings simulate`: what a person reads, the files written, and the exit status."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tidings.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DEMO_MAPPING = ROOT / "mappings" / "rees46_demo.yaml"
ENV = {
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TIDINGS_WORKFLOWS_DIR": None,
    "TIDINGS_TEMPLATES_DIR": None,
    "TIDINGS_OUTBOX_DIR": None,
    "TIDINGS_MAIL_FROM": "Shop <shop@example.com>",
    "TIDINGS_PUBLIC_URL": "https://shop.example",
}
TEMPLATES = {
    "cart.email.html": (
        '---\nsubject: "Your cart {{ event.properties.cart_id }}"\n---\n'
        "<p>{{ event.properties['items'] | length }} item(s) wait for you.</p>\n"
    ),
}
CART = """
    id: cart
    name: Cart reminder
    trigger: {event: cart_updated}
    key: "{{ event.properties.cart_id }}"
    mode: restart
    exit:
      - event: order_completed
        if: "event.properties.cart_id == run.key"
        reason: bought
    steps:
      - wait: 1h
      - send_email: {template: cart}
"""
HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)
ROWS = [
    "2019-10-01 00:00:00 UTC,view,1,2053013555631882655,electronics.smartphone,apple,10.00,7,s1",
    "2019-10-01 00:00:05 UTC,cart,1,2053013555631882655,electronics.smartphone,apple,10.00,7,s1",
    "2019-10-01 00:10:00 UTC,cart,3,2053013555631882655,,,2.00,8,s2",
    "2019-10-01 00:20:00 UTC,purchase,3,2053013555631882655,,,2.00,8,s2",
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workflows and templates in a folder made the working folder."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "workflows").mkdir()
    for name, text in TEMPLATES.items():
        (tmp_path / "templates" / name).write_text(text, encoding="utf-8")
    (tmp_path / "workflows" / "cart.yaml").write_text(textwrap.dedent(CART), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def simulate(*args: str) -> Result:
    return CliRunner(env=ENV).invoke(app, ["simulate", *args])


def jsonl(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def event(name: str, date: str, **props: Any) -> str:
    return json.dumps(
        {
            "event_name": name,
            "identifiers": {"email_id": "ann@example.com"},
            "event_date": date,
            "event_properties": {"items": [{"product_id": 1}], **props},
        }
    )


def test_a_csv_replay_prints_each_workflow_and_writes_the_report_chart_and_messages(
    project: Path,
) -> None:
    (project / "log.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")

    result = simulate(
        "--events", "log.csv", "--mapping", str(DEMO_MAPPING), "--report", "out/report.json"
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "Simulation of log.csv",
        "  rows 4 · events 4 · refused 0 · skipped 0",
        "  events from 2019-10-01T00:00:00+00:00 to 2019-10-01T00:20:00+00:00;"
        " virtual time ran until 2019-10-01T01:00:05+00:00",
        "  replayed 4 · timers fired 1 · messages 1",
    ]
    assert lines[5:12] == [
        "cart · Cart reminder",
        "  runs started 2 · finished 1 · exited by goal 1 · still waiting 0",
        "  messages 1 (1 after the last event of the file)",
        "    step 1 send_email cart: 1",
        "  ✉ 2019-10-01T01:00:05+00:00 step 1 → user7@example.invalid",
        "      subject: Your cart s1",
        "      | 1 item(s) wait for you.",
    ]
    report = json.loads((project / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["workflows"][0]["outcomes"] == {"exited_goal": 1, "finished": 1}
    assert (project / "out" / "report.html").read_text(encoding="utf-8").count("<svg") == 2
    [eml] = (project / "outbox" / "simulate").glob("*.eml")
    assert b"To: user7@example.invalid" in eml.read_bytes()
    assert "replayed 4 events in" in result.stderr


def test_bad_rows_are_reported_by_line_counted_and_the_good_ones_still_replayed(
    project: Path,
) -> None:
    path = jsonl(
        project / "log.jsonl",
        [
            event("cart_updated", "2030-01-01T10:00:00Z", cart_id="K1"),
            "{oops",
            "[1, 2]",
            json.dumps({"event_name": "cart_updated", "identifiers": {"email_id": "a@b.c"}}),
            json.dumps(
                {
                    "event_name": "bad name!",
                    "identifiers": {"email_id": "a@b.c"},
                    "event_date": "2030-01-01T10:00:00Z",
                }
            ),
            json.dumps(
                {
                    "event_name": "x",
                    "identifiers": {"email_id": "not an address"},
                    "event_date": "2030-01-01T10:00:00Z",
                }
            ),
            json.dumps(
                {
                    "event_name": "x",
                    "identifiers": {"contact_id": "424242"},
                    "event_date": "2030-01-01T10:00:00Z",
                }
            ),
            json.dumps(
                {"event_name": "x", "identifiers": {"email_id": "a@b.c"}, "event_date": "yesterday"}
            ),
        ],
    )

    result = simulate("--events", path)

    assert result.exit_code == 1
    assert "  rows 8 · events 1 · refused 7 · skipped 0" in result.stdout
    refused = result.stdout.split("Refused rows (7; first 7)\n")[1].splitlines()
    assert [line.split(":")[0] for line in refused] == [f"  line {n}" for n in range(2, 9)]
    assert "malformed JSON" in refused[0] and "expected a JSON object" in refused[1]
    assert "event_date: is required to replay a log" in refused[2]
    assert "event_name" in refused[3] and "email_id" in refused[4]
    assert "identifiers.contact_id: no contact with id 424242" in refused[5]
    assert "event_date: expected an ISO 8601 date-time" in refused[6]
    assert "  replayed 1 · timers fired 1 · messages 1" in result.stdout


def test_a_line_that_is_not_utf8_is_refused_and_the_rest_replayed(project: Path) -> None:
    path = project / "log.jsonl"
    good = event("cart_updated", "2030-01-01T10:00:00Z", cart_id="K1")
    path.write_bytes(b'{"event_name": "caf\xe9"}\n' + good.encode() + b"\n")

    result = simulate("--events", str(path))

    assert result.exit_code == 1
    assert "  rows 2 · events 1 · refused 1 · skipped 0" in result.stdout
    refused = result.stdout.split("Refused rows (1; first 1)\n")[1].splitlines()
    assert refused[0] == "  line 1: not UTF-8 at byte 20 of the line (0xe9)"
    assert "  replayed 1 · timers fired 1 · messages 1" in result.stdout


def test_skipped_rows_are_counted_by_reason(project: Path) -> None:
    rows = [
        ROWS[0],
        ROWS[0].replace(",view,", ",wishlist,"),
        ROWS[1].replace(",cart,", ",wishlist,"),
    ]
    (project / "log.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")

    result = simulate("--events", "log.csv", "--mapping", str(DEMO_MAPPING))

    assert result.exit_code == 0, result.output
    assert "  rows 3 · events 1 · refused 0 · skipped 2" in result.stdout
    assert result.stdout.endswith("Skipped rows (2)\n       2  unmapped event 'wishlist'\n")


def test_a_csv_with_a_bom_and_crlf_reports_exactly_what_the_plain_file_reports(
    project: Path,
) -> None:
    plain = "\n".join([HEADER, *ROWS]) + "\n"
    (project / "a").mkdir()
    (project / "b").mkdir()
    (project / "a" / "log.csv").write_text(plain, encoding="utf-8")
    (project / "b" / "log.csv").write_bytes(b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode())

    first = simulate("--events", "a/log.csv", "--mapping", str(DEMO_MAPPING), "--report", "a.json")
    second = simulate("--events", "b/log.csv", "--mapping", str(DEMO_MAPPING), "--report", "b.json")

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert (project / "a.json").read_bytes() == (project / "b.json").read_bytes()
    assert first.stdout == second.stdout


def test_contact_prints_that_contacts_timeline(project: Path) -> None:
    (project / "log.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")

    result = simulate("--events", "log.csv", "--mapping", str(DEMO_MAPPING), "--contact", "8")

    assert result.exit_code == 0, result.output
    timeline = result.stdout.split("Timeline of contact ")[1].splitlines()
    assert timeline[0] == "2 (8)"
    kinds = [line.split()[1].rstrip(":") for line in timeline[1:]]
    assert kinds[:4] == ["event", "trigger_matched", "run_started", "wait"]
    assert "event" in kinds[4:] and "exited" in kinds
    assert "message" not in kinds


def test_until_stops_virtual_time_and_leaves_runs_waiting(project: Path) -> None:
    (project / "log.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")

    result = simulate(
        "--events", "log.csv", "--mapping", str(DEMO_MAPPING), "--until", "2019-10-01T00:30"
    )

    assert result.exit_code == 0, result.output
    assert "virtual time ran until 2019-10-01T00:30:00+00:00" in result.stdout
    assert "  runs started 2 · exited by goal 1 · still waiting 1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "missing.jsonl"], "no such file: missing.jsonl"),
        (["--events", "log.csv"], "a CSV file needs a column mapping"),
        (["--events", "log.csv", "--mapping", "nope.yaml"], "nope.yaml"),
        (["--events", "log.csv", "--mapping", str(DEMO_MAPPING), "--from", "soon"], "--from"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(
    project: Path, args: list[str], message: str
) -> None:
    (project / "log.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")

    result = simulate(*args)

    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_a_workflow_that_does_not_load_is_reported_and_the_others_still_run(
    project: Path,
) -> None:
    (project / "workflows" / "broken.yaml").write_text("id: broken\nsteps: []\n", encoding="utf-8")
    path = jsonl(
        project / "log.jsonl", [event("cart_updated", "2030-01-01T10:00:00Z", cart_id="K")]
    )

    result = simulate("--events", path)

    assert result.exit_code == 1
    assert "broken.yaml" in result.stderr
    assert "  replayed 1 · timers fired 1 · messages 1" in result.stdout


def test_purchase_rows_merged_into_one_order_are_counted_as_rows(project: Path) -> None:
    second = "2019-10-01 00:20:30 UTC,purchase,4,2053013555631882655,,,3.00,8,s2"
    (project / "log.csv").write_text("\n".join([HEADER, *ROWS, second]) + "\n", encoding="utf-8")

    result = simulate("--events", "log.csv", "--mapping", str(DEMO_MAPPING))

    assert result.exit_code == 0, result.output
    assert (
        "  rows 5 · events 4 · refused 0 · skipped 0 · 1 rows merged into other events"
        in result.stdout
    )


def test_contact_finds_the_datas_own_id_before_a_replay_contact_id(project: Path) -> None:
    # User 2 is seen first and becomes contact 1; user 1 becomes contact 2.
    rows = [ROWS[0].replace(",7,s1", ",2,s1"), ROWS[2].replace(",8,s2", ",1,s2")]
    (project / "log.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")

    result = simulate("--events", "log.csv", "--mapping", str(DEMO_MAPPING), "--contact", "1")

    assert result.exit_code == 0, result.output
    timeline = result.stdout.split("Timeline of contact ")[1].splitlines()
    assert timeline[0] == "2 (1)"
    assert (
        "cart_updated" in timeline[1] and "product_viewed" not in result.stdout.split("Timeline")[1]
    )
