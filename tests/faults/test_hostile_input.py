"""Hostile and broken input: scripts that flood, stay silent, do not compile, call system(), or
are gigabytes; student ids with shell metacharacters, '..', spaces, HTML, ANSI and spreadsheet
formulas; roster rows that are incomplete, duplicated or point at missing keys; a malformed lab
spec.  Student text must come out inert in index.html and gradebook.csv."""

import csv
import os
import shutil
import uuid

import pytest

from faultkit import (FAULT_LAB, answers, assert_one_line_error, check_html, graded_normally, job_bound, reference,
                      row, run_grader, validate_results, write_roster)

pytestmark = pytest.mark.faults

FLOOD = ('tracepoint:syscalls:sys_enter_openat { printf("open\\n"); }\n'
         'interval:ms:1 { unroll(100) { printf("flood flood flood flood flood flood flood flood flood flood\\n"); } }\n')
SILENT = 'tracepoint:syscalls:sys_enter_openat /comm == "no-such-comm"/ { printf("%s\\n", str(args->filename)); }\n'
BROKEN = 'tracepoint:syscalls:sys_enter_openat /comm == "kprobeme"/ { printf("%s\\n", str(args->filename) }\n'
UNSAFE = 'tracepoint:syscalls:sys_enter_openat { system("touch %s"); }\n'
EVIL_OUTPUT = ('tracepoint:syscalls:sys_enter_openat /comm == "kprobeme"/ { printf("<script>alert(1)</script> '
               '<img src=x onerror=alert(2)> %c[31mRED%c]0;title%c =cmd|\' /C calc\'!A0\\n", 27, 27, 7); }\n')


def test_hostile_scripts_ids_and_rows(tmp_path, farm, lab_prefix):
    host = farm.add()
    agent = lab_prefix["agent"]
    tag = uuid.uuid4().hex[:8]
    pwned = ["/tmp/bpfhol-pwned-%s-%d" % (tag, i) for i in range(5)]
    ref = reference()

    def with_q1(text):
        return dict(ref, **{"q1.bt": text})

    giant = answers(tmp_path, "giant", {"q2.bt": ref["q2.bt"], "q3.bt": ref["q3.bt"]})
    with open(os.path.join(giant, "q1.bt"), "wb") as fh:      # 4 GiB, sparse: must never be read whole
        fh.truncate(4 << 30)

    ids = {
        "metachar": "x; touch %s" % pwned[0],
        "subshell": "$(touch %s)`touch %s`" % (pwned[1], pwned[2]),
        "dotdot": "../../etc",
        "space": "a b",
        "html": "<script>alert('id')</script>",
        "formula": "=cmd|' /C calc'!A0",
        "ansi": "\x1b[31mred\x1b[0m\x07",
    }
    rows = [
        row("alice", host, agent, answers(tmp_path, "alice", ref)),
        row(ids["metachar"], host, agent, answers(tmp_path, "metachar", ref)),
        row(ids["dotdot"], host, agent, answers(tmp_path, "flood", with_q1(FLOOD))),
        row(ids["html"], host, agent, answers(tmp_path, "silent", {k: SILENT for k in ref})),
        row(ids["space"], host, agent, answers(tmp_path, "broken", with_q1(BROKEN))),
        row("unsafe", host, agent, answers(tmp_path, "unsafe", with_q1(UNSAFE % pwned[3]))),
        row(ids["subshell"], host, agent, giant),
        row(ids["formula"], host, agent, answers(tmp_path, "evil", with_q1(EVIL_OUTPUT))),
        # Broken roster rows: each becomes that row's "not gradable", never the cohort's end.
        {"student": "nohost", "port": host.port, "user": "root", "key": host.key},
        dict(row("missingkey", host, agent), key=str(tmp_path / "no_such_key")),
        row("alice", host, agent),                                          # duplicate id
        "just a string",                                                    # not a mapping
        {"host": "127.0.0.1", "port": host.port},                           # no student id
        dict(row("badanswers", host, agent), answers="/tmp/x; touch %s" % pwned[4]),
        dict(row("badhost", host, agent), host="127.0.0.1; touch %s" % pwned[4]),
        # Control characters in an id: not gradable, shown escaped (a newline forged a row in summary.txt)
        row(ids["ansi"], host, agent, answers(tmp_path, "ansi", ref)),
    ]
    ansi_shown = "\\x1b[31mred\\x1b[0m\\x07"
    roster = write_roster(tmp_path / "roster.yml", rows)
    # Sequential: every script here runs against its own workload, so verdicts are exact.
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--parallel", 1, "--connect-timeout", 3, timeout=job_bound() + 180)
    assert wall < job_bound(), wall      # no hostile row made the cohort wait out a job's bound
    assert proc.returncode == 1, proc.stderr[-3000:]
    students = ["alice", ids["metachar"], ids["dotdot"], ids["html"], ids["space"], "unsafe", ids["subshell"],
                ids["formula"], "nohost", "missingkey", "alice (row 11)", "row 12", "row 13", "badanswers", "badhost",
                ansi_shown]
    by = validate_results(tmp_path / "res", students)
    for p in pwned + ["/tmp/pwned"]:
        assert not os.path.exists(p), "a student id or roster field ran as a command: %s" % p

    def ex(student, q):
        return {e["id"]: e for e in by[student]["exercises"]}[q]

    for s in ("alice", ids["metachar"]):                                    # graded normally
        assert graded_normally(by[s]), by[s]
    flood = ex(ids["dotdot"], "q1")
    # Stopped at 16 x the output cap; on a starved CPU bpftrace may lose events instead of printing
    # that much, and then the output is cut at the cap: bounded and said either way.
    assert (flood["reason"] == "flooded" and "filter" in flood["feedback"]) or \
        "output was cut" in flood["feedback"], flood
    assert by[ids["html"]]["status"] == "graded" and by[ids["html"]]["score"] == 0
    assert {e["reason"] for e in by[ids["html"]]["exercises"]} <= {"not_found", "no_fds", "no_leaks"}
    assert ex(ids["space"], "q1")["reason"] == "compile_error"
    assert ex(ids["space"], "q2")["passed"] and ex(ids["space"], "q3")["passed"]
    assert ex("unsafe", "q1")["reason"] == "unsafe" and "--unsafe" in ex("unsafe", "q1")["feedback"]
    assert by[ansi_shown]["status"] != "graded" and "control characters (U+0007, U+001B)" in by[ansi_shown]["error"]
    assert ex(ids["subshell"], "q1")["reason"] == "too_large" and "limit" in ex(ids["subshell"], "q1")["feedback"]
    assert ex(ids["subshell"], "q2")["passed"]
    assert ex(ids["formula"], "q1")["reason"] in ("not_found", "unfiltered")
    assert "no host given" in by["nohost"]["error"]
    assert "key file not found" in by["missingkey"]["error"]
    assert "duplicate student id" in by["alice (row 11)"]["error"]
    assert "not a mapping" in by["row 12"]["error"]
    assert "no student id" in by["row 13"]["error"]
    assert "absolute plain path" in by["badanswers"]["error"]
    assert "not a host name" in by["badhost"]["error"]

    # Inert everywhere: the journal keeps the student's bytes, the reports neutralize them.
    res = tmp_path / "res"
    page = (res / "index.html").read_text()
    text = check_html(page)                       # only the report's own tags; no <script>, no onerror=
    assert "<script>alert('id')</script>" in text                # the id is shown, as text
    assert "&lt;script&gt;" in page and "<img" not in page
    shown = ""
    for student_page in res.glob("students/*/index.html"):      # each student's page: no script at all
        raw = student_page.read_text()
        assert "<script" not in raw and "<img" not in raw
        shown += check_html(raw)
    assert "<script>alert(1)</script>" in shown and "onerror=alert(2)" in shown   # the output, as text
    with open(res / "gradebook.csv", newline="") as fh:
        grid = list(csv.reader(fh))
    names = [r[0] for r in grid[1:]]
    assert "'=cmd|' /C calc'!A0" in names and ansi_shown in names
    assert all(os.path.isdir(res / "students" / d) and not d.startswith(".") for d in os.listdir(res / "students"))
    assert not (tmp_path / "etc").exists()
    for name in ("summary.txt", "junit.xml", "index.html", "gradebook.csv"):
        assert "\x1b" not in (res / name).read_text()


def test_malformed_lab_spec_is_one_line_exit_2(tmp_path):
    roster = tmp_path / "r.yml"
    roster.write_text("students: [{student: a, host: 127.0.0.1}]\n")
    good = (FAULT_LAB / "lab.yaml").read_text()
    cases = {
        "syntax": ("name: x\nexercises: [\n", "not valid YAML"),
        "not a mapping": ("- a\n- b\n", "must be a mapping"),
        "no exercises": (good.split("exercises:")[0], "missing field 'exercises'"),
        "bad check": (good.replace("check: opened_path", "check: rm_rf"), "unknown check"),
        "bad script": (good.replace("script: q1.bt", "script: ../../etc/passwd"), "plain name"),
        "bad window": (good.replace("window_seconds: 3", "window_seconds: 100000"), "window_seconds"),
        "bad program": (good.replace("program: kprobeme", "program: /bin/sh -c id"), "plain program name"),
        "python tag": ("name: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "not valid YAML"),
    }
    for what, (text, words) in cases.items():
        lab = tmp_path / what.replace(" ", "_")
        lab.mkdir()
        (lab / "lab.yaml").write_text(text)
        proc, wall = run_grader("grade", roster, "--lab", lab, "--results", tmp_path / "res", timeout=60)
        assert_one_line_error(proc, 2, words)
        assert wall < 20
    assert not os.path.exists("/tmp/pwned")
    shutil.rmtree(tmp_path / "res", ignore_errors=True)
