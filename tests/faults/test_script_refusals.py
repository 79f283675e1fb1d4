"""Issue 34, items 1, 4 and 5, through the CLI on real sshd hosts with the real agent and bpftrace:

* item 1: bpftrace's cat() needs no --unsafe: a script printed the VM's SSH host private key into the
  student-visible results.  Now staging refuses any script that calls cat(), with feedback.
* item 4: #import, #include_next and #/**/include passed the include guard (a string match) and clang read
  the file.  Now the guard judges the script as clang's first phases see it (splices joined, comments gone)
  and allows only #include <linux/...>.
* item 5: `max_map_keys = <5000 digits>` crashed the agent (Python's int() digit limit), which the grader
  read as a broken VM and retired it.  Now the number is bounded before it is converted: that one script is
  refused with feedback (or, in a comment, ignored), never the job.
* item 8: each distinct ustack(N) gets a 131072-entry stack map: ten in one script pinned 1.26 GiB of kernel
  memory.  Now more than 4 distinct stack forms refuse the script, with feedback."""

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from faultkit import FAULT_LAB, answers, grader_cmd, reference, row, validate_results, write_roster

pytestmark = pytest.mark.faults


def _grade(tmp_path, rows):
    roster = write_roster(tmp_path / "r.yml", rows)
    results = tmp_path / "results"
    proc = subprocess.run(grader_cmd("grade", roster, "--lab", FAULT_LAB, "--results", results, "--quiet",
                                     "--parallel", "1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = validate_results(results, [r["student"] for r in rows])
    return results, {s: {e["id"]: e for e in rec["exercises"]} for s, rec in by.items()}


def _all_text(results):
    return "".join(p.read_text(errors="replace") for p in Path(results).rglob("*") if p.is_file())


def test_cat_includes_and_giant_numbers_refuse_the_script_not_the_job(tmp_path, farm, lab_prefix):
    host_cat, host_pre, host_num, host_stk = farm.add(), farm.add(), farm.add(), farm.add()
    host_key = host_cat.workdir / "host_key"                  # the "VM's" private key (its sshd's own)
    key_body = host_key.read_text().splitlines()[1]
    assert "PRIVATE KEY" in host_key.read_text()
    secret = tmp_path / ("secret-%s.h" % uuid.uuid4().hex[:8])
    secret.write_text("TOPSECRET_%s\n" % uuid.uuid4().hex)
    ref = reference()
    probe = 'tracepoint:syscalls:sys_enter_openat /comm == "kprobeme"/ { printf("x\\n"); }\n'
    cat_scripts = dict(ref, **{
        "q1.bt": probe + 'BEGIN { cat("%s"); }\n' % host_key,
        "q2.bt": probe + 'BEGIN { ca\\\nt /* spliced */ ("%s"); }\n' % host_key,
    })
    pre_scripts = {
        "q1.bt": '#import "%s"\n' % secret + ref["q1.bt"],
        "q2.bt": "#include_next <%s>\n" % secret + ref["q2.bt"],
        "q3.bt": '#/**/include "%s"\n' % secret + ref["q3.bt"],
    }
    giant = "9" * 5000
    num_scripts = dict(ref, **{
        "q1.bt": "config = { max_map_keys = %s }\n" % giant + ref["q1.bt"],
        "q2.bt": "// max_map_keys = %s\n" % giant + ref["q2.bt"],          # a comment: harmless, it runs
    })
    stacks = 'tracepoint:syscalls:sys_enter_openat /comm == "kprobeme"/ { %s }\n' % " ".join(
        "@s%d[ustack(%d)] = count();" % (i, i + 1) for i in range(10))
    stk_scripts = dict(ref, **{"q1.bt": stacks + ref["q1.bt"]})
    results, got = _grade(tmp_path, [
        row("cat", host_cat, lab_prefix["agent"], answers(tmp_path, "cat", cat_scripts)),
        row("pre", host_pre, lab_prefix["agent"], answers(tmp_path, "pre", pre_scripts)),
        row("num", host_num, lab_prefix["agent"], answers(tmp_path, "num", num_scripts)),
        row("stk", host_stk, lab_prefix["agent"], answers(tmp_path, "stk", stk_scripts)),
    ])
    for q in ("q1", "q2"):
        assert got["cat"][q]["reason"] == "refused" and "cat() is refused" in got["cat"][q]["feedback"], got["cat"][q]
    assert got["cat"]["q3"]["passed"]
    for q in ("q1", "q2", "q3"):
        assert got["pre"][q]["reason"] == "refused" and "only kernel headers" in got["pre"][q]["feedback"], \
            got["pre"][q]
    assert got["num"]["q1"]["reason"] == "refused" and "at most 65536 map keys" in got["num"]["q1"]["feedback"]
    assert len(got["num"]["q1"]["feedback"]) < 2000
    assert got["num"]["q2"]["passed"] and got["num"]["q3"]["passed"]
    assert got["stk"]["q1"]["reason"] == "refused" and "10 different stack forms" in got["stk"]["q1"]["feedback"]
    assert got["stk"]["q2"]["passed"] and got["stk"]["q3"]["passed"]
    text = _all_text(results)
    assert "PRIVATE KEY" not in text and key_body not in text
    assert secret.read_text().strip() not in text
