"""Checks about which file a workload opened.

opened_path (q1) accepts an output that names the file the workload opened in this run -- its
full path (from the syscall's user pointer, or from the kernel's struct filename) or its base
name (e.g. from a dentry) -- anywhere: a printf line, a map key or a string map value.  The path
is random per run, so it can only be there if the script traced it.  It fails when the output
also names the decoy: a file beside the lab file that the agent opens from another process
during the run, so a script that does not keep to the workload's events always shows it.
"""

import os
import re

from grader.checks import Verdict, check
from .run import run_of


def _names(paths):
    """The full paths and their base names (base names are random too: <kind>-<token>.dat)."""
    out = set()
    for path in paths:
        if path:
            out.add(path)
            out.add(os.path.basename(path))
    return out


def _mentions(texts, names):
    return any(name in text for name in names for text in texts)


@check("opened_path")
def opened_path(output, truth, params):
    run = run_of(truth)
    if not run.opens:
        return Verdict(False, "no_truth", "the workload opened nothing during the run (a lab VM problem)")
    texts = output.texts()
    if _mentions(texts, _names(run.paths)):
        if _mentions(texts, _names(truth.decoys)):
            return Verdict(False, "unfiltered", "your output includes a file another process opened meanwhile")
        return Verdict(True, "ok", "the file %s opened appears in your output" % (truth.comm or "the workload"))
    if _looks_empty(output, truth):
        return Verdict(False, "empty_path", "your output has entries but their path is empty")
    return Verdict(False, "not_found", "%d lines and %d map entries printed, none names the file opened"
                   % (len(output.lines), sum(1 for _ in output.map_items())))


def _looks_empty(output, truth):
    """str() of a user pointer read as kernel memory prints as an empty string."""
    if any(key == "" for _, key, _ in output.map_items()):
        return True
    if any(val == "" for _, _, val in output.map_items()):
        return True
    lines = output.lines
    if not lines:
        return False
    no_path = [line for line in lines if "/" not in line]
    blankish = [line for line in lines if re.search(r'(""|: *$|=\s*$|\s$)', line) or line.rstrip() != line]
    return len(no_path) == len(lines) and (blankish or any(truth.comm and truth.comm in line for line in lines))
