"""Evidence behind every verdict, and re-judging a results folder from it alone (no VM)."""

import json
import random
import subprocess
import sys
from pathlib import Path

import simulate
from simulate import map_, printf
from grader import grading
from grader.journal import Journal
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]




class ReplayBackend:
    """Stands in for a lab host: answers the job with a reply built from a simulated run."""
    name = "replay"

    def __init__(self, outputs):
        self.outputs = outputs

    def run_agent_job(self, job, uploads, timeout):
        args = job["workload"]["args"]
        truth = simulate.truth_for(args, job["workload"]["fd_offset"], 4242, job["workload"]["decoy_file"])
        scripts = [{"name": s["name"], "status": "ran", "exit_code": 0, "attached": True, "source": "kprobe:x {}",
                    "stdout": self.outputs[s["name"]](truth), "stderr": "", "path": "/run/bpfhol-agent-x/s0.bt"}
                   for s in job["scripts"]]
        return {"ok": True, "agent_version": job["version"], "scripts": scripts, "facts": {"tracefs": True},
                "workload": {"truth": simulate.truth_log(truth), "decoy": job["workload"]["decoy_file"]}}


HONEST = {
    "q1": lambda t: printf("kprobeme opens " + t.file),
    "q2": lambda t: printf(*["fd %d" % fd for fd in t.opened_fds]),
    "q3": lambda t: printf("opens %d closes %d" % (len(t.opens), len(t.closes))),
    "q4": simulate.q4_map,
}


def test_evidence_is_kept_and_a_fixed_check_regrades_from_it(tmp_path):
    lab = load_lab("kprobes")
    journal = Journal(tmp_path)
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    for student in ("ann", "ben"):
        result = grading.grade(ReplayBackend(HONEST), lab, student, scripts, rng=random.Random(student))
        result.max_score = lab.max_score
        journal.record(result, lab)
    rows = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [13, 13]
    doc = json.loads((tmp_path / "students" / "ann" / rows[0]["evidence"]).read_text())
    assert doc["grader_version"] and doc["job"]["workload"]["args"]["count"] >= 24
    assert set(doc["script_sha256"]) == {"q1", "q2", "q3", "q4"} and doc["reply"]["workload"]["truth"]
    journal.release()                   # the `report` runs below need the results folder

    def report(*extra):
        return subprocess.run([sys.executable, "-m", "grader", "report", "--results", str(tmp_path), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    same = report("--rejudge")
    assert same.returncode == 0 and "re-judged 2 students from their evidence: 0 verdicts changed" in same.stderr

    # An instructor finds ben's recorded q3 output was a constant: the evidence says so, the re-judge agrees.
    path = tmp_path / "students" / "ben" / rows[1]["evidence"]
    doc = json.loads(path.read_text())
    doc["reply"]["scripts"][2]["stdout"] = printf("opens 12 closes 10")
    path.write_text(json.dumps(doc))
    changed = report("--rejudge")
    assert changed.returncode == 0 and "1 verdicts changed" in changed.stderr, changed.stderr
    last = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert last["student"] == "ben" and last["score"] == 9 and last["evidence"] == rows[1]["evidence"]
    assert "ben" in (tmp_path / "gradebook.csv").read_text()
