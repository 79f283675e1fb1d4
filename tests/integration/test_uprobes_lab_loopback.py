"""The uprobes lab graded for real on this host (its kernel has uprobes, not kprobes): real sshd on loopback,
the real agent, real uprobeme and bpftrace, the grader's CLI.  The reference answers get full marks, and
answers that do not watch the run (last run's numbers, the other field, the wrong probe) get none."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sshd_hosts import answers_folder

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "uprobes"


def scripts_for(prefix, overrides=None):
    """The lab's reference answers, pointed at this host's install tree instead of /opt/bpfhol."""
    out = {p.name: p.read_text().replace("/opt/bpfhol/", str(prefix) + "/") for p in (LAB / "solutions").glob("u*.bt")}
    out.update(overrides or {})
    return out




def test_uprobes_references_full_marks_and_guesses_none(tmp_path, farm, lab_prefix):
    prefix = lab_prefix["root"]
    binary = "%s/bin/uprobeme" % prefix
    wrong = {
        # the other field: prices for u1, order ids for u2
        "u1.bt": "uretprobe:%s:process_order { printf(\"%%d\\n\", retval); }\n" % binary,
        "u2.bt": "uprobe:%s:process_order { printf(\"%%d\\n\", arg0); }\n" % binary,
        # a made-up histogram: one fast and one slow call
        "u3.bt": "uprobe:%s:fetch_quote { @c = count(); } END { @h = hist(200); @h = hist(40000); }\n" % binary,
        # the stacks of the jobs instead of strtol's callers: every job is credited
        "u4.bt": "uprobe:%s:sync_ledger,uprobe:%s:price_basket,uprobe:%s:audit_trail,uprobe:%s:ship_parcel "
                 "{ @[ustack] = count(); }\n" % (binary, binary, binary, binary),
    }
    host_a, host_b = farm.add(), farm.add()
    rows = [{"student": "uma", "host": "127.0.0.1", "port": host_a.port, "user": "root", "key": host_a.key,
             "agent": lab_prefix["agent"], "answers": answers_folder(tmp_path, "uma", scripts_for(prefix))},
            {"student": "vic", "host": "127.0.0.1", "port": host_b.port, "user": "root", "key": host_b.key,
             "agent": lab_prefix["agent"], "answers": answers_folder(tmp_path, "vic", wrong)}]
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": rows}))
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", "uprobes", "--results",
                           str(results), "--parallel", "1", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    uma, vic = by["uma"], by["vic"]
    assert uma["status"] == "graded" and uma["score"] == uma["max_score"] == 13, \
        [(e["id"], e["reason"], e["feedback"]) for e in uma["exercises"]]
    assert uma["lab"] == "uprobes" and uma["workload"]["orders"] >= 24 and uma["workload"]["released"]
    reasons = {e["id"]: e["reason"] for e in vic["exercises"]}
    assert vic["score"] == 0, reasons
    assert reasons["u1"] == "other_field" and reasons["u2"] == "other_field"
    assert reasons["u3"] in ("wrong_total", "wrong_split") and reasons["u4"] in ("non_parser", "wrong_counts")
    # The evidence names the run's truth for an audit: uprobeme's own records.
    [path] = results.glob("students/*/%s" % Path(uma["evidence"]).name)
    evidence = json.loads(path.read_text())
    assert evidence["lab"]["name"] == "uprobes"
    assert any('"event": "strtol"' in line for line in evidence["reply"]["workload"]["truth"])
    # And a re-judge from that evidence alone changes nothing.
    again = subprocess.run([sys.executable, "-m", "grader", "report", "--results", str(results), "--rejudge"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 verdicts changed" in again.stderr, again.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in (LAB / "examples").glob("*.bt")))
def test_every_example_of_the_text_runs_and_ends_itself(tmp_path, lab_prefix, example):
    """The text's examples, against a running uprobeme (the menu's copy runs it without arguments), with the
    real bpftrace; each ends itself (interval probe) and prints what its section says."""
    binary = "%s/bin/uprobeme" % lab_prefix["root"]
    script = tmp_path / example
    script.write_text((LAB / "examples" / example).read_text().replace("/opt/bpfhol/bin/uprobeme", binary))
    workload = subprocess.Popen([binary, "--interval-ms", "50"])
    try:
        proc = subprocess.run(["bpftrace", str(script)], capture_output=True, text=True, timeout=120)
    finally:
        workload.terminate()
        workload.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    expect = {"01": "order ", "02": " -> ", "03": "@usecs", "04": "strto"}[example[:2]]
    assert expect in proc.stdout, proc.stdout[-2000:]
    if example.startswith("04"):
        assert any(job in proc.stdout for job in ("sync_ledger", "price_basket", "audit_trail", "ship_parcel"))
