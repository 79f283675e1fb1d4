"""Checks about file descriptors: one per open, and which ones leak.

Tolerances, and why:
  * the workload's own start-up (dynamic loader, its truth log) opens a few files a
    comm-filtered script also sees: up to EXTRA_OPENS more opens than the truth shows
    (all of them closed again, so they never count as leaks);
  * scripts attach before the workload starts and stop after it ends, so nothing is in
    flight: the SET of leaked descriptors and opens-minus-closes must be exact; IN_FLIGHT
    only forgives one missing line in a per-open listing.
"""

from . import Verdict, check

EXTRA_OPENS = 4
IN_FLIGHT = 1


@check("fd_per_open")
def fd_per_open(output, truth, params):
    """Every fd the workload got must be printed, once per open (lines) or counted per fd (map)."""
    fds = truth.opened_fds
    if not fds:
        return Verdict(False, "no_truth", "the workload opened nothing during the run (a lab VM problem)")
    wanted = set(fds)
    n_opens = len(fds)

    # Form 1: a printf line per open that names the fd.
    rows = [set(r) & wanted for r in output.ints_by_line()]
    hit_rows = [r for r in rows if r]
    seen = set().union(*hit_rows) if hit_rows else set()
    if seen == wanted and n_opens - IN_FLIGHT <= len(hit_rows) <= 2 * (n_opens + EXTRA_OPENS):
        return Verdict(True, "ok", "%d descriptors printed for %d opens" % (len(hit_rows), n_opens))

    # Form 2: a map keyed by fd counting opens.
    for name, table in output.int_keyed_maps().items():
        if set(table) >= wanted:
            counted = sum(v for k, v in table.items() if k in wanted and isinstance(v, int))
            if n_opens - IN_FLIGHT <= counted <= n_opens + EXTRA_OPENS:
                return Verdict(True, "ok", "map %s counts the descriptors of %d opens" % (name, counted))

    if not seen and not any(set(t) & wanted for t in output.int_keyed_maps().values()):
        return Verdict(False, "no_fds", "none of the descriptors kprobeme received appear in your output")
    return Verdict(False, "count_mismatch", "%d lines name a descriptor, while kprobeme opened %d times"
                   % (len(hit_rows), n_opens))


@check("leaked_fds")
def leaked_fds(output, truth, params):
    """Leaks must be identified: the set of fds left open, or opens minus closes."""
    if not truth.opens:
        return Verdict(False, "no_truth", "the workload opened nothing during the run (a lab VM problem)")
    leaked = set(truth.leaked_fds)
    n_leaks = len(truth.leaks)
    n_opens = len(truth.opens)

    # Form 1: a map of descriptors still open at the end (delete on close).
    maps = output.int_keyed_maps()
    for name, table in maps.items():
        keys = set(table)
        if keys == leaked and leaked:
            return Verdict(True, "ok", "map %s holds the %d descriptors left open" % (name, len(keys)))

    # Form 2: printf lines that talk about leaks and name exactly the leaked fds.
    leak_lines = [line for line in output.lines if "leak" in line.lower() or "still open" in line.lower()]
    named = set()
    for line in leak_lines:
        named |= {int(t) for t in line.replace(",", " ").split() if t.lstrip("-").isdigit()}
    if leaked and leaked == named:
        return Verdict(True, "ok", "the leaked descriptors are named in your output")

    # Form 3: counts of opens and closes whose difference is the number of leaks.
    n_closes = len(truth.closes)
    nums = set(n for n in output.counts() if 0 <= n <= 100000)
    for o in nums:
        if not n_opens <= o <= n_opens + EXTRA_OPENS:
            continue
        c = o - n_leaks      # start-up extras are opened AND closed, so the difference is exact
        if n_leaks > 0 and c in nums and n_closes <= c <= n_closes + EXTRA_OPENS:
            return Verdict(True, "ok", "opens minus closes (%d - %d) gives the leaks" % (o, c))

    # All leaks listed, plus descriptors that were closed again: the script misses closes (with a short
    # leak period nearly every descriptor ends up leaked, so this is how "never sees a close" shows).
    for table in maps.values():
        if leaked and leaked < set(table):
            return Verdict(False, "close_path", "your map still lists descriptors that kprobeme closed")
    return Verdict(False, "no_leaks", "your output does not single out the leaked descriptors")
