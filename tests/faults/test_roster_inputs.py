"""Issue 21 #5 and #6 through the grader's CLI, as an instructor meets them: an ssh_config roster with Match
blocks (a traceback before), and key files that are a public key, 2 GiB, or missing (retried as "host
unreachable", or read whole, before).  Nothing here connects anywhere: each is decided before grading."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def grader(*args):
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_ssh_config_with_match_blocks_is_read_not_a_traceback(tmp_path):
    cfg = tmp_path / "vms.cfg"
    cfg.write_text("Host alice\n  HostName 127.0.0.1\n  Port 9\n  User bpfhol-grader\n"
                   "Match host bob exec \"touch %s\"\n  User root\nMatch all\n  ServerAliveInterval 5\n"
                   "Host bob\n  HostName 127.0.0.1\n  Port 9\n" % (tmp_path / "pwned"))
    results = tmp_path / "res"
    proc = grader("grade", cfg, "--lab", "kprobes", "--results", results, "--retries", 1, "--connect-timeout", 2)
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr   # both VMs down: not gradable
    assert "2 Match block(s) ignored" in proc.stderr, proc.stderr
    rows = (results / "journal.jsonl").read_text().splitlines()
    assert len(rows) == 2 and all('"not_gradable"' in r and "unreachable" in r for r in rows), rows
    assert not (tmp_path / "pwned").exists()                 # Match exec is never run


def test_a_wrong_shared_key_file_stops_before_grading_with_one_line(tmp_path):
    pub, huge = tmp_path / "id.pub", tmp_path / "huge"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE bpfhol\n")
    with open(huge, "wb") as fh:                     # sparse 2 GiB: refused by its size, never read
        fh.truncate(2 << 30)
    for key, says in ((pub, "is a public key"), (huge, "not an SSH private key"), (tmp_path / "nope", "not found")):
        roster = tmp_path / "r.yml"
        roster.write_text("students:\n" + "".join("  - {student: s%d, host: 127.0.0.1, port: 9, key: %s}\n"
                                                  % (i, key) for i in range(3)))
        proc = grader("grade", roster, "--lab", "kprobes", "--results", tmp_path / ("res-" + key.name))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "used by 3 rows" in lines[0], proc.stderr
        assert not (tmp_path / ("res-" + key.name) / "journal.jsonl").exists()     # nobody was tried
