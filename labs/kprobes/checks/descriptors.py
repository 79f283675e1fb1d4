"""Checks about file descriptors: one per open (q2), and which ones leak (q3).

The agent starts the workload held and releases it only once every script has attached
(grader/agent.py), so a script filtered on the workload sees exactly the loop's opens,
closes and leaks: the figures below are demanded EXACTLY, with no allowance for missed or
extra events.  Every form must follow this run's randomized truth (the count of opens, the
leak period and the starting descriptor change each run), so an output that does not depend
on the run -- constants, ranges, every number on every line -- fails (tests/unit/test_guessing.py
measures how often, over thousands of simulated runs; tests/unit/test_answer_variants.py keeps
the correct answers written in other ways that must pass).

Map and histogram forms are read only when the output holds at most MAX_FD_MAPS tables keyed by
descriptor-like numbers: more is a list of guesses, one of which would match some run.

fd_per_open (q2) accepts, for the N opens of the run:
  * lines: one shape of line (e.g. "open ... -> fd 5") whose fd column is exactly the N returned
    descriptors in order (lines about other processes may be mixed in when each line names its
    process), with no more than NOISE_LINES lines carrying numbers in all;
  * a map keyed by fd (or by a tuple holding the fd, e.g. @[pid, fd] or @[comm, fd]) whose
    values are exactly how many times each descriptor was returned;
  * a map keyed by event number whose values, in key order, are exactly the N descriptors;
  * an lhist (or hist) with one bucket per descriptor whose counts are exactly those.
leaked_fds (q3) accepts:
  * a map keyed by fd (or a tuple holding it) whose keys are exactly the leaked descriptors;
  * lines that speak of leaks ("leaked fd=5", "pid 4242 leaked fd 5", "still open: 5 6") that
    name exactly the leaked descriptors;
  * an opens count and a closes count, labelled as such (map names, map keys, words beside
    the numbers), equal to the run's opens and closes (the last figure printed counts).
"""

from collections import Counter

from grader.checks import Verdict, check
from .run import run_of
from .reading import (columns, int_value, keyed_tables, labelled_counts, shape_of,
                      workload_lines)

MAX_FD_MAPS = 4
LEAK_WORDS = ("leak", "still open", "not closed", "never closed", "unclosed", "left open", "remain")


def noise_limit(n_opens):
    """Lines with numbers a line-per-open answer may print: entry, return, read and close lines of each
    open, plus a few headers; far below what listing guesses for every possible run would take."""
    return 6 * n_opens + 20


@check("fd_per_open")
def fd_per_open(output, truth, params):
    run = run_of(truth)
    fds = run.opened_fds
    if not fds:
        return Verdict(False, "no_truth", "the workload opened nothing during the run (a lab VM problem)")
    n = len(fds)
    wanted = Counter(fds)

    noisy = None
    for lines, scope in ((output.lines, ""), (workload_lines(output.lines, truth), " naming " + truth.comm)):
        numbered = sum(1 for line in lines if shape_of(line)[1])
        if any(values == fds for values in columns(lines).values()):
            if numbered <= noise_limit(n):
                return Verdict(True, "ok", "a line per open%s names its descriptor, in order (%d opens)"
                               % (scope, n))
            noisy = noisy or Verdict(False, "too_many_numbers", "%d of your lines carry numbers for %d opens: "
                                     "print only %s's descriptors, one line per open" % (numbered, n, truth.comm))

    tables = fd_tables(output, truth)
    for (name, pos), table in tables.items():
        counts = {fd: int_value(v) for fd, v in table.items()}
        if counts == dict(wanted):
            return Verdict(True, "ok", "map %s counts each descriptor's opens (%d opens)" % (name, n))
        ordered = [int_value(table[k]) for k in sorted(table)]
        if ordered == fds:
            return Verdict(True, "ok", "map %s lists the descriptors in order (%d opens)" % (name, n))

    hists = output.hist_buckets()
    for label, rows in hists.items() if len(hists) <= MAX_FD_MAPS else ():
        nonzero = [(lo, hi, c) for lo, hi, c in rows if c]
        if nonzero and all(lo == hi for lo, hi, _ in nonzero) and {lo: c for lo, _, c in nonzero} == dict(wanted):
            return Verdict(True, "ok", "histogram %s has one bucket per descriptor with its opens" % label)

    if noisy:
        return noisy
    printed = {n for line in output.lines for n in shape_of(line)[1]}
    printed |= {fd for table in keyed_tables(output, truth).values() for fd in table}
    if not printed & set(fds):
        return Verdict(False, "no_fds", "none of the descriptors %s received appear in your output" % truth.comm)
    return Verdict(False, "count_mismatch", "descriptor numbers appear, but not one per open in the order %s "
                   "got them (nor each descriptor with its number of opens)" % truth.comm)


@check("leaked_fds")
def leaked_fds(output, truth, params):
    run = run_of(truth)
    if not run.opens:
        return Verdict(False, "no_truth", "the workload opened nothing during the run (a lab VM problem)")
    leaked = set(run.leaked_fds)
    n_opens, n_closes = len(run.opens), len(run.closes)

    tables = fd_tables(output, truth)
    matches = [name for (name, _), table in tables.items() if set(table) == leaked]
    if matches:
        return Verdict(True, "ok", "map %s holds the %d descriptors left open" % (matches[0], len(leaked)))

    named = _leak_line_fds(output.lines, truth)
    if leaked and any(candidate == leaked for candidate in named):
        return Verdict(True, "ok", "your lines name the %d leaked descriptors" % len(leaked))

    counts = labelled_counts(output, truth)
    if counts.get("opens") == n_opens and counts.get("closes") == n_closes:
        return Verdict(True, "ok", "opens minus closes (%d - %d) gives the leaks" % (n_opens, n_closes))

    # Every leak listed, plus descriptors that were closed again: the script does not see the closes
    # (with a short leak period nearly every descriptor is leaked, so this is how it shows).
    closed_only = set(run.opened_fds) - leaked
    for table in tables.values():
        if leaked and leaked < set(table) and set(table) & closed_only:
            return Verdict(False, "close_path", "your map still lists descriptors that %s closed" % truth.comm)
    if counts.get("opens") == n_opens and not counts.get("closes"):
        return Verdict(False, "close_path", "your output counts the opens but no closes")
    return Verdict(False, "no_leaks", "your output does not single out the leaked descriptors")


def _leak_line_fds(lines, truth):
    """Candidate sets of descriptors named by the lines that speak of leaks (the workload's pid aside):
    either one number per line, one line per leak ("leaked fd=5", "pid 4242 leaked fd 5"), or a single
    line listing them all ("still open: 5 6 7").  Never more than these two readings, so printing many
    guesses cannot pass."""
    rows = [[n for n in shape_of(line)[1] if n != truth.pid]
            for line in lines if any(w in line.lower() for w in LEAK_WORDS)]
    rows = [row for row in rows if row]
    candidates = []
    if rows and all(len(row) == 1 for row in rows) and len({row[0] for row in rows}) == len(rows):
        candidates.append({row[0] for row in rows})
    if len(rows) == 1:
        candidates.append(set(rows[0]))
    return candidates


def fd_tables(output, truth):
    """Tables keyed by descriptor-like numbers, or {} when there are more than MAX_FD_MAPS of them (a
    list of guesses); tables keyed only by the workload's pid are not descriptor tables."""
    tables = {where: table for where, table in keyed_tables(output, truth).items()
              if not (truth.pid and set(table) == {truth.pid})}
    return tables if len(tables) <= MAX_FD_MAPS else {}
