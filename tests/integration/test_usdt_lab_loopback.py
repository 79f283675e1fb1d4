"""The USDT lab graded for real on this host (uprobes work here, and USDT probes are uprobes on their nops): real
sshd on loopback, the real agent, real usdtme and bpftrace 0.17, the grader's CLI.  The reference answers get full
marks; wrong answers (the other argument, counts instead of sums: tests/fixtures/scripts/usdt/wrong) get none.
One grading run of two hosts (about 27 s) and the text's examples (about 4 s each)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sshd_hosts import answers_folder

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "usdt"
CASES = REPO / "tests" / "fixtures" / "scripts" / "usdt"


def scripts_in(folder, prefix):
    """The .bt answers of a folder, pointed at this host's install tree instead of /opt/bpfhol."""
    return {p.name: p.read_text().replace("/opt/bpfhol/", str(prefix) + "/") for p in folder.glob("s*.bt")}


def test_usdt_references_full_marks_and_wrong_answers_none(tmp_path, farm, lab_prefix):
    prefix = lab_prefix["root"]
    host_a, host_b = farm.add(), farm.add()
    rows = [{"student": "ria", "host": "127.0.0.1", "port": host_a.port, "user": "root", "key": host_a.key,
             "agent": lab_prefix["agent"],
             "answers": answers_folder(tmp_path, "ria", scripts_in(LAB / "solutions", prefix))},
            {"student": "sam", "host": "127.0.0.1", "port": host_b.port, "user": "root", "key": host_b.key,
             "agent": lab_prefix["agent"],
             "answers": answers_folder(tmp_path, "sam", scripts_in(CASES / "wrong", prefix))}]
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": rows}))
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", "usdt", "--results",
                           str(results), "--parallel", "2", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    ria, sam = by["ria"], by["sam"]
    assert ria["status"] == "graded" and ria["score"] == ria["max_score"] == 7, \
        [(e["id"], e["reason"], e["feedback"]) for e in ria["exercises"]]
    assert ria["lab"] == "usdt" and ria["workload"]["orders"] >= 24 and ria["workload"]["released"]
    reasons = {e["id"]: e["reason"] for e in sam["exercises"]}
    assert sam["score"] == 0 and reasons == {"s1": "other_field", "s2": "wrong_sums"}, reasons


# What each example of the text prints when it works: 01 a restock with its item read by str(), 02 a linear
# histogram of the queue's depth (the probe fires only while its semaphore is raised: proof that attaching raised it).
EXAMPLE_SHOWS = {"01": r"usdtme pid \d+: restock (flour|lentils|olive_oil|rice) x \d+",
                 "02": r"@depth:\s*\n\[\d+, \d+\)\s+\d+ \|"}


@pytest.mark.parametrize("example", sorted(p.name for p in (LAB / "examples").glob("*.bt")))
def test_every_example_of_the_text_runs_and_shows_its_point(tmp_path, lab_prefix, example):
    """The text's examples against a running usdtme (as the menu starts it), with the real bpftrace, their
    10 s shortened to 2 s; about 4 s each."""
    binary = "%s/bin/usdtme" % lab_prefix["root"]
    script = tmp_path / example
    script.write_text((LAB / "examples" / example).read_text().replace("/opt/bpfhol/bin/usdtme", binary)
                      .replace("interval:s:10 {", "interval:s:2 {"))
    workload = subprocess.Popen([binary, "--interval-ms", "50"])
    try:
        proc = subprocess.run(["bpftrace", str(script)], capture_output=True, text=True, timeout=120)
    finally:
        workload.terminate()
        workload.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert re.search(EXAMPLE_SHOWS[example[:2]], proc.stdout), proc.stdout[-2000:]
