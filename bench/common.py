"""What every benchmark shares: the machine line, the command line, medians and percentiles,
free loopback ports, a daemon in a subprocess, and watching a process's CPU and memory.

Benchmarks are not tests: they print figures, they assert nothing about time. Every figure
printed is measured in the run that prints it; nothing here is estimated or hard-coded.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "rees46_multicategory_2019-10-01_head.csv"
SAMPLE_SHOWN = "../shared/data/rees46_multicategory_2019-10-01_head.csv"
HOST = "127.0.0.1"  # loopback only: nothing here ever talks to another address
API_KEY = "bench-api-key-0123456789abcdef"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- what ran, where


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cores() -> int:
    """Processors this process may run on."""
    return len(os.sched_getaffinity(0))


def machine_line() -> str:
    """One line naming the machine the figures come from."""
    return (
        f"machine: {cores()} cores ({cpu_model()}), Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def command_line() -> str:
    """The exact command that produced the figures (as the shell would take it back)."""
    argv = list(sys.orig_argv)
    exe = Path(argv[0])
    with contextlib.suppress(ValueError):
        argv[0] = str(exe.resolve().relative_to(REPO)) if exe.is_absolute() else argv[0]
    return " ".join(shlex.quote(a) for a in argv)


def load_line() -> str:
    """The machine's load averages: other work on the machine slows every figure down."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"load average (1/5/15 min): {one} {five} {fifteen} on {os.cpu_count()} cores"


def code_line() -> str:
    """Which code is measured: the commit, and whether the working tree's src/ differs."""
    import tidings

    where = Path(tidings.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
    except OSError:
        return f"code: tidings from {where}"
    if where != REPO / "src":
        return f"code: tidings from {where} (an export, e.g. `git archive`; the repository is at {commit})"
    state = f"with {len(dirty)} uncommitted file(s) in src/" if dirty else "clean"
    return f"code: commit {commit}, src/ {state}"


def header(title: str) -> None:
    """Print what the figures below are, where they come from and how to get them again."""
    print(f"== {title}")
    print(machine_line())
    print(code_line())
    print(f"command: {command_line()}")
    print(flush=True)


# ---------------------------------------------------------------- figures


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile by nearest rank (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: Sequence[float], unit: str = "", fmt: str = ",.0f") -> str:
    """`median (min..max, n runs)` for a set of runs."""
    if not values:
        return "-"
    return (
        f"{format(median(values), fmt)}{unit} (min {format(min(values), fmt)},"
        f" max {format(max(values), fmt)}, {len(values)} runs)"
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, first row the header."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system) and resident memory of one process, from /proc."""

    cpu_s: float
    rss_bytes: int
    peak_rss_bytes: int


def usage(pid: int) -> Usage:
    """A process's CPU time so far (all its threads), current and peak resident memory."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return Usage(cpu, rss, peak)


def mib(n_bytes: float) -> str:
    """Bytes as MiB, one decimal."""
    return f"{n_bytes / 1_048_576:,.1f} MiB"


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET (None when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll until `condition()` is truthy; bounded, so a broken run stops by itself."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.005)


@dataclass
class Server:
    """A server process on loopback (the daemon, or the bench's own ingestion app)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float  # monotonic, just before the process was started
    ready_s: float = 0.0  # from start until the readiness URL answered 200

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def usage(self) -> Usage:
        return usage(self.proc.pid)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for a graceful stop (SIGKILL after `timeout`); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log: Path,
    ready_path: str = "/ready",
    timeout: float = 120.0,
) -> Server:
    """Start a server and return once `ready_path` answers 200 (the time it took is kept)."""
    full_env = {**os.environ, **env}
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    server = Server(proc, port, log, started)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n{tail(log)}")
        return http_status(f"{server.url}{ready_path}") == 200

    wait_for(ready, f"{server.url}{ready_path}", timeout)
    server.ready_s = time.monotonic() - started
    return server


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def daemon_env(folder: Path, **extra: str) -> dict[str, str]:
    """`TIDINGS_*` settings for a daemon whose every file lives in `folder`."""
    env = {
        "TIDINGS_DATABASE_URL": f"sqlite:///{folder / 'tidings.db'}",
        "TIDINGS_API_KEYS": API_KEY,
        "TIDINGS_WORKFLOWS_DIR": str(folder / "workflows"),
        "TIDINGS_TEMPLATES_DIR": str(folder / "templates"),
        "TIDINGS_OUTBOX_DIR": str(folder / "outbox"),
        "TIDINGS_LOG_LEVEL": "WARNING",
        "TIDINGS_SECRET_KEY": "bench-secret",
    }
    env.update(extra)
    return env


def start_daemon(folder: Path, port: int, env: Mapping[str, str], timeout: float = 120.0) -> Server:
    """`python -m tidings run` on loopback, ready once `/ready` answers 200."""
    (folder / "workflows").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tidings", "run", "--host", HOST, "--port", str(port)]
    return start_server(argv, port=port, env=env, log=folder / "daemon.log", timeout=timeout)


@dataclass
class Sampler:
    """Samples a process's resident memory in a thread; keeps the largest seen."""

    pid: int
    every_s: float = 0.05
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.peak_rss = max(self.peak_rss, usage(self.pid).rss_bytes)
            self._stop.wait(self.every_s)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` ... then `t[0]` is the block's wall seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def run_child(argv: Sequence[str], **kwargs: Any) -> tuple[int, str, float]:
    """Run a command to its end: exit code, what it printed, and its CPU seconds (user +
    system, the kernel's accounting of the reaped child)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, rusage.ru_utime + rusage.ru_stime


def count_rows(db: Path, sql: str) -> int:
    """One integer from a read-only query on a SQLite file (a reader never blocks WAL)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return int(conn.execute(sql).fetchone()[0])


@dataclass
class Sink:
    """The benchmarks' SMTP server (bench.smtp_sink) in its own process."""

    proc: subprocess.Popen[str]
    port: int
    out: Path

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def received(self) -> list[tuple[float, str, int]]:
        """(monotonic time, recipient, connection number) of every message so far."""
        rows = []
        with contextlib.suppress(FileNotFoundError), self.out.open(encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3 and line.endswith("\n"):
                    rows.append((float(parts[0]), parts[1], int(parts[2])))
        return rows

    def count(self) -> int:
        """How many messages arrived so far (complete lines)."""
        with contextlib.suppress(FileNotFoundError), self.out.open("rb") as handle:
            return handle.read().count(b"\n")
        return 0

    def usage(self) -> Usage:
        return usage(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sink(folder: Path) -> Sink:
    """An SMTP server on a free loopback port, recording into `folder/received.txt`."""
    port = free_port()
    out = folder / "received.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.smtp_sink", "--port", str(port), "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"SMTP sink did not start: {line!r}")
    return Sink(proc, port, out)
