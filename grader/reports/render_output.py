"""A script's `bpftrace -f json` output shown as bpftrace itself prints it in a terminal, for the student pages.

The evidence keeps the JSON lines (grader/bpftrace_output.py parses them for the checks); an instructor reading
why a verdict was given wants what the student saw: printf text, maps as ``@name[key]: value``, histograms with
their ``@`` bars, stacks on their own lines.  The layout follows bpftrace 0.17's text output (output.cpp):
a bucket label padded to 16, the count to 8, a bar of up to 52 ``@``; hist labels ``[0]``, ``[4, 8)``,
``[1K, 2K)``; lhist ``(..., 0)`` and ``[10, ...)``.  Also readable(): values without Python reprs.
"""

import json

BAR_WIDTH = 52
MAX_ENTRIES = 500          # per map: a map of 100000 keys is summarised, the evidence keeps it all
SUFFIXES = ["", "K", "M", "G", "T", "P", "E"]


def _power_label(number):
    """bpftrace's hist label for a bucket edge: 1024 -> 1K, 3 -> 3."""
    i = 0
    while number and number % 1024 == 0 and i < len(SUFFIXES) - 1:
        number //= 1024
        i += 1
    return "%d%s" % (number, SUFFIXES[i])


def _is_log2(buckets):
    """hist() buckets double ([0], [1], [2, 4), [4, 8)); lhist() buckets have one step ([0, 2), [2, 4))."""
    closed = [(b["min"], b["max"]) for b in buckets if isinstance(b.get("min"), int) and isinstance(b.get("max"), int)]
    if any(low == high and low >= 2 for low, high in closed):
        return False
    return all(low >= 2 and high + 1 == 2 * low for low, high in closed if high > low)


def _bucket_label(bucket, log2):
    low, high = bucket.get("min"), bucket.get("max")
    edge = _power_label if log2 else str
    if not isinstance(low, int):
        return "(..., %s)" % edge(high + 1 if isinstance(high, int) else 0)
    if not isinstance(high, int):
        return "[%s, ...)" % edge(low)
    if log2 and low == high and low in (0, 1):
        return "[%d]" % low
    return "[%s, %s)" % (edge(low), edge(high + 1))


def histogram(buckets):
    """The lines bpftrace prints for one histogram's buckets (its JSON list)."""
    buckets = [b for b in buckets if isinstance(b, dict)] if isinstance(buckets, list) else []
    counts = [_count(b.get("count")) for b in buckets]
    top = max(counts) if counts else 0
    log2 = _is_log2(buckets)
    lines = []
    for bucket, count in zip(buckets, counts):
        bar = "@" * (count * BAR_WIDTH // top if top else 0)
        lines.append("%-16s%8d |%-*s|" % (_bucket_label(bucket, log2), count, BAR_WIDTH, bar))
    return lines


def _count(value):
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _key(key):
    """A JSON map key as bpftrace prints it between the brackets: tuple fields joined by ', '."""
    return ", ".join(str(key).split(","))


def _scalar(value):
    if isinstance(value, dict) and set(value) >= {"count", "average", "total"}:
        return "count %s, average %s, total %s" % (value["count"], value["average"], value["total"])
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _map(name, value):
    """@name: value, or @name[key]: value for each entry (a stats() map's values as bpftrace words them)."""
    if not isinstance(value, dict) or set(value) >= {"count", "average", "total"}:
        return ["%s: %s" % (name, _scalar(value))]
    lines = ["%s[%s]: %s" % (name, _key(k), _scalar(v)) for k, v in list(value.items())[:MAX_ENTRIES]]
    if len(value) > MAX_ENTRIES:
        lines.append("... %d more entries of %s (the evidence keeps them all)" % (len(value) - MAX_ENTRIES, name))
    return lines


def _hist(name, value):
    if isinstance(value, dict):          # a keyed histogram: one per key
        lines = []
        for key, buckets in list(value.items())[:MAX_ENTRIES]:
            lines += ["%s[%s]:" % (name, _key(key))] + histogram(buckets) + [""]
        return lines
    return ["%s:" % name] + histogram(value) + [""]


def render(stdout):
    """bpftrace's terminal output for a script's JSON output (non-JSON lines, e.g. warnings, kept as they are)."""
    out = []
    printf = []

    def flush():
        if printf:
            out.extend("".join(printf).rstrip("\n").split("\n"))
            printf.clear()

    for raw in (stdout if isinstance(stdout, str) else "").splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            flush()
            out.append(raw)
            continue
        if not isinstance(rec, dict):
            flush()
            out.append(raw)
            continue
        kind, data = rec.get("type"), rec.get("data")
        if kind == "printf" and isinstance(data, str):
            printf.append(data)
            continue
        flush()
        if kind == "attached_probes" and isinstance(data, dict):
            out.append("Attaching %s probe%s..." % (data.get("probes"), "" if data.get("probes") == 1 else "s"))
        elif kind in ("map", "stats", "value") and isinstance(data, dict):
            for name, value in data.items():
                out += _map(str(name), value)
        elif kind == "hist" and isinstance(data, dict):
            for name, value in data.items():
                out += _hist(str(name), value)
        elif kind == "lost_events" and isinstance(data, dict):
            out.append("Lost %s events" % data.get("events"))
        else:
            out.append(raw)
    flush()
    return "\n".join(out)


def readable(value):
    """A recorded value as words, not a Python repr: True -> yes, ['SIGINT'] -> SIGINT, {} -> a: 1, b: 2."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join("%s: %s" % (k, readable(v)) for k, v in value.items()) or "none"
    return str(value)
