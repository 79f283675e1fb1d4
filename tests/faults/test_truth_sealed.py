"""Issue 34, item 3: a script learns the answer only by tracing the workload.

Reproduction: a uprobe on libc's write() (and the write syscall's tracepoint: this host has no kprobes, so no
vfs_write) printed every truth record uprobeme logged during the window: 13/13 without a probe on
process_order, fetch_quote or strtol.  The agent also re-read the log during the window (its "done" record),
so a script watching the agent's opens and reads saw the log's path and the start record (the seed, the
parsers).  Now the workloads keep their records in memory and write them at exit, after every script has
stopped, and the agent learns start-up and the loop's end from one contentless byte each on a pipe.

Graded for real over loopback sshd with the uprobes lab, the real agent, uprobeme and bpftrace."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sshd_hosts import answers_folder

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]

# What the workload writes, what the agent opens: printed with a tag, so the test can tell which probe saw it.
ORACLE = r"""
uprobe:libc:write /comm == "uprobeme"/ { printf("W %s\n", str(arg1, 64)); }
tracepoint:syscalls:sys_enter_write /comm == "uprobeme"/ { printf("T %s\n", str(args->buf, 64)); }
tracepoint:syscalls:sys_enter_openat /comm == "bpfhol-agent" || comm == "python3"/ {
  printf("O %s\n", str(args->filename)); }
"""


def _grade(tmp_path, farm, lab_prefix, scripts):
    host = farm.add()
    row = {"student": "oracle", "host": "127.0.0.1", "port": host.port, "user": "root", "key": host.key,
           "agent": lab_prefix["agent"], "answers": answers_folder(tmp_path, "oracle", scripts)}
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": [row]}))
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", "uprobes", "--results",
                           str(results), "--parallel", "1", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    [rec] = [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines()]
    [path] = results.glob("students/*/%s" % Path(rec["evidence"]).name)
    return proc, rec, json.loads(path.read_text())


def test_a_probe_on_write_reads_no_answer(tmp_path, farm, lab_prefix):
    scripts = {"u%d.bt" % i: ORACLE for i in (1, 2, 3, 4)}
    proc, rec, evidence = _grade(tmp_path, farm, lab_prefix, scripts)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rec["status"] == "graded", rec.get("error")
    reply = evidence["reply"]
    truth = [json.loads(line) for line in reply["workload"]["truth"]]
    orders = [r for r in truth if r["event"] == "order"]
    assert len(orders) >= 24                                   # the log is whole, written after the scripts
    assert [r["event"] for r in truth][:2] == ["start", "released"] and truth[-1]["event"] == "exit"
    for item in reply["scripts"]:
        assert item["status"] == "ran" and item["attached"], item["stderr"][-500:]
        text = "".join(json.loads(line).get("data", "") for line in item["stdout"].splitlines()
                       if line.startswith('{"type": "printf"'))
        # the probes were live and fired on uprobeme's writes: its one contentless "loop over" byte
        assert re.search(r"^[WT] \.$", text, re.M), text[-1000:]
        # ... and saw no record, no order id, no price, nothing of the start record
        assert '"event"' not in text and "order_id" not in text and "parsers" not in text, text[-1000:]
        for order in orders:
            assert str(order["order_id"]) not in text and '"ret": %d' % order["ret"] not in text
        # the agent never opened the truth log while the scripts ran
        assert "truth.jsonl" not in text, text[-1000:]
    assert rec["score"] == 0, [(e["id"], e["reason"]) for e in rec["exercises"]]
