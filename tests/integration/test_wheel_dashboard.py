"""The dashboard problems of issue 33 ("Why"), through the installed wheel outside the checkout: a journal made
by the installed grader's own code (the replay host of tests/replay.py stands in for lab VMs), then
`bpfhol-grade report` from the wheel's bin writes the pages.  Checked in the HTML the wheel wrote: not-gradable
students grouped by reason with the fix, figures (median, quartiles), reasons in words with links to their lists,
names and sections, the similarity pairs, and a student page that prints a map and a histogram as bpftrace does,
with no Python reprs.  (The browser-side behaviour is tests/integration/test_dashboard_browser.py's.)"""

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
TESTS = Path(__file__).resolve().parents[1]

MAKE_JOURNAL = r'''
import json, random, sys
from pathlib import Path
import grader, replay
from grader import grading
from grader.journal import Journal
from grader.labspec import load_lab
from grader.reports import lms

assert "site-packages" in grader.__file__, grader.__file__          # the wheel's grader, not the checkout's
folder = Path(sys.argv[1])
lab = load_lab("kprobes")
journal = Journal(folder)
names = replay.cohort(journal, lab, 20)
for i, error in enumerate(["authentication refused for g@10.0.0.9:22 (check the user and key in the roster)"] * 2):
    names.append("nokey%d" % i)
    journal.record(grading.not_gradable(names[-1], error), lab)
reference = (lab.path / "solutions" / "q3.bt").read_text()
outputs = dict(replay.HONEST, q3=lambda truth: "".join(json.dumps(r) + "\n" for r in [
    {"type": "hist", "data": {"@fd": [{"min": 4, "max": 7, "count": 2}, {"min": 8, "max": 15, "count": 1}]}},
    {"type": "map", "data": {"@by": {"kprobeme,5": 3}}}]))
for student, source in (("copy1", reference.replace("@open[", "@mine[")), ("copy2", reference)):
    result = grading.grade(replay.ReplayBackend(outputs, source=source), lab, student,
                           {ex.id: ("upload", ex.script) for ex in lab.exercises}, rng=random.Random(5))
    result.max_score = lab.max_score
    journal.record(result, lab)
    names.append(student)

class Row:
    def __init__(self, student, n):
        self.student, self.identity = student, {"name": "Given%02d Family" % n, "section": "L0%d" % (1 + n % 2)}
lms.remember(folder, [Row(s, n) for n, s in enumerate(names)])
journal.release()
'''


def run(cmd, cwd, env, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_the_dashboard_for_a_cohort_through_the_installed_wheel(installed_with_deps):
    where = installed_with_deps
    env = dict(where["env"], PYTHONPATH=str(TESTS))          # replay.py and simulate.py only: grader is the wheel's
    results = where["outside"] / "dash-results"
    made = run([where["python"], "-c", MAKE_JOURNAL, results], cwd=where["outside"], env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    report = run([where["bin"] / "bpfhol-grade", "report", "--results", results, "--quiet"], cwd=where["outside"],
                 env=where["env"])
    assert report.returncode == 1, report.stderr[-3000:]                # 1: some students are not gradable
    page = (results / "index.html").read_text()
    # grouped by reason, with the count and the fix, collapsed
    assert re.search(r'<details class="ng-group" data-group="unreachable" data-count="1">', page)
    assert re.search(r'<details class="ng-group" data-group="auth" data-count="2">.*SSH login refused.*'
                     r'fix: check the roster&#x27;s user and key', page)
    # figures, reasons in words linking to their lists, names and sections
    assert all('data-stat="%s"' % k in page for k in ("median", "q1", "q3", "min", "max"))
    assert re.search(r'<a href="#filter=q1:not_found">answer not in the output</a>', page)
    assert '<th data-key="name">' in page and "Given03 Family" in page and '<td>L02</td>' in page
    # the similarity report: the two copies of the q3 reference, with each other and with the reference
    pairs = set(re.findall(r'<details class="pair" data-question="(\w+)" data-score="[\d.]+" '
                           r'data-first="(\w*)" data-second="(\w*)"', page))
    assert {("q3", "copy1", "copy2"), ("q3", "copy1", ""), ("q3", "copy2", "")} <= pairs
    student = (results / "students" / "copy1" / "index.html").read_text()
    assert "@fd:\n[4, 8)                 2 |%s|" % ("@" * 52) in student
    assert "@by[kprobeme, 5]: 3" in student and "probes attached: yes" in student
    assert not re.search(r"\b(True|False|None)\b|\[&#x27;", student.split("</style>")[1])
