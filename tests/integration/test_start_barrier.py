"""The agent's start barrier, through the real agent, real bpftrace and real kprobeme on this host
(tracepoints: this host has no kprobes; the same barrier serves kprobes on the lab VMs, tests/vm).

The workload is started held, every script under bpftrace with __BPFTRACE_NOTIFY_PROBES_ATTACHED set,
and the workload is released only once each bpftrace has printed that marker, which it does after
attaching every probe (and which never reaches the student's output).  So a script filtered on kprobeme sees exactly the loop: every open (none missed, even beside a
script that attaches slowly), no loader or truth-log opens, and descriptors that start where the
job's offset puts them."""

import json
import random

import pytest

from grader import grading
from grader.backend.local import LocalBackend
from grader.labspec import load_lab
from simulate import read_truth

pytestmark = pytest.mark.integration

SEE_ALL = """
tracepoint:syscalls:sys_enter_openat /comm == "kprobeme"/ { printf("%d open %s\\n", pid, str(args->filename)); }
tracepoint:syscalls:sys_exit_openat /comm == "kprobeme"/ { printf("%d fd %d\\n", pid, args->ret); }
tracepoint:syscalls:sys_enter_close /comm == "kprobeme"/ { printf("%d close %d\\n", pid, args->fd); }
"""
# Hundreds of tracepoints: attaching takes seconds, so a barrier that released early would show here.
# (It prints as it goes: detaching hundreds of probes can outlast the grace, so END maps are not used.)
SLOW_TO_ATTACH = 'tracepoint:syscalls:sys_enter_* /comm == "kprobeme"/ { printf("%d %s\\n", pid, probe); }\n'


@pytest.fixture(scope="module")
def short_lab(test_lab, tmp_path_factory):
    """The test lab with a 3 s window (its own: 6 s): the same count of opens (8-20), closer together, so a
    barrier that released early would cost the slow script more of them; 3 s less per job (7 jobs here)."""
    import shutil

    import yaml

    dest = tmp_path_factory.mktemp("short-lab") / "tracepoints"
    shutil.copytree(test_lab, dest)
    spec = yaml.safe_load((dest / "lab.yaml").read_text())
    spec["window_seconds"] = 3
    (dest / "lab.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(dest)


def run_job(lab_prefix, lab_dir, scripts, fd_offset=None, seed=None):
    lab = load_lab(lab_dir)
    names = {"q%d" % (i + 1): text for i, text in enumerate(scripts)}
    job = grading.build_job(lab, {ex.id: ("upload", ex.id + ".bt") for ex in lab.exercises},
                            rng=random.Random(seed) if seed is not None else None)
    job["scripts"] = [{"name": name, "upload": name + ".bt"} for name in names]
    if fd_offset is not None:
        job["workload"]["fd_offset"] = fd_offset
        job["workload"]["args"]["spare-fds"] = fd_offset
    reply = LocalBackend(agent=lab_prefix["agent"]).run_agent_job(
        job, {name + ".bt": text.encode() for name, text in names.items()}, timeout=grading.job_timeout(job))
    assert reply["ok"], reply
    return job, reply, read_truth(reply["workload"]["truth"])


def printed(item, pid):
    """The lines about our kprobeme (this host's kernel is shared: other tests' kprobemes show too)."""
    text = "".join(json.loads(line)["data"] for line in item["stdout"].splitlines()
                   if line.startswith('{"type": "printf"'))
    mine = "%d " % pid
    return "".join(ln[len(mine):] + "\n" for ln in text.splitlines() if ln.startswith(mine))


def test_a_script_sees_every_open_and_nothing_but_the_loop(lab_prefix, short_lab):
    for attempt in range(3):
        job, reply, truth = run_job(lab_prefix, short_lab, [SEE_ALL, SLOW_TO_ATTACH], seed=attempt)
        see, slow = reply["scripts"]
        assert see["attached"] and slow["attached"], (see["stderr"], slow["stderr"])
        for item in (see, slow):           # bpftrace's attach marker is the agent's, not the student's
            assert "__BPFTRACE_NOTIFY_PROBES_ATTACHED" not in item["stdout"] + item["stderr"]
        assert truth.released and truth.opens
        text = printed(see, truth.pid)
        opens = [ln[5:] for ln in text.splitlines() if ln.startswith("open ")]
        fds = [int(ln[3:]) for ln in text.splitlines() if ln.startswith("fd ")]
        closes = [int(ln[6:]) for ln in text.splitlines() if ln.startswith("close ")]
        # nothing of the start-up (loader, libraries, the truth log): only the lab file, every time
        assert opens == [path for _, _, path in truth.opens], opens[:4]
        assert fds == truth.opened_fds
        assert closes == truth.closed_fds
        # the slow script (hundreds of probes) was live for the whole loop too
        probes = printed(slow, truth.pid).splitlines()
        assert slow["attach_seconds"] > see["attach_seconds"] or slow["attach_seconds"] > 1, slow["attach_seconds"]
        assert probes.count("tracepoint:syscalls:sys_enter_openat") == len(truth.opens)
        assert probes.count("tracepoint:syscalls:sys_enter_close") == len(truth.closes)


def test_the_first_descriptor_moves_with_the_offset(lab_prefix, short_lab):
    firsts = {}
    for offset in (0, 9, 40):
        _, reply, truth = run_job(lab_prefix, short_lab, [SEE_ALL], fd_offset=offset)
        assert truth.spare_fds == offset
        firsts[offset] = truth.opened_fds[0]
        seen = [int(ln[3:]) for ln in printed(reply["scripts"][0], truth.pid).splitlines() if ln.startswith("fd ")]
        assert seen[0] == firsts[offset]
    # stdin, stdout, stderr, the truth log, then the spare descriptors
    assert firsts == {0: 4, 9: 13, 40: 44}


def test_a_script_that_never_attaches_does_not_hold_the_workload(lab_prefix, short_lab):
    broken = 'tracepoint:syscalls:sys_enter_no_such_call { printf("x\\n"); }\n'
    _, reply, truth = run_job(lab_prefix, short_lab, [SEE_ALL, broken])
    see, bad = reply["scripts"]
    assert see["attached"] and not bad["attached"] and bad["exit_code"] not in (0, None)
    assert truth.released and len(truth.opens) >= 8
