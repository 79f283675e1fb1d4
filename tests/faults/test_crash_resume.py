"""The grader SIGKILLed mid-cohort and started again resumes (no student recorded twice, a torn
line breaks nothing); a disk that fills up under the results stops the run with one line and
exit 3, earlier results intact, and a rerun after freeing space finishes the cohort; a changed
host key is refused with a message naming --replace-host-keys, and accepted with it."""

import os
import signal
import subprocess
import time

import pytest

from faultkit import (FAULT_LAB, REPO, agent_running_under, answers, assert_one_line_error, graded_normally,
                      grader_cmd, job_intervals, logging_agent, reference, row, run_grader, validate_results, wait_no_agents, write_roster)

pytestmark = pytest.mark.faults


def journal_lines(results):
    try:
        return (results / "journal.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


def test_grader_sigkilled_mid_cohort_resumes(tmp_path, farm, lab_prefix):
    hosts = [farm.add() for _ in range(3)]
    ref = answers(tmp_path, "ref", reference())
    agents = [logging_agent(tmp_path / ("agent-s%d" % i), lab_prefix["agent"]) for i in range(3)]
    rows = [row("s%d" % i, h, agents[i], ref) for i, h in enumerate(hosts)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    results = tmp_path / "res"
    args = ["grade", roster, "--lab", FAULT_LAB, "--results", results, "--parallel", 1, "--connect-timeout", 3]
    proc = subprocess.Popen(grader_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(journal_lines(results)) >= 1, 60, "the first result")
        wait_for(lambda: agent_running_under(hosts[1].proc.pid), 30, "the second student's run")
        time.sleep(1)
        os.kill(proc.pid, signal.SIGKILL)                 # no cleanup, no flush, no goodbye
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = journal_lines(results)
    assert len(first) == 1
    torn = '{"student": "s1", "status": "graded", "score": 1'
    with open(results / "journal.jsonl", "a") as fh:          # what a kill inside write() would leave
        fh.write(torn)
    assert wait_no_agents(lab_prefix["root"]), "the killed grader's agent run never ended"
    again, wall = run_grader(*args, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    # jobs each VM ran over both runs: s0 once (kept, not regraded), s1 twice (cut by the kill, then
    # again), s2 once (only the resumed run reached it)
    assert [len(job_intervals(a)) for a in agents] == [1, 2, 1], [job_intervals(a) for a in agents]
    by = validate_results(results, ["s0", "s1", "s2"], torn=(torn,))
    assert journal_lines(results)[0] == first[0]             # s0 was not regraded
    assert all(graded_normally(r) for r in by.values()), by


def test_disk_full_under_results(tmp_path, farm, lab_prefix):
    host = farm.add()
    ref = answers(tmp_path, "ref", reference())
    rows = [row("s%d" % i, host, lab_prefix["agent"], ref) for i in range(3)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    results = tmp_path / "res"
    results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "bpfhol-faults", str(results)], check=True)
    try:
        args = ["grade", roster, "--lab", FAULT_LAB, "--results", results, "--parallel", 1, "--connect-timeout", 3]
        proc = subprocess.Popen(grader_cmd(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        wait_for(lambda: len(journal_lines(results)) >= 1, 60, "the first result")
        fd = os.open(results / "filler", os.O_WRONLY | os.O_CREAT)   # fill the disk to the last byte
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        out, err = proc.communicate(timeout=120)
        proc.stderr = err
        assert_one_line_error(proc, 3, "cannot write results", "No space left", "rerun")
        kept = journal_lines(results)
        assert 1 <= len(kept) < 3
        by = validate_results(results, ["s%d" % i for i in range(len(kept))], reports=False)
        assert all(graded_normally(r) for r in by.values()), by
        os.unlink(results / "filler")                       # free space, rerun: the cohort finishes
        again, _ = run_grader(*args, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        by = validate_results(results, ["s0", "s1", "s2"])
        assert all(graded_normally(r) for r in by.values()), by
    finally:
        if "proc" in locals() and proc.poll() is None:
            proc.kill()
        subprocess.run(["umount", "-l", str(results)])


def test_changed_host_key_needs_replace_host_keys(tmp_path, farm, lab_prefix):
    host = farm.add()
    roster = write_roster(tmp_path / "roster.yml",
                          [row("kim", host, lab_prefix["agent"], answers(tmp_path, "kim", reference()))])
    args = ["grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res", "--connect-timeout", 3,
            "--known-hosts", tmp_path / "res" / "known_hosts"]
    first, _ = run_grader(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    host.stop()
    host.regenerate_host_key()                               # the VM was rebuilt
    host.start()
    refused, wall = run_grader(*args, "--force")
    assert refused.returncode == 1 and wall < 20
    last = validate_results(tmp_path / "res", ["kim"], once=False)["kim"]
    assert last["status"] == "not_gradable"
    assert "host key" in last["error"] and "--replace-host-keys" in last["error"]
    assert "--replace-host-keys" in refused.stdout                # the instructor sees it in the table
    assert "--replace-host-keys" in refused.stderr                # and in the progress line
    replaced, _ = run_grader(*args, "--force", "--replace-host-keys")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    last = validate_results(tmp_path / "res", ["kim"], once=False)["kim"]
    assert graded_normally(last), last
    known = (tmp_path / "res" / "known_hosts").read_text().splitlines()
    new_key = (host.workdir / "host_key.pub").read_text().split()[1]
    assert [line.split()[2] for line in known] == [new_key]  # the old key is gone, the new one recorded
