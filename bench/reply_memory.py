#!/usr/bin/env python3
"""Benchmark: the grader's peak memory at --parallel N while forged agents send costly replies.

    .venv/bin/python bench/reply_memory.py [--parallel 16] [--target-mib 512]

A cohort of N students on one loopback sshd host (this machine's kernel; run as root): one honest
student (the real agent, the fault lab's reference answers) and N-1 forged agents, half replying
with JSON that fits the job's reply cap but holds ~3 million values ([{},{},...]), half with the
issue's reproduction, 31.5 MiB of it.  Before the fix one such reply cost 1.6 GB.
Peak RSS is the grader process's own (os.wait4 ru_maxrss); printed beside the target and the ratio.
Never part of the tests (tests/faults/test_reply_memory.py checks the verdicts)."""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "faults")]

from faultkit import (FAULT_LAB, answers, fault_lab_reply_cap, grader_cmd, hostile_reply_agent,  # noqa: E402
                      reference, row, write_roster)
from sshd_hosts import SshFarm, ensure_tracefs, install_lab_prefix  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--target-mib", type=int, default=512)
    args = ap.parse_args()
    ensure_tracefs()
    work = Path(tempfile.mkdtemp(prefix="bpfhol-bench-reply-"))
    real = str(install_lab_prefix(work / "prefix"))
    farm = SshFarm()
    try:
        host = farm.add()
        ref = answers(work, "ref", reference())
        cap = fault_lab_reply_cap()
        within = hostile_reply_agent(work / "agent-items", real, cap - 4096)
        huge = hostile_reply_agent(work / "agent-huge", real, int(31.5 * (1 << 20)))
        n = args.parallel - 1
        rows = [row("honest", host, real, ref)]
        rows += [row("items-%d" % i, host, within, ref) for i in range(n - n // 2)]
        rows += [row("huge-%d" % i, host, huge, ref) for i in range(n // 2)]
        roster = write_roster(work / "roster.yml", rows)
        t0 = time.monotonic()
        proc = subprocess.Popen(grader_cmd("grade", roster, "--lab", FAULT_LAB, "--results", work / "res",
                                           "--parallel", args.parallel, "--quiet"), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        peak = usage.ru_maxrss / 1024
        print("students %d (1 honest, %d forged: %d within the %.1f MiB reply cap, %d of 31.5 MiB), --parallel %d"
              % (len(rows), n, n - n // 2, cap / 2 ** 20, n // 2, args.parallel))
        print("grader exit %d, wall %.1f s, CPU %.1f s" % (os.waitstatus_to_exitcode(status), wall,
                                                          usage.ru_utime + usage.ru_stime))
        print("peak RSS %.0f MiB; target %d MiB; ratio %.2f" % (peak, args.target_mib, peak / args.target_mib))
    finally:
        farm.close()


if __name__ == "__main__":
    main()
