"""The kprobes lab's truth records are out of a script's reach on a real lab VM (issue 34, item 3; the uprobes lab
has the same test over loopback: tests/faults/test_truth_sealed.py).

Before, kprobeme logged each record with write(2) as it happened: a uprobe on libc's write(), the
sys_enter_write tracepoint or a kprobe on vfs_write printed every answer while the scripts ran.  Now it keeps
its records in memory and writes the log at exit, which the agent brings about only once every script has
stopped.  One submission whose four scripts trace nothing but kprobeme's I/O is graded on the VM: the probes
fire during the window (they print kprobeme's notice and what it reads), no truth record or answer is in any
output, the truth log is whole in the reply, and no question passes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.vm, pytest.mark.timeout(4800)]  # the first VM test of a session pays vagrant up
REPO = Path(__file__).resolve().parents[2]

WRITES = ('uprobe:libc:write /comm == "kprobeme"/ { printf("libc write %d %s\\n", arg0, str(arg1, arg2 + 1)); }\n'
          'tracepoint:syscalls:sys_enter_write /comm == "kprobeme"/ { printf("tp write %d %s\\n", args->fd, '
          'str(args->buf, args->count + 1)); }\n'
          'kprobe:vfs_write /comm == "kprobeme"/ { printf("vfs_write %s\\n", str(uptr(arg1), arg2 + 1)); }\n')
READS = ('kprobe:vfs_read /comm == "kprobeme"/ { @buf[tid] = arg1; }\n'
         'kretprobe:vfs_read /@buf[tid]/ { if (retval > 0) { printf("read %s\\n", str(uptr(@buf[tid]), retval + 1)); }'
         ' delete(@buf[tid]); }\n')
# str(p, n) reads n bytes with the terminator: n + 1 shows all n written or read.
ORACLE = {"q1.bt": WRITES, "q2.bt": READS, "q3.bt": WRITES + READS,
          "q4.bt": WRITES.replace('/comm == "kprobeme"/', '/comm == "kprobeme" || comm == "bpfhol-agent"/')}


def test_probes_on_kprobemes_io_read_no_truth_record_and_pass_nothing(lab_vm, tmp_path):
    roster = tmp_path / "vm.yml"
    roster.write_text(yaml.safe_dump([{"student": "vm", "host": lab_vm.host, "port": lab_vm.port,
                                       "user": "bpfhol-grader", "key": lab_vm.grader_key}]))
    folder = tmp_path / "SUBMISSIONS" / "oracle"
    folder.mkdir(parents=True)
    for name, text in ORACLE.items():
        (folder / name).write_text(text)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "submissions", str(folder.parent), "--vms", str(roster),
                           "--lab", "kprobes", "--results", str(results), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads((results / "journal.jsonl").read_text().splitlines()[-1])
    doc = json.loads((results / "students" / "oracle" / row["evidence"]).read_text())
    truth = doc["reply"]["workload"]["truth"]
    records = [json.loads(line) for line in truth if line.strip()]
    leaks = [r for r in records if r.get("event") == "leak"]
    lab_file = doc["job"]["workload"]["create_file"]
    scripts = {s["name"]: s for s in doc["reply"]["scripts"]}
    printed = {name: s.get("stdout", "") for name, s in scripts.items()}
    print({name: (s["status"], s.get("attached"), len(printed[name]), s.get("stderr", "")[-200:])
           for name, s in scripts.items()}, "records", len(records), "score", row["score"])
    assert all(s["status"] == "ran" and s.get("attached") for s in scripts.values()), scripts
    # the probes were live in the window: they saw kprobeme's notice and the lab file's contents it read
    for probe in ("libc write 1 .", "tp write 1 .", "vfs_write ."):
        assert probe in printed["q1"], printed["q1"][-800:]
    assert "bpfhol lab data" in printed["q2"], printed["q2"][-800:]
    # ... and nothing of the truth: no record, no field of one, not the lab file's name
    for name, text in printed.items():
        for needle in ('"event"', "leak_every", "spare_fds", lab_file.rsplit("/", 1)[1]):
            assert needle not in text, (name, needle, text[-800:])
    # the log itself is whole (written at exit, after the scripts stopped), and nothing passed
    assert records[0]["event"] == "start" and records[-1]["event"] in ("done", "exit") and leaks, truth[-3:]
    assert row["status"] == "graded" and row["score"] == 0, row["exercises"]
    assert not any(e["passed"] for e in row["exercises"])
