"""A course variant for real (issue 30 item 2): on a host whose uprobes workload was built with a course's names
(variant.h, as the workloads role writes it), the lab's public reference answers fail every question, and the same
answers rewritten in the course's names get full marks.  Real sshd on loopback, the real agent, real bpftrace and
uprobes (this host's kernel has them; the kprobes lab's variant is judged on simulated runs in
tests/unit/test_guessing.py and test_answer_variants.py, and built for real in tests/unit/test_variants.py)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grader import variants
from sshd_hosts import answers_folder

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "uprobes"
SEED = "cs326-fall-2026"


@pytest.fixture(scope="module")
def variant_names(lab_prefix, tmp_path_factory):
    """The course's uprobes workload, built with its names and installed beside the lab's own (as the roles do)."""
    names = variants.draw("uprobes", variants.load_spec(LAB), SEED)
    build = tmp_path_factory.mktemp("variant") / "workload"
    shutil.copytree(LAB / "workload", build)
    (build / "variant.h").write_text(variants.header(names))
    subprocess.run(["make", "-s", "-C", str(build)], check=True, timeout=120)
    shutil.copy(build / "uprobeme", Path(lab_prefix["root"]) / "bin" / names["uprobeme"])
    return names


def graded(tmp_path, farm, lab_prefix, scripts, name):
    host = farm.add()
    roster = tmp_path / ("%s.yml" % name)
    roster.write_text(yaml.safe_dump([{"student": name, "host": "127.0.0.1", "port": host.port, "user": "root",
                                       "key": host.key, "agent": lab_prefix["agent"],
                                       "answers": answers_folder(tmp_path, name, scripts)}]))
    results = tmp_path / ("results-%s" % name)
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", "uprobes", "--course-seed",
                           SEED, "--results", str(results), "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    [row] = map(json.loads, (results / "journal.jsonl").read_text().splitlines())
    return row


def test_public_answers_fail_on_a_course_variant_and_pass_rewritten_for_it(tmp_path, farm, lab_prefix, variant_names):
    prefix = str(lab_prefix["root"]) + "/"
    public = {p.name: p.read_text().replace("/opt/bpfhol/", prefix) for p in sorted((LAB / "solutions").glob("u*.bt"))}
    as_published = graded(tmp_path, farm, lab_prefix, public, "copied")
    assert as_published["status"] == "graded" and as_published["score"] == 0, \
        [(e["id"], e["reason"]) for e in as_published["exercises"]]
    assert {e["reason"] for e in as_published["exercises"][:3]} == {"not_probed"}
    # the workload really ran under the course's names: its truth names the course's jobs
    assert as_published["workload"]["orders"] >= 24
    rewritten = {name: variants.rename(text, variant_names) for name, text in public.items()}
    assert all(text != public[name] for name, text in rewritten.items())
    honest = graded(tmp_path, farm, lab_prefix, rewritten, "rewritten")
    assert honest["score"] == honest["max_score"] == 13, [(e["id"], e["reason"], e["feedback"][:200])
                                                         for e in honest["exercises"]]
    evidence = json.loads(next((tmp_path / "results-rewritten" / "students").glob("*/evidence-*.json")).read_text())
    assert evidence["lab"]["variant"] == variant_names
    assert evidence["job"]["workload"]["program"] == variant_names["uprobeme"]
    # a re-judge judges with the folder's variant, and a grade without the seed into that folder is refused
    again = subprocess.run([sys.executable, "-m", "grader", "report", "--results", str(tmp_path / "results-rewritten"),
                            "--rejudge"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 verdicts changed" in again.stderr, again.stderr
    plain = subprocess.run([sys.executable, "-m", "grader", "grade", str(tmp_path / "rewritten.yml"), "--lab", "uprobes",
                            "--results", str(tmp_path / "results-rewritten")], cwd=REPO, capture_output=True,
                           text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert plain.returncode == 2 and "another course variant" in plain.stderr and plain.stderr.count("\n") == 1, \
        plain.stderr
