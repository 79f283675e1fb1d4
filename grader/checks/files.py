"""Checks about which file a workload opened."""

import re

from ..bpftrace_output import PATH_RE
from . import Verdict, check

# The dynamic loader opens these in every new process; a comm-filtered script sees them too.
LOADER_PATHS = re.compile(r"^(/etc/ld\.so|/lib|/usr/lib|/lib64|/usr/lib64)")
MAX_FOREIGN_PATHS = 5


@check("opened_path")
def opened_path(output, truth, params):
    """The file really opened must appear in what the script printed (printf line or map key).

    The path is random per grading run, so it can only appear if the script traced it.
    """
    if not truth.opens:
        return Verdict(False, "no_truth", "the workload opened nothing during the run (a lab VM problem)")
    targets = truth.paths
    texts = output.texts()
    if any(t in text for t in targets for text in texts):
        if any(d in text for d in truth.decoys for text in texts):
            return Verdict(False, "unfiltered", "your output includes a file another process opened meanwhile")
        foreign = set()
        for text in texts:
            for m in PATH_RE.finditer(text):
                p = m.group(0)
                if p not in targets and len(p) > 1 and not LOADER_PATHS.match(p) and not p.startswith("/run/bpfhol-agent"):
                    foreign.add(p)
        if len(foreign) > MAX_FOREIGN_PATHS:
            return Verdict(False, "unfiltered", "%d other paths were printed as well" % len(foreign))
        return Verdict(True, "ok", "the file kprobeme opened appears in your output")
    if _looks_empty(output, texts):
        return Verdict(False, "empty_path", "your output has entries but their path is empty")
    return Verdict(False, "not_found", "%d lines and %d map entries printed, none names the file opened"
                   % (len(output.lines), sum(1 for _ in output.map_items())))


def _looks_empty(output, texts):
    """str() of a user pointer read as kernel memory prints as an empty string."""
    if any(key == "" for _, key, _ in output.map_items()):
        return True
    lines = output.lines
    if not lines:
        return False
    no_path = [line for line in lines if "/" not in line]
    blankish = [line for line in lines if re.search(r'(""|: *$|=\s*$|\s$)', line) or line.rstrip() != line]
    return len(no_path) == len(lines) and (blankish or any("kprobeme" in line for line in lines))
