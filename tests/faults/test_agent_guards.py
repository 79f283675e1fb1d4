"""The agent's guards, through the CLI on real sshd hosts with real bpftrace and kprobeme:
* two grading runs aimed at one host at once: the second waits for the first (the host's lock), so
  neither sees the other's workload, and both students are graded normally;
* a script that #includes a file that is not a kernel header is refused with a clear reason, and
  the file's content reaches no report (clang's errors would otherwise quote it)."""

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from faultkit import (FAULT_LAB, answers, grader_cmd, graded_normally, reference, row, validate_results,
                      write_roster)

pytestmark = pytest.mark.faults


def test_two_runs_on_one_host_take_turns(tmp_path, farm, lab_prefix):
    host = farm.add()
    procs, dirs = [], []
    t0 = time.monotonic()
    for name in ("first", "second"):
        roster = write_roster(tmp_path / (name + ".yml"),
                              [row(name, host, lab_prefix["agent"], answers(tmp_path, name, reference()))])
        dirs.append(tmp_path / ("results-" + name))
        procs.append(subprocess.Popen(grader_cmd("grade", roster, "--lab", FAULT_LAB, "--results", dirs[-1],
                                                 "--quiet"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        time.sleep(0.5)
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    wall = time.monotonic() - t0
    recs = [json.loads((d / "journal.jsonl").read_text().splitlines()[-1]) for d in dirs]
    for d, rec in zip(dirs, recs):
        validate_results(d, [rec["student"]])
        assert graded_normally(rec), rec["exercises"]
    # they took turns: together they lasted about two runs, and the second waited for the lock
    evidence = [json.loads((d / "students" / r["student"] / r["evidence"]).read_text()) for d, r in zip(dirs, recs)]
    waits = sorted(doc["reply"]["timing"]["lock_wait"] for doc in evidence)
    assert waits[0] < 1.0 and waits[1] > 2.0, waits
    assert wall < 240, wall


def test_include_of_a_host_file_is_refused_and_never_quoted(tmp_path, farm, lab_prefix):
    host = farm.add()
    secret = tmp_path / ("secret-%s.h" % uuid.uuid4().hex[:8])
    secret.write_text("TOPSECRET_%s\n" % uuid.uuid4().hex)
    scripts = dict(reference(), **{"q1.bt": '#include "%s"\n' % secret + reference()["q1.bt"],
                                   "q2.bt": "#include <%s>\n" % secret + reference()["q2.bt"]})
    roster = write_roster(tmp_path / "r.yml", [row("eve", host, lab_prefix["agent"],
                                                   answers(tmp_path, "eve", scripts))])
    results = tmp_path / "results"
    proc = subprocess.run(grader_cmd("grade", roster, "--lab", FAULT_LAB, "--results", results, "--quiet"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    validate_results(results, ["eve"])
    rec = json.loads((results / "journal.jsonl").read_text().splitlines()[-1])
    got = {e["id"]: e for e in rec["exercises"]}
    for q in ("q1", "q2"):
        assert got[q]["reason"] == "refused" and "only kernel headers" in got[q]["feedback"], got[q]
    assert got["q3"]["passed"]
    token = secret.read_text().strip()
    for path in Path(results).rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
