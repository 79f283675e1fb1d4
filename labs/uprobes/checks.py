"""What a correct answer is in the uprobes lab (loaded by lab.yaml's checks_module).

The truth is uprobeme's log (labs/uprobes/workload/uprobeme.c): one "order" record per call of
process_order(order_id, qty) with what it returned ("ret"), one "quote" record per call of
fetch_quote() with its measured duration ("ns") and whether it was one of the run's slow calls, and
one "strtol" record per call of libc's strtol() with the job that made it.  Every value is drawn
from a fresh seed per grading run, so what a check accepts must come from watching the run.

call_values (u1, u2): the run's values of one field, one per call.  Accepted: a column of the printf
  lines (lines with the same count of integers, the same position) whose values are exactly the
  run's values (as a multiset: per-CPU buffers may reorder lines); or a map keyed by them (any key
  field), whatever its values hold (a count, each order's qty, a timestamp: its keys are exactly the
  run's distinct values); or a map whose values are exactly them.  A guess cannot pass: the values
  are 6-digit ids or prices drawn per call, and the whole set must match.  Printing the other field
  (order ids for u2) gets its own hint.
latency_hist (u3): a histogram (hist or lhist, any unit: ns, us, ms or s; one map or summed over a
  map's keys) with one entry per call of the run, or one duration per printf line (a column of the
  lines, beside any other numbers such as a sequence number or pid; an integer or a decimal such as
  "39.417" in any of those units, read to within one unit of its last digit), that this run's
  calls can fill: each call's probes measure at least the sleep it asked for ("delay_ns", inside
  fetch_quote) and at most the workload's own clock around the call ("ns", which encloses both
  probes), so the buckets must be matched by the calls one to one within those bounds (a stalled
  fast call may land anywhere it could have been measured).  And the histogram must tell the slow
  calls from the fast ones: no bucket may hold what could be a slow call and a fast call that
  took under a third of the quickest slow one's sleep.  A guess must hit the run's call count
  (24-100), how its calls spread over the buckets and where its slow ones (2-12) fall.
caller_counts (u4): per job, the number of strtol calls it made, read from a map whose keys name
  jobs (a ustack key names its job frame) summed per job, or from printf lines naming jobs.  The run's
  two "parser" jobs are drawn per seed and their counts per call; a key naming two jobs names none.
tests/unit/test_uprobes_checks.py attacks each one (guessing strategies over many simulated runs) and
keeps the valid variants that must pass.
"""

import bisect
import functools
import heapq
import re
from collections import Counter, defaultdict
from fractions import Fraction

from grader.bpftrace_output import INT_RE, number
from grader.checks import Verdict, check

UNITS = {"ns": 1, "us": 1000, "ms": 1000 * 1000, "s": 1000 * 1000 * 1000}
# A number as a duration may be printed: an integer or a decimal ("%d.%03d" of integer arithmetic; bpftrace has no
# floats).  Bounded like grader.bpftrace_output.number: a longer digit run is no duration of a 12 s run anyway.
DURATION_RE = re.compile(r"(?<![\w.])(-?)(\d{1,20})(?:\.(\d{1,9}))?(?![\w.])")
HEX_FRAME = re.compile(r"^\s*(0x)?[0-9a-f]{6,}\s*$", re.I)


@functools.lru_cache(maxsize=8192)
def _ints(text):
    """The integers of a line, read once per distinct line (each check reads a line up to three times, and a
    guess prints the same lines run after run)."""
    return tuple(number(m.group(0)) for m in INT_RE.finditer(text))


def _columns(lines):
    """{(ints per line, position): [values]} over the lines that carry integers."""
    cols = defaultdict(list)
    for line in lines:
        values = _ints(line)
        for pos, value in enumerate(values):
            cols[(len(values), pos)].append(value)
    return cols


def _map_multisets(output):
    """Per map: the set of its integer keys per key position, and the multiset of its integer values."""
    keyed, valued = defaultdict(set), defaultdict(Counter)
    for entry in output.entries():
        for pos, value in entry.int_fields():
            keyed[(entry.map, pos)].add(value)
        if isinstance(entry.value, int) and entry.key:
            valued[entry.map][entry.value] += 1
    return keyed, valued


def _read(output):
    """(columns, keyed, valued): the output's integer columns and its maps' multisets, read once per check (a
    check matches them against two fields)."""
    return (_columns(output.lines),) + _map_multisets(output)


def _matches(read, wanted):
    """Where the output (``_read``) holds exactly the multiset ``wanted`` (None if nowhere).  A map keyed by the
    asked-for value answers with its keys alone: what it stores per key (a count, each order's qty, a timestamp)
    is the student's choice, so its keys must be exactly the run's distinct values and its values are not read."""
    columns, keyed, valued = read
    for (width, pos), values in columns.items():
        if Counter(values) == wanted:
            return "a line per call (%d lines)" % len(values)
    for (name, _), keys in keyed.items():
        if keys == set(wanted):
            return "map %s keyed by it" % name
    for name, counts in valued.items():
        if counts == wanted:
            return "the values of map %s" % name
    return None


def _seen(output):
    seen = set()
    for line in output.lines:
        seen.update(_ints(line))
    for entry in output.entries():
        seen.update(v for _, v in entry.int_fields())
        if isinstance(entry.value, int):
            seen.add(entry.value)
    return seen


@check("call_values")
def call_values(output, truth, params):
    calls = truth.of(params.get("event", "order"))
    field = params.get("field", "order_id")
    wanted = Counter(rec.get(field) for rec in calls if isinstance(rec.get(field), int))
    if not wanted:
        return Verdict(False, "no_truth", "the workload's log has no %s values (a lab VM problem)" % field)
    read = _read(output)
    where = _matches(read, wanted)
    if where:
        return Verdict(True, "ok", "every %s of the run's %d calls is there: %s" % (field, len(calls), where))
    seen = _seen(output)
    other = params.get("other_field")
    others = Counter(rec.get(other) for rec in calls if isinstance(rec.get(other), int)) if other else Counter()
    if others and (_matches(read, others) or len(seen & set(others)) > len(seen & set(wanted))):
        return Verdict(False, "other_field", "your output holds the calls' %s, not their %s" % (other, field))
    found = seen & set(wanted)
    if not found:
        return Verdict(False, "not_found", "none of the run's %d %s values appear in your output" % (len(calls), field))
    return Verdict(False, "partial", "%d of the run's %d distinct %s values appear, but your output does not hold "
                   "them all, one per call" % (len(found), len(wanted), field))


def _bounds(rec):
    """(least, most) ns a probe pair on the function can measure of one call (see the docstring above).  A log
    of an older uprobeme has no delay_ns: half its own time stands in for it."""
    most = rec["ns"]
    least = rec.get("delay_ns")
    if not isinstance(least, int) or isinstance(least, bool) or not 0 <= least <= most:
        least = most // 2
    return least, most


class Sorted(tuple):
    """A candidate's rows sorted once, with their starts, their ends and whether the ends rise too (then the
    buckets a call fits are found by bisection): shared by the four units a candidate is read in."""

    @classmethod
    def of(cls, rows):
        rows = sorted(rows)
        starts = [lo for lo, _, _ in rows]
        ends = [end for _, end, _ in rows]
        return cls((rows, starts, ends, all(a <= b for a, b in zip(ends, ends[1:]))))


def _fits(rows, calls):
    """Can the calls (least, most) fill the buckets (lo, end, count) one to one, each call in a bucket it could
    have been measured in?  Sorted, the buckets' starts and ends both rise (they overlap by the one unit allowed
    below at most), so a call's buckets are a run of them: fill the buckets in order, each with the waiting calls
    whose run ends first (earliest deadline first is optimal for runs)."""
    rows, starts, ends, rising = rows if isinstance(rows, Sorted) else Sorted.of(rows)
    spans = []
    for least, most in calls:
        if rising:                  # the run of buckets a call fits: found by bisection, not by a scan
            first, last = bisect.bisect_right(ends, least), bisect.bisect_right(starts, most) - 1
            if first > last:
                return False
            spans.append((first, last))
            continue
        fits = [i for i, (lo, end, _) in enumerate(rows) if lo <= most and end > least]
        if not fits:
            return False
        spans.append((fits[0], fits[-1]))
    spans.sort()
    waiting, nxt = [], 0
    for i, (_, _, count) in enumerate(rows):
        while nxt < len(spans) and spans[nxt][0] <= i:
            heapq.heappush(waiting, spans[nxt][1])
            nxt += 1
        for _ in range(count):
            if not waiting or waiting[0] < i:
                return False
            heapq.heappop(waiting)
    return nxt == len(spans) and not waiting


def _lumps(rows, slow, fast):
    """The first non-empty bucket that could hold a slow call and a clearly fast one alike, or None."""
    for lo, end, count in sorted(rows):
        if count and any(lo <= b and end > a for a, b in slow) and any(lo <= b and end > a for a, b in fast):
            return lo, end
    return None


# A line's numbers are read in billionths of its own unit: a decimal has at most 9 digits after its point
# (DURATION_RE), so every reading is an exact integer and comparing it with a call costs an integer compare, not
# Fraction arithmetic (a 121-decimal guess line over 1000 simulated runs: ~36 s with Fractions).
LINE_SCALE = 10 ** 9


@functools.lru_cache(maxsize=4096)
def _readings(line):
    """Both readings of a line as histogram rows in billionths of its unit (its integers; its integers and
    decimals), computed once per distinct line: a script printing the same line on every call costs one reading,
    not one per call.  A number reads as [value - resolution, value + resolution) (see _line_columns)."""
    ints = tuple((v * LINE_SCALE - LINE_SCALE, v * LINE_SCALE + LINE_SCALE, 1) for v in _ints(line))
    decimals = tuple((value - step, value + step, 1) for value, step in _durations(line))
    return (("int", ints), ("decimal", decimals))


def _durations(line):
    """(value, resolution) per number of a line, in billionths of the line's own unit: an integer reads to within
    1, a decimal to within one unit of its last digit ("39.417" to within 0.001)."""
    out = []
    for sign, whole, frac in DURATION_RE.findall(line):
        step = 10 ** (9 - len(frac))
        value = int(whole + frac) * step
        out.append((-value if sign else value, step))
    return out


def _line_columns(lines, n):
    """The columns of the lines (same count of numbers, same position) with one value per call: each as the
    rows of a histogram in billionths of the lines' unit, one call per row, [value - resolution, value +
    resolution) wide (a script that divides each timestamp before subtracting them reads one step more than the
    call took).  Both readings of a line: its integers alone (as the other checks read it) and its decimals too.
    The lines with the same reading and count of numbers are transposed at once; a group of other than n lines
    holds no column of n values.  Identical columns are kept once, first seen first."""
    groups = {}
    for line in lines:
        for reading, rows in _readings(line):
            if rows:
                groups.setdefault((reading, len(rows)), []).append(rows)
    unique = {}
    for per_line in groups.values():
        if len(per_line) == n:
            unique.update(dict.fromkeys(zip(*per_line)))
    return [list(rows) for rows in unique]


def _calls_in(calls, factor, scale):
    """The calls (least, most) ns as a bucket of unit ``factor`` ns read in 1/``scale`` steps sees them: a bucket
    [lo, end) holds a call when lo <= most * scale / factor and end > least * scale / factor, which for integer
    lo and end is the same as comparing with the floors of those (so the floors are exact, not rounded)."""
    return [(a * scale // factor, b * scale // factor) for a, b in calls]


@check("latency_hist")
def latency_hist(output, truth, params):
    quotes = [rec for rec in truth.of(params.get("event", "quote"))
              if isinstance(rec.get("ns"), int) and not isinstance(rec.get("ns"), bool)]
    if not quotes:
        return Verdict(False, "no_truth", "the workload's log has no calls to time (a lab VM problem)")
    n = len(quotes)
    calls = [_bounds(rec) for rec in quotes]
    slow = [c for c, rec in zip(calls, quotes) if rec.get("slow") is True]
    quickest = min((a for a, _ in slow), default=0)
    clearly_fast = [c for c, rec in zip(calls, quotes) if rec.get("slow") is not True and 3 * c[1] < quickest]

    groups = defaultdict(list)          # a map keyed (@h[comm]) is summed over its keys
    for label, rows in output.hist_buckets().items():
        groups[label.split("[", 1)[0]].extend(rows)
    # (kind, what, rows, scale): a histogram's rows are [lo, hi] buckets read as [lo - 1, hi + 1) of its unit (a
    # script that divides each timestamp before subtracting them reads one unit more than the call took); scale:
    # the rows' steps per unit (a histogram's are whole units, a line's billionths: LINE_SCALE)
    candidates = [("hist", "histogram %s" % name, [(lo - 1, hi + 1, c) for lo, hi, c in rows], 1)
                  for name, rows in groups.items() if rows]
    candidates += [("lines", "a line per call", rows, LINE_SCALE) for rows in _line_columns(output.lines, n)]
    has_numbered_lines = any(_readings(line)[1][1] for line in output.lines)
    if not candidates and not has_numbered_lines:
        return Verdict(False, "no_hist", "no histogram in your output, nor one duration per line")
    right_total, coarse = set(), {}
    # The calls in each unit and scale, once (not every candidate's rows in ns): see _calls_in.
    in_unit = {(scale, unit): [_calls_in(group, factor, scale) for group in (calls, slow, clearly_fast)]
               for scale in (1, LINE_SCALE) for unit, factor in UNITS.items()}
    for kind, what, rows, scale in candidates:
        if sum(c for _, _, c in rows) != n:
            continue
        right_total.add(kind)
        prepared = Sorted.of(rows)
        rows = prepared[0]
        for unit, factor in UNITS.items():
            calls_u, slow_u, fast_u = in_unit[(scale, unit)]
            if not _fits(prepared, calls_u):
                continue
            both = _lumps(rows, slow_u, fast_u)
            both = both and (Fraction(both[0] * factor, scale), Fraction(both[1] * factor, scale))  # in ns
            if both is None:
                return Verdict(True, "ok", "%s (in %s) holds the run's %d calls where they were measured, the "
                               "slow ones apart" % (what, unit, n))
            coarse.setdefault(kind, (what, unit, both))
    if "hist" in coarse:
        what, unit, (lo, end) = coarse["hist"]
        return Verdict(False, "lumped", "%s (in %s) holds the run's %d calls, but one bucket (%s to %s %s) holds "
                       "slow and fast calls alike" % (what, unit, n, _amount(lo, unit, 1), _amount(end, unit, -1),
                                                      unit))
    if "lines" in coarse:
        _, unit, _ = coarse["lines"]
        return Verdict(False, "too_coarse", "your lines give one duration per call of the run (%d calls, read in "
                       "%s), but too coarsely to tell its slow calls from its fast ones" % (n, unit))
    if right_total:
        held = {frozenset(["hist"]): "a histogram holds", frozenset(["lines"]): "a column of your lines holds",
                frozenset(["hist", "lines"]): "a histogram and a column of your lines each hold"}[frozenset(right_total)]
        return Verdict(False, "wrong_split", "%s one duration per call of the run (%d calls), but not what this "
                       "run's calls took, in ns, us, ms or s (its slow ones apart from its fast ones)" % (held, n))
    shapes = (["your histograms"] if groups else []) + (["your lines"] if output.lines else [])
    if len(shapes) == 2:
        return Verdict(False, "wrong_total", "neither your histograms nor your lines give exactly one duration per "
                       "call of the run (%d calls)" % n)
    return Verdict(False, "wrong_total", "%s do not give exactly one duration per call of the run (%d calls)"
                   % (shapes[0] if shapes else "your output", n))


def _amount(ns, unit, nudge):
    """A bucket's end in its unit, as the student's histogram printed it (the read-in unit widened by one)."""
    value = Fraction(ns) / UNITS[unit] + nudge
    return str(int(value)) if value == int(value) else "%.3f" % float(value)


def _jobs_in(text, jobs):
    return {job for job in jobs if re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(job), text)}


@check("caller_counts")
def caller_counts(output, truth, params):
    calls = truth.of(params.get("event", "strtol"))
    jobs = [j for j in truth.start.get("jobs") or [] if isinstance(j, str)]
    wanted = Counter(str(rec.get("job")) for rec in calls)
    if not calls or not jobs or not set(wanted) <= set(jobs):
        return Verdict(False, "no_truth", "the workload's log does not say which job called (a lab VM problem)")

    tables = defaultdict(Counter)
    named_any = False
    for name, key, value in output.map_items():
        if key is None or not isinstance(value, int):
            continue
        named = _jobs_in(key, jobs)
        if len(named) == 1:
            tables[name][named.pop()] += value
            named_any = True
        elif named:
            named_any = True
    printed = Counter()
    for line in output.lines:
        named = _jobs_in(line, jobs)
        if len(named) == 1:
            printed[named.pop()] += 1
    if printed:
        named_any = True
        tables["(printed lines)"] = printed
    for name, counts in tables.items():
        if counts == wanted:
            return Verdict(True, "ok", "%s gives each job that called strtol its count (%d jobs, %d calls)"
                           % (name, len(wanted), len(calls)))
    if not named_any:
        keys = [key for _, key, _ in output.map_items() if key]
        if keys and all(all(HEX_FRAME.match(f) for f in k.splitlines() if f.strip()) for k in keys):
            return Verdict(False, "unresolved", "your map's stacks are addresses without function names")
        return Verdict(False, "no_stacks", "nothing in your output names one of uprobeme's jobs")
    if any(set(counts) - set(wanted) for counts in tables.values()):
        return Verdict(False, "non_parser", "your output credits strtol calls to a job that made none in this run")
    return Verdict(False, "wrong_counts", "the jobs are named, but not with this run's counts of strtol calls")
