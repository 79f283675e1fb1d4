"""The agent runs as root on the lab host: what it refuses matters more than what it runs."""

import json
import os
import subprocess
import sys
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
    for args in ({"file": "/etc/../etc/shadow"}, {"file": "$(id)"}, {"--x": "1"}, {"file": "a b"}):
        with pytest.raises(agent.JobError):
            agent._workload_argv({"workload": {"program": "kprobeme", "args": args}}, "/tmp/t")
    argv = agent._workload_argv({"workload": {"program": "kprobeme", "args": {"leak-every": 3}}}, "/tmp/t")
    assert argv[1:] == ["--leak-every", "3", "--truth-log", "/tmp/t"]


def test_script_copy_refuses_links_specials_and_giants(tmp_path):
    big = tmp_path / "big.bt"
    with open(big, "wb") as fh:
        fh.truncate(5 << 30)                         # 5 GiB, sparse: must not be read whole
    assert agent._read_script(str(big), str(tmp_path / "o1"), 65536)[0] == "too_large"
    (tmp_path / "link.bt").symlink_to("/etc/passwd")
    assert agent._read_script(str(tmp_path / "link.bt"), str(tmp_path / "o2"), 65536)[0] == "unreadable"
    assert agent._read_script("/dev/zero", str(tmp_path / "o3"), 65536)[0] == "unreadable"
    assert agent._read_script(str(tmp_path / "none.bt"), str(tmp_path / "o4"), 65536)[0] == "missing"


def test_random_file_must_stay_under_its_root():
    for bad in ["/etc/passwd", "/var/tmp/bpfhol-lab/../x", "/var/tmp/bpfhol-labx/y"]:
        with pytest.raises(agent.JobError):
            agent._make_random_file(bad, "x")
