from grader import grading
from grader.labspec import load_lab


def test_probe_kinds_sees_aliases_and_ignores_comments():
    src = """// kprobe:commented_out { }
    /* kretprobe:also_commented */
    k:do_sys_openat2 { }
    tracepoint:syscalls:sys_enter_close, kr:vfs_read { }
    BEGIN { printf("x:y\\n"); }"""
    kinds = grading.probe_kinds(src)
    assert {"kprobe", "tracepoint", "kretprobe"} <= kinds
    assert grading.probe_kinds("// kprobe:x\ntracepoint:a:b {}") == {"tracepoint"}


def test_diagnose_unsafe_and_compile_error():
    reason, text = grading._diagnose_failure({"exit_code": 1, "stderr": "ERROR: system() is an unsafe function "
                                              "being used in safe mode"}, [])
    assert reason == "unsafe" and "--unsafe" in text
    reason, _ = grading._diagnose_failure({"exit_code": 1, "attached": False, "stderr": "1:5: syntax error"}, [])
    assert reason == "compile_error"


def test_host_without_tracefs_is_broken_not_a_compile_error():
    import pytest

    from grader.errors import HostError
    from grader.labspec import load_lab

    lab = load_lab("kprobes")
    raw = {"ok": True, "facts": {"tracefs": False}, "workload": {}, "scripts": [
        {"name": "q1", "status": "ran", "exit_code": 1, "attached": False,
         "stderr": "ERROR: tracepoint not found: syscalls:sys_enter_openat"}]}
    with pytest.raises(HostError) as err:
        grading.evaluate(lab, "s", raw)
    assert err.value.kind == "workload" and "VM broken" in str(err.value) and "tracefs" in str(err.value)


def test_preflight_names_missing_tracefs():
    from grader.preflight import check_host
    from grader.agent import AGENT_VERSION
    from grader.roster import Entry

    class Fake:
        def __init__(self, tracefs):
            self.tracefs = tracefs

        def connect(self):
            pass

        def close(self):
            pass

        def agent_facts(self):
            return {"agent_version": AGENT_VERSION, "bpftrace": "v0.23.5", "kprobe_attach": True, "btf": True,
                    "tracefs": self.tracefs, "arch": "x86_64", "kernel": "6.12"}

    entry = Entry(student="s", host="h", port=22)
    broken = check_host(entry, lambda e: Fake(False))
    assert not broken["ok"] and any("tracefs" in p for p in broken["problems"])
    assert check_host(entry, lambda e: Fake(True))["ok"]


def test_a_decoy_in_the_output_means_unfiltered():
    """The agent opens a decoy file from another process during the window; printing it proves the
    script did not keep to the workload (decided even on a quiet VM with no other noise)."""
    from grader import bpftrace_output
    from grader.truth import parse_truth

    target, decoy = "/var/tmp/bpfhol-lab/ab/notes-ab12cd.dat", "/var/tmp/bpfhol-lab/ab/stats-ef34gh.dat"
    truth = parse_truth(['{"event": "start", "pid": 9}', '{"event": "open", "seq": 1, "fd": 3, "path": "%s"}' % target])
    truth.decoys = [decoy]
    CHECKS = load_lab("kprobes").checks
    line = '{"type": "printf", "data": "%s opens %s\\n"}\n'
    both = bpftrace_output.parse(line % ("kprobeme", target) + line % ("bpfhol-agent", decoy))
    only = bpftrace_output.parse(line % ("kprobeme", target))
    assert CHECKS["opened_path"](both, truth, {}).reason == "unfiltered"
    assert CHECKS["opened_path"](only, truth, {}).passed


def test_the_decoy_sits_beside_the_lab_file_under_another_name():
    import os
    import random

    from grader.labspec import load_lab

    for seed in range(20):
        run = load_lab("kprobes").workload_run(random.Random(seed))
        assert os.path.dirname(run["decoy_file"]) == os.path.dirname(run["create_file"])
        assert run["decoy_file"] not in run["create_file"] and run["create_file"] not in run["decoy_file"]


def test_a_probe_named_inside_a_string_is_no_probe():
    """The lab's rule "attach a kprobe" is not met by the text of one in a printf or a comment."""
    src = 'tracepoint:syscalls:sys_exit_openat { printf(" kprobe:x\\n"); } // kprobe:y\n/* kr:z */'
    assert grading.probe_kinds(src) == {"tracepoint"}
    assert grading.probe_kinds('BEGIN { printf("a \\" kprobe:x"); }\nkretprobe:do_sys_openat2 { }') == {"kretprobe"}


def test_compile_errors_about_other_files_are_withheld():
    """bpftrace runs as root: a clang error about a header must not quote that file to the student."""
    item = {"path": "/run/bpfhol-agent-ab/s0.bt", "exit_code": 1, "attached": False, "stderr": "\n".join([
        "/usr/src/secret.h:1:1: error: unknown type name 'TOPSECRET'",
        "TOPSECRET",
        "^",
        "/run/bpfhol-agent-ab/s0.bt:3:5-9: ERROR: syntax error",
        "kprobe:x { oops }",
    ])}
    text = grading.student_stderr(item)
    assert "TOPSECRET" not in text and "secret.h" not in text
    assert "your script:3:5-9: ERROR: syntax error" in text and "kprobe:x { oops }" in text


def test_a_script_killed_while_ending_is_not_blamed_on_the_student():
    """bpftrace 0.17 once took the SIGINT but never ended (a loaded emulated VM; its maps never printed):
    the verdict says so and asks for a regrade, instead of a wrong answer's hint.  A script that printed
    its answer before being killed still passes."""
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import simulate
    from grader.labspec import load_lab

    lab = load_lab("kprobes")
    ex = [e for e in lab.exercises if e.id == "q4"][0]
    _, truth = simulate.simulated_run(lab, random.Random(5))
    item = {"name": "q4", "status": "ran", "exit_code": -9, "attached": True, "source": "kretprobe:do_sys_openat2 {}",
            "stdout": '{"type": "attached_probes", "data": {"probes": 1}}\n', "stderr": "",
            "signals": ["SIGINT", "SIGKILL"]}
    got = grading.judge_exercise(ex, lab, item, truth)
    assert got.reason == "stop_timeout" and "regrade" in got.feedback and not got.passed
    item["stdout"] += simulate.q4_map(truth)
    assert grading.judge_exercise(ex, lab, item, truth).passed
    item.update(signals=["SIGINT"], stdout='{"type": "attached_probes", "data": {"probes": 1}}\n', exit_code=0)
    assert grading.judge_exercise(ex, lab, item, truth).reason == "no_stacks"


def test_a_forged_job_list_names_no_job():
    """The truth log comes from a student VM: a job list that is a string, or names that are not C
    identifiers, give q4 no job to match (a string would otherwise be read letter by letter)."""
    from simulate import read_truth

    forged = ['{"event": "start", "pid": 9, "jobs": "abc", "leaky": ["x y", 5, "ok_name"]}',
              '{"event": "open", "seq": 1, "job": "a", "path": "/f", "fd": 4}',
              '{"event": "leak", "seq": 1, "job": "<b>", "fd": 4}']
    truth = read_truth(forged)
    assert truth.jobs == [] and truth.leaky == ["ok_name"] and truth.leak_jobs == {}


def test_forged_records_of_the_wrong_type_are_skipped_not_a_crash():
    """A record whose fields have the wrong types (from a student VM) is left out of the lab's reading;
    the records around it still count, and the core keeps every record as it came."""
    from simulate import read_truth

    forged = ['{"event": "start", "pid": "nine", "leak_every": "x", "file": ["/f"]}',
              '{"event": "open", "seq": 1, "path": "/f", "fd": "four"}',
              '{"event": "open", "seq": 2, "path": "/f", "fd": 5}', '[1, 2]', 'not json',
              '{"event": "close", "fd": null}', '{"event": "leak", "seq": 2, "fd": 5, "job": "load_config"}']
    truth = read_truth(forged)
    assert truth.pid == 0 and truth.leak_every == 0 and len(truth.events) == 5
    assert truth.opens == [(2, 5, "/f")] and truth.closes == [] and truth.leak_jobs == {5: "load_config"}


def test_the_simulation_hands_the_checks_what_they_read_from_its_log():
    """tests/simulate.py gives each simulated run the lab's reading of it up front (21,000 runs, no parse
    each); that must be exactly what labs/kprobes/checks/run.py reads from the same records."""
    import simulate

    lab = load_lab("kprobes")
    for _, sim in simulate.runs(lab, 50, seed=3):
        read = simulate.read_truth(simulate.truth_log(sim))
        assert read.derived == {} and simulate.KPROBES.run.read_run(read) == sim.derived["kprobeme"]
        assert (read.pid, read.released, read.exited, read.start) == (sim.pid, True, True, sim.start)


def test_the_compile_error_comes_first_not_the_warning_before_it():
    """A RLIMIT_MEMLOCK warning on stderr's first line hid the real error in the one-line LMS feedback."""
    from grader.reports import moodle

    item = {"path": "/run/bpfhol-agent-ab/s0.bt", "exit_code": 1, "attached": False, "stderr": "\n".join([
        "WARNING: Cannot raise RLIMIT_MEMLOCK: Operation not permitted",
        "/run/bpfhol-agent-ab/s0.bt:2:9-14: ERROR: Unknown function: prntf",
        "kprobe:do_sys_openat2 { prntf(\"x\"); }",
    ])}
    reason, text = grading._diagnose_failure(item, [])
    assert reason == "compile_error"
    first = text.splitlines()[0]
    assert first == "script did not compile: your script:2:9-14: ERROR: Unknown function: prntf", text
    assert "RLIMIT_MEMLOCK" in text                       # still shown, after the error
    result = grading.StudentResult(student="s", status="graded", exercises=[grading.ExerciseResult(
        id="q1", title="t", passed=False, score=0, max_score=3, reason=reason, feedback=text)])
    assert "Unknown function: prntf" in moodle.feedback(result, None)


def test_probe_kinds_read_uprobes_on_paths_and_libraries():
    from grader.grading import probe_kinds

    assert probe_kinds("uprobe:/opt/bpfhol/bin/uprobeme:process_order { }") == {"uprobe"}
    assert probe_kinds("ur:/opt/bpfhol/bin/uprobeme:f { } uprobe:libc:strtol { }") == {"uretprobe", "uprobe"}
    assert probe_kinds('BEGIN { printf("uprobe:/x:y\\n"); } // uprobe:/a:b') == set()   # strings, comments
