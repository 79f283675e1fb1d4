"""uprobeme, the uprobes lab's workload, built and run for real (no tracer needed): the grader's contract
with it (labs/uprobes/checks.py reads these records; grader/agent.py holds and releases it)."""

import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = {"sync_ledger", "price_basket", "audit_trail", "ship_parcel"}


@pytest.fixture(scope="module")
def uprobeme(tmp_path_factory):
    if not shutil.which("cc"):
        pytest.fail("no C compiler: run scripts/setup-host")
    build = tmp_path_factory.mktemp("uprobeme")
    shutil.copytree(REPO / "labs" / "uprobes" / "workload", build / "w")
    proc = subprocess.run(["make", "-C", str(build / "w")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    return str(build / "w" / "uprobeme")


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run(uprobeme, tmp_path, *args, name="t.jsonl"):
    log = tmp_path / name
    proc = subprocess.run([uprobeme, "--truth-log", str(log), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    return records(log)


def test_bad_arguments_are_one_line_exit_2(uprobeme):
    for args in (["--count", "x"], ["--count", "0"], ["--seed", "-1"], ["--bogus"], ["--count"]):
        proc = subprocess.run([uprobeme, *args], capture_output=True, text=True, timeout=10)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)


def notices(proc, n, timeout=20):
    """The n next notice bytes on uprobeme's stdout (--notify-fd 1): start-up over, then loop over."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            chunk = os.read(proc.stdout.fileno(), 16)
            if not chunk:
                break
            got += chunk
    assert len(got) == n, got
    return got


def test_held_until_released_then_the_records_of_the_contract(uprobeme, tmp_path):
    log = tmp_path / "held.jsonl"
    proc = subprocess.Popen([uprobeme, "--truth-log", str(log), "--hold", "--count", "20", "--interval-ms", "5",
                             "--slow-calls", "3", "--seed", "7", "--linger-s", "30", "--notify-fd", "1"],
                            stdout=subprocess.PIPE)
    try:
        assert notices(proc, 1) == b"."                                      # start-up over, held
        time.sleep(0.5)
        # nothing written before the release, nor during the loop, nor while it lingers (issue 34: a uprobe on
        # libc's write() read every order id and price as it was logged): the log is written at exit
        assert log.read_bytes() == b""
        proc.send_signal(signal.SIGUSR1)
        assert notices(proc, 1) == b"."                                      # the loop is over
        assert proc.poll() is None and log.read_bytes() == b""               # lingers after its loop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    recs = records(log)
    start = recs[0]
    assert start["event"] == "start" and start["pid"] == proc.pid and set(start["jobs"]) == JOBS
    assert len(set(start["parsers"])) == 2
    kinds = Counter(r["event"] for r in recs)
    assert kinds["released"] == 1 and kinds["order"] == kinds["quote"] == kinds["job"] == 20 and kinds["exit"] == 1
    quotes = [r for r in recs if r["event"] == "quote"]
    slow = [q for q in quotes if q["slow"]]
    assert len(slow) == 3 and all(q["ns"] >= 30_000_000 for q in slow)
    assert all(q["ns"] < 30_000_000 for q in quotes if not q["slow"])
    # the sleep it asked for bounds a probe's measure from below, its own clock around the call from above
    assert all(30_000_000 <= q["delay_ns"] < 60_000_000 for q in slow)
    assert all(100_000 <= q["delay_ns"] < 400_000 for q in quotes if not q["slow"])
    assert all(q["delay_ns"] <= q["ns"] for q in quotes)
    parsers = set(start["parsers"])
    callers = Counter(r["job"] for r in recs if r["event"] == "strtol")
    assert set(callers) == parsers and all(callers[p] >= 1 for p in parsers)
    jobs = [r["job"] for r in recs if r["event"] == "job"]
    assert sum(1 for j in jobs if j in parsers) == sum(callers.values())
    orders = [r for r in recs if r["event"] == "order"]
    assert all(100000 <= o["order_id"] <= 999999 and 1 <= o["qty"] <= 9 and 1000 <= o["ret"] < 100000 for o in orders)
    assert '"event": "done"' in log.read_text()


def test_the_seed_decides_the_run(uprobeme, tmp_path):
    def draw(seed, name):
        recs = run(uprobeme, tmp_path, "--count", "12", "--interval-ms", "1", "--seed", str(seed), name=name)
        return ([(r["order_id"], r["ret"]) for r in recs if r["event"] == "order"],
                recs[0]["parsers"], [r["seq"] for r in recs if r["event"] == "quote" and r["slow"]])
    assert draw(5, "a") == draw(5, "b")
    assert draw(5, "a")[0] != draw(6, "c")[0]


def test_order_ids_are_distinct_within_a_run(uprobeme, tmp_path):
    """A map keyed by order id (u1, u2) must hold every call: 3000 draws from 900000 ids would repeat about
    five times if drawn independently."""
    recs = run(uprobeme, tmp_path, "--count", "3000", "--interval-ms", "0", "--slow-calls", "0", "--seed", "11")
    ids = [r["order_id"] for r in recs if r["event"] == "order"]
    assert len(ids) == 3000 and len(set(ids)) == 3000 and all(100000 <= v <= 999999 for v in ids)


def test_the_probed_functions_are_in_the_symbol_table(uprobeme):
    out = subprocess.run(["nm", uprobeme], capture_output=True, text=True, timeout=10).stdout
    defined = {line.split()[-1] for line in out.splitlines() if " T " in line}
    assert {"process_order", "fetch_quote", "parse_field"} | JOBS <= defined
    imported = subprocess.run(["nm", "-D", uprobeme], capture_output=True, text=True, timeout=10).stdout
    # the symbol the lab's strtol question probes (glibc 2.38+ would redirect a plain call to __isoc23_strtol)
    assert " strtol@" in imported and "isoc23" not in imported, imported
