"""The agent runs as root on the lab host: what it refuses matters more than what it runs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import agent

AGENT = Path(agent.__file__)


def run_agent(*args):
    proc = subprocess.run([sys.executable, str(AGENT), *args], capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def job_file(tmp_path, **overrides):
    job = {"version": agent.AGENT_VERSION, "scripts": [], "workload": {}, "window": 2}
    job.update(overrides)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return str(path)


@pytest.mark.parametrize("overrides,msg", [
    ({"version": 99}, "version mismatch"),
    ({"workload": {"program": "../bin/sh"}}, "plain name"),
    ({"workload": {"program": "kprobeme"}}, "not installed"),
    ({"scripts": [{"name": "q1", "path": "/etc/shadow"}]}, "end in .bt"),
    ({"scripts": [{"name": "q1", "upload": "../x.bt"}]}, "plain file names"),
    ({"scripts": [{"name": "q%d" % i, "upload": "q.bt"} for i in range(9)]}, "1 to 8 scripts"),
])
def test_refuses_unsafe_jobs(tmp_path, overrides, msg):
    code, reply = run_agent("run", job_file(tmp_path, **overrides))
    assert code == 1 and reply["ok"] is False and msg in reply["error"]


def test_refuses_unsafe_workload_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr(agent, "prefix_dir", lambda: str(tmp_path))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kprobeme").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "bin" / "kprobeme", 0o755)
    for args in ({"file": "/etc/../etc/shadow"}, {"file": "$(id)"}, {"--x": "1"}, {"file": "a b"},
                 {"notify-fd": "2"}):
        with pytest.raises(agent.JobError):
            agent._workload_argv({"workload": {"program": "kprobeme", "args": args}}, "/tmp/t")
    argv = agent._workload_argv({"workload": {"program": "kprobeme", "args": {"leak-every": 3}}}, "/tmp/t")
    # the workload's notices come on its stdout, a pipe to the agent (no descriptor of its own: fds unchanged),
    # and it lingers until the agent ends it (its log is written as it ends, after the scripts)
    assert argv[1:] == ["--leak-every", "3", "--linger-s", "900", "--truth-log", "/tmp/t", "--hold",
                        "--notify-fd", "1"]
    argv = agent._workload_argv({"workload": {"program": "kprobeme", "args": {"linger-s": 60}}}, "/tmp/t")
    assert argv.count("--linger-s") == 1 and argv[argv.index("--linger-s") + 1] == "60"


def test_script_copy_refuses_links_specials_and_giants(tmp_path):
    big = tmp_path / "big.bt"
    with open(big, "wb") as fh:
        fh.truncate(5 << 30)                         # 5 GiB, sparse: must not be read whole
    assert agent._read_script(str(big), 65536)[0] == "too_large"
    (tmp_path / "link.bt").symlink_to("/etc/passwd")
    assert agent._read_script(str(tmp_path / "link.bt"), 65536)[0] == "unreadable"
    assert agent._read_script("/dev/zero", 65536)[0] == "unreadable"
    assert agent._read_script(str(tmp_path / "none.bt"), 65536)[0] == "missing"


def _lab_job(path, decoy=None):
    return {"workload": {"program": "kprobeme", "create_file": path, "decoy_file": decoy}}


def test_lab_file_must_be_a_fresh_folder_under_the_root_only_root(tmp_path, monkeypatch):
    root = tmp_path / "labroot"
    monkeypatch.setattr(agent, "LAB_FILE_ROOT", str(root))
    for bad in ["/etc/passwd", str(root) + "/../x/y.dat", str(root) + "x/y/z.dat", str(root) + "/a/b/c.dat",
                str(root) + "/a/$(id).dat"]:
        with pytest.raises(agent.JobError):
            agent.make_lab_files(_lab_job(bad))
    with pytest.raises(agent.JobError, match="beside"):
        agent.make_lab_files(_lab_job(str(root / "t1" / "a.dat"), "/etc/passwd"))
    folder, decoy = agent.make_lab_files(_lab_job(str(root / "t2" / "a.dat"), str(root / "t2" / "b.dat")))
    assert folder == str(root / "t2") and decoy == str(root / "t2" / "b.dat")
    assert (root / "t2" / "a.dat").read_text().startswith("bpfhol lab data")
    with pytest.raises(FileExistsError):              # never reused: a planted folder is an error
        agent.make_lab_files(_lab_job(str(root / "t2" / "a.dat")))


def test_lab_root_planted_by_someone_else_is_refused(tmp_path, monkeypatch):
    """/run/bpfhol-lab must be root's and closed to others; a symlink or an open folder is refused."""
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    monkeypatch.setattr(agent, "LAB_FILE_ROOT", str(link))
    with pytest.raises(agent.JobError, match="root-owned"):
        agent.make_lab_files(_lab_job(str(link / "t" / "a.dat")))
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    monkeypatch.setattr(agent, "LAB_FILE_ROOT", str(open_dir))
    with pytest.raises(agent.JobError, match="root-owned"):
        agent.make_lab_files(_lab_job(str(open_dir / "t" / "a.dat")))


@pytest.mark.parametrize("source,refused", [
    ('#include <linux/fs.h>\nkprobe:f {}', False),
    ('#include <linux/sched.h>\n#include <net/sock.h>\nBEGIN {}', False),
    ('#include "/root/secret"\nBEGIN {}', True),
    ('#include </etc/shadow>\nBEGIN {}', True),
    ('#include <../../../etc/shadow>\nBEGIN {}', True),
    ('  #  include "local.h"\nBEGIN {}', True),
    # by what clang would read, not by the spelling (issue 34, item 4)
    ('#import "/etc/shadow"\nBEGIN {}', True),
    ('#include_next </etc/shadow>\nBEGIN {}', True),
    ('#/**/include "/etc/shadow"\nBEGIN {}', True),
    ('#inc\\\nlude "/etc/shadow"\nBEGIN {}', True),              # a line splice
    ('#\\  \ninclude "/etc/shadow"\nBEGIN {}', True),              # a splice with blanks before the newline
    ('/* a comment\n */ #include "/etc/shadow"\nBEGIN {}', True),
    ('BEGIN {}\r#include "/etc/shadow"\n', True),                    # a lone CR ends a line for clang
    ('%:include "/etc/shadow"\nBEGIN {}', True),                      # the digraph of #
    ('??=include "/etc/shadow"\nBEGIN {}', True),                     # the trigraph of #
    ('#define F cat\nBEGIN {}', True),
    ('#embed "/etc/shadow"\nBEGIN {}', True),
    ('#include <linux/fs.h> "/etc/shadow"\nBEGIN {}', True),
    ('#include <linux/../../etc/shadow.h>\nBEGIN {}', True),
    ('struct s {\n#include "/etc/shadow"\n};\nBEGIN {}', True),
    ('BEGIN { _Pragma("GCC dependency \\"/etc/shadow\\"") }', True),
    ('#!/usr/bin/env bpftrace\\\n#include "/etc/shadow"\nBEGIN {}', True),   # a shebang spliced onto a directive
    ('#!/usr/bin/env bpftrace\n#include <linux/sched.h>\nBEGIN { printf("#x // /* %d\\n", 1); }', False),
    ('BEGIN { printf("#include \\"x\\"\\n"); } // #include "/etc/shadow"\n/* #import */', False),
])
def test_only_kernel_headers_may_be_included(source, refused):
    assert (agent.refused_include(source) is not None) == refused
    assert (agent.script_refusal(source) is not None) == refused


@pytest.mark.parametrize("source,refused", [
    ('BEGIN { cat("/etc/ssh/ssh_host_ed25519_key"); exit(); }', True),
    ('BEGIN { cat ("/x"); }', True),
    ('BEGIN { cat/**/("/x"); }', True),
    ('BEGIN { ca\\\nt("/x"); }', True),
    ('BEGIN { @cat[1] = count(); $cat = 2; printf("cat(%d)\\n", 1); } // cat("/x")', False),
    ('uprobe:/usr/bin/cat:main { printf("x\\n"); }', False),
])
def test_the_file_builtin_is_refused(source, refused):
    """bpftrace's cat() reads any file root can read, without --unsafe (issue 34, item 1)."""
    why = agent.script_refusal(source)
    assert (why is not None) == refused, why
    if refused:
        assert why.startswith("cat() is refused")


def test_numbers_in_student_text_are_bounded_before_conversion():
    """A 5000-digit number (past Python's int() limit) once crashed the agent and retired the VM: now it
    refuses that one script, or is a comment and harmless."""
    giant = "9" * 5000
    assert agent.script_refusal("// max_map_keys = %s\nBEGIN { exit(); }" % giant) is None
    for value in (giant, "1e9", "0x1000000", "1_000_000", '"99999999"', "65537"):
        why = agent.script_refusal("config = { max_map_keys = %s }\nBEGIN { exit(); }" % value)
        assert why and "at most 65536 map keys" in why and len(why) < 200, (value, why)
    assert agent.script_refusal("config = { max_map_keys = 65536 }\nBEGIN { exit(); }") is None


def test_a_script_that_cannot_be_checked_is_refused_not_the_job(monkeypatch):
    def boom(source):
        raise ValueError("Exceeds the limit (4300 digits)")
    monkeypatch.setattr(agent, "refused_preprocessor", boom)
    assert "could not be checked (ValueError)" in agent.script_refusal("BEGIN {}")


def test_stack_forms_are_capped():
    """Each distinct ustack/kstack form gets its own 131072-entry stack map (issue 34, item 8)."""
    four = "k:f { @a[ustack] = count(); @b[ustack(5)] = count(); @c[kstack] = count(); @d[ustack (5)] = count(); " \
           "@e[kstack(perf)] = count(); }"
    assert agent.script_refusal(four) is None
    ten = "k:f { %s }" % " ".join("@m%d[ustack(%d)] = count();" % (i, i + 1) for i in range(10))
    why = agent.script_refusal(ten)
    assert why and why.startswith("10 different stack forms") and "at most 4" in why


def test_refused_include_is_reported_as_the_scripts_status(tmp_path):
    (tmp_path / "q1.bt").write_text('#include "/etc/shadow"\nBEGIN { exit(); }\n')
    job = json.loads(Path(job_file(tmp_path, scripts=[{"name": "q1", "upload": "q1.bt"}])).read_text())
    job["_dir"] = str(tmp_path)
    results, runs = agent.stage_scripts(job, str(tmp_path))
    assert runs == [] and results[0]["status"] == "refused" and "kernel headers" in results[0]["error"]


def test_second_job_waits_then_says_busy(tmp_path, monkeypatch):
    """One grading job per host: while one holds the lock, another gets 'busy' after its bounded wait."""
    monkeypatch.setattr(agent, "LOCK_FILE", str(tmp_path / "agent.lock"))
    held = agent.hold_lock(1)
    code = ("import sys; sys.path.insert(0, %r); from grader import agent; agent.LOCK_FILE = %r\n"
            "try:\n    agent.hold_lock(0.5)\nexcept agent.JobError as e:\n    print(e)\n")
    repo = str(Path(agent.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code % (repo, str(tmp_path / "agent.lock"))],
                         capture_output=True, text=True, timeout=30).stdout
    assert out.startswith("busy:") and str(os.getpid()) in out
    os.close(held)
    out = subprocess.run([sys.executable, "-c", code % (repo, str(tmp_path / "agent.lock"))],
                         capture_output=True, text=True, timeout=30).stdout
    assert out == ""


def test_the_graders_outer_bound_covers_every_agent_bound():
    """The grader's timeout comes from the agent's own bounds, so a slow but healthy VM is never cut off."""
    from grader import grading
    from grader.labspec import load_lab

    lab = load_lab("kprobes")
    job = grading.build_job(lab, {ex.id: ("upload", ex.script) for ex in lab.exercises})
    bounds = agent.job_bounds(job)
    phases = (bounds["lock_wait"] + bounds["workload_ready"] + bounds["attach"] + bounds["window"]
              + bounds["workload_end"] + bounds["grace"] + bounds["attach"] + bounds["systemctl"] + bounds["version"])
    assert agent.worst_case_seconds(job) > phases
    assert grading.job_timeout(job) > agent.worst_case_seconds(job)
    assert bounds["lock_wait"] >= agent.run_seconds(bounds)    # a waiting job outlasts a running one


def test_map_sizes_beyond_the_labs_needs_are_refused():
    """bpftrace raises RLIMIT_MEMLOCK itself and 6.x charges maps to the memory cgroup: the cap that holds is
    on the map sizes a script asks for."""
    assert agent.refused_config("config = { max_map_keys = 100000000 }\nBEGIN {}")
    assert agent.refused_config("config = { max_map_keys = 8192 }\nBEGIN {}") is None
    assert agent.refused_config("kprobe:f { @[tid] = count(); }") is None


def read_through_agent(*chunks):
    """What the agent's CappedReader makes of these pipe reads: (attach marker seen, text kept)."""
    r, w = os.pipe()
    reader = agent.CappedReader(os.fdopen(r, "rb"), 1 << 16)
    reader.start()
    for chunk in chunks:
        os.write(w, chunk)
    os.close(w)
    reader.join(timeout=5)
    return reader.marked, reader.text()


@pytest.mark.parametrize("chunks", [
    [b'{"type": "attached_probes"}\n__BPFTRACE_NOTIFY_PROBES_ATTACHED\n{"type": "printf"}\n'],
    [b'{"type": "attached_probes"}\n__BPFTRACE_NOTIFY', b'_PROBES_ATTACHED\n{"type": "printf"}\n'],
    [b'{"type": "attached_probes"}\n', b'__BPFTRACE_NOTIFY_PROBES_ATTACHED', b'\n{"type": "printf"}\n'],
    [b'{"type": "attached_probes"}\n__BPFTRACE_NOTIFY_PROBES_ATTACHED', b'\n', b'{"type": "printf"}\n'],
])
def test_attach_marker_is_seen_across_reads_and_left_out_of_the_output(chunks):
    """bpftrace's attach marker may arrive split over pipe reads (0.17 writes it to unbuffered stderr);
    it marks the script attached and is not part of what the student's script printed."""
    assert read_through_agent(*chunks) == (True, '{"type": "attached_probes"}\n{"type": "printf"}\n')


def test_attach_marker_as_the_first_line():
    assert read_through_agent(b"__BPFTRACE_NOTIFY_PROBES_ATTACHED\nERROR: later\n") == (True, "ERROR: later\n")


def test_attach_marker_inside_a_line_does_not_count():
    """Only a bare line is the marker: text a script printed (a JSON string) never is."""
    line = b'{"type": "printf", "data": "__BPFTRACE_NOTIFY_PROBES_ATTACHED\\n"}\n'
    assert read_through_agent(line) == (False, line.decode())


def test_the_workload_writes_its_truth_only_after_every_script_was_killed_or_ended():
    """The workload writes its log as it ends: stop_workload first makes sure no bpftrace can print any more (each
    has ended or been sent SIGKILL; a killed process runs no user code), then ends it with SIGTERM, so a script
    slow to detach (hundreds of probes) costs the run nothing, and no script reads the records."""
    events = []

    class Run:
        def __init__(self, name, alive, signals):
            self.name, self.alive, self.signals = name, alive, list(signals)
            self.proc = self

        def running(self):
            return self.alive

        def signal(self, sig):
            events.append((self.name, signal_name(sig)))
            self.signals.append(signal_name(sig))

        def wait(self, timeout):
            events.append((self.name, "wait"))
            raise subprocess.TimeoutExpired("bpftrace", timeout)

    class Workload:
        def stop(self, write_truth=True):
            events.append(("workload", "stop", write_truth))

    def signal_name(sig):
        import signal as _signal
        return _signal.Signals(sig).name

    runs = [Run("ended", False, ["SIGINT"]), Run("detaching", True, ["SIGINT", "SIGKILL"]), Run("alive", True, [])]
    agent.stop_workload(Workload(), runs)
    assert events[0] == ("alive", "SIGKILL")                      # nobody left who could still print
    assert events[-1] == ("workload", "stop", True)               # then, and only then, the truth is written
    assert ("ended", "SIGKILL") not in events and ("detaching", "SIGKILL") not in events


def test_leftover_clearing_takes_only_dead_jobs_folders(tmp_path, monkeypatch):
    """Only work folders named as mkdtemp names them (never a per-prefix lock's queue), and only folders no live
    job holds; in per-prefix mode (other jobs run beside this one) only old ones."""
    import fcntl

    lab_root = tmp_path / "lab"
    lab_root.mkdir()
    monkeypatch.setattr(agent, "LAB_FILE_ROOT", str(lab_root))
    dead_work, queue, live_lab = tmp_path / "bpfhol-agent-ab12cd34", tmp_path / "bpfhol-agent-1234abcd.lock.queue", \
        lab_root / "0123456789abcdef"
    for folder in (dead_work, queue, live_lab, lab_root / "fedcba9876543210"):
        folder.mkdir()
    held = os.open(live_lab, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert agent.clear_leftovers({}, str(tmp_path)) == 2
        assert not dead_work.exists() and not (lab_root / "fedcba9876543210").exists()
        assert queue.is_dir() and live_lab.is_dir()
        fresh = tmp_path / "bpfhol-agent-zz99zz99"
        fresh.mkdir()
        monkeypatch.setattr(agent, "lock_file", lambda: "/run/bpfhol-agent-0000.lock")    # per-prefix mode
        assert agent.clear_leftovers({}, str(tmp_path)) == 0 and fresh.is_dir()          # may be a live job's
        os.utime(fresh, (time.time() - 3600, time.time() - 3600))
        assert agent.clear_leftovers({}, str(tmp_path)) == 1 and not fresh.exists()
    finally:
        os.close(held)


def test_a_jobs_stack_maps_stay_within_its_budget(tmp_path):
    """The per-script cap left a job of 4 scripts able to pin ~2.16 GB (reliability row 30): the job's scripts
    share MAX_JOB_STACK_BYTES, taken in order; the script that overflows is refused, the others run.  Every
    script of a job holding ustack and kstack at full depth (what honest answers do) fits."""
    def staged(sources):
        for n, text in enumerate(sources, 1):
            (tmp_path / ("q%d.bt" % n)).write_text(text)
        job = json.loads(Path(job_file(tmp_path, scripts=[{"name": "q%d" % n, "upload": "q%d.bt" % n}
                                                           for n in range(1, len(sources) + 1)])).read_text())
        job["_dir"] = str(tmp_path)
        return agent.stage_scripts(job, str(tmp_path))[0]

    worst = "k:f { @a[ustack] = count(); @b[ustack(126)] = count(); @c[ustack(125)] = count(); " \
            "@d[kstack(124)] = count(); }"
    assert agent.stack_map_bytes(worst) == 131072 * 8 * (127 + 126 + 125 + 124)     # 540,016,640: measured 540,546,120
    results = staged([worst] * 4)
    assert [r.name if hasattr(r, "name") else r["status"] for r in results] == ["q1", "refused", "refused", "refused"]
    assert "do not fit" in results[1]["error"] and "(502 MiB of kernel memory)" in results[1]["error"]
    honest = "k:f { @[kstack, ustack] = count(); @n[ustack(5)] = count(); }"
    assert agent.stack_map_bytes(honest) == 131072 * 8 * (127 + 5)
    assert all(hasattr(r, "name") for r in staged([honest] * 4))
    assert agent.stack_map_bytes("k:f { @[ustack(perf, 99999)] = count(); }") == 131072 * 8 * 127
