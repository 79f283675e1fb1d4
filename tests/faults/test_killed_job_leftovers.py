"""Issue 34, item 10: a job killed mid-run left its /run/bpfhol-lab/<id> behind, and a later job that drew
the same id failed as "agent failed: [Errno 17] File exists" (the integration tests draw ids from fixed
seeds, so one interrupted test run failed the next full run from a fresh clone).  Now the next job clears,
under the host's lock, whatever a dead job left: its lab folder, its work folder (staged scripts, truth
log) and its processes still running.  A folder a live job holds (flock) is never touched.

Through the real agent on this host (LocalBackend), the fault lab, real bpftrace and kprobeme."""

import fcntl
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from faultkit import FAULT_LAB, reference
from grader import grading
from grader.backend.local import LocalBackend
from grader.labspec import load_lab

pytestmark = pytest.mark.faults


def _job(seed):
    lab = load_lab(str(FAULT_LAB))
    job = grading.build_job(lab, {ex.id: ("upload", ex.script) for ex in lab.exercises}, rng=random.Random(seed))
    return job, {name: text.encode() for name, text in reference().items()}


def _run(lab_prefix, job, files):
    return LocalBackend(agent=lab_prefix["agent"]).run_agent_job(job, files, timeout=grading.job_timeout(job))


def test_the_next_job_clears_a_killed_jobs_leftovers(lab_prefix):
    seed = random.randrange(1 << 30)
    job, files = _job(seed)
    lab_folder = Path(job["workload"]["create_file"]).parent
    # what a job killed mid-run leaves: the lab folder of the very id the next job draws ...
    Path("/run/bpfhol-lab").mkdir(mode=0o755, exist_ok=True)
    lab_folder.mkdir(mode=0o755)
    (lab_folder / "notes-old.dat").write_text("bpfhol lab data of a dead job\n")
    # ... its work folder (the staged scripts, the truth log) and a process still running from it
    dead_work = Path("/run/bpfhol-agent-dead%s" % uuid.uuid4().hex[:4])          # as tempfile.mkdtemp names it
    dead_work.mkdir(mode=0o700)
    (dead_work / "truth.jsonl").write_text('{"event": "start", "seed": 1}\n')
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", str(dead_work / "s0.bt")],
                              start_new_session=True)
    # ... while a folder that a live job holds stays as it is
    live = Path("/run/bpfhol-lab/%s" % uuid.uuid4().hex[:16])
    live.mkdir(mode=0o755)
    live_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(live_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        reply = _run(lab_prefix, job, files)
        assert reply["ok"], reply.get("error")
        assert reply["timing"]["leftovers_cleared"] >= 2, reply["timing"]
        assert all(item["status"] == "ran" for item in reply["scripts"])
        assert any('"event": "open"' in line for line in reply["workload"]["truth"])
        assert not lab_folder.exists() and not dead_work.exists()
        deadline = time.monotonic() + 10
        while orphan.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orphan.poll() is not None, "the dead job's process still runs"
        assert live.is_dir()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait(timeout=10)
        os.close(live_fd)
        os.rmdir(live)
