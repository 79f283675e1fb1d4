"""The kprobes lab's checks (lab.yaml names this folder as its checks_module): what a correct answer to each
question about kprobeme is, read from the student's output against kprobeme's truth log.

  run.py          kprobeme's opens, closes and leaks in one grading run, from the truth log's records
  reading.py      finding the numbers a student printed, whatever the wording (line shapes, keyed tables)
  files.py        opened_path (q1)
  descriptors.py  fd_per_open (q2), leaked_fds (q3)
  stacks.py       leak_sites (q4)

Another lab can ask these questions of kprobeme with other probes (tests/fixtures/labs/tracepoints):
its lab.yaml says checks_from: kprobes.
"""

from . import descriptors, files, run, stacks  # noqa: F401  (importing registers the checks)
