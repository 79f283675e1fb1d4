"""Parse `bpftrace -f json` output (0.17 and 0.23 print the same shapes for what we use).

One JSON object per line: attached_probes, printf, map, hist, stats, value, lost_events,
and sometimes non-JSON lines (blank lines before the END maps, warnings).  Unknown record
types are kept but ignored, so a newer bpftrace degrades gracefully.

Map keys: a one-key map prints its key as is ("5", "myprog"); a multi-key map joins the
fields with commas in both versions ("4242,5", "myprog,5"; strings unquoted).  Histogram
buckets are {"min", "max", "count"} with both ends included (an lhist with step 1 has
min == max; the open-ended buckets lack one end).
"""

import json
import re
from dataclasses import dataclass, field
from functools import cached_property

INT_RE = re.compile(r"(?<![\w.])-?\d+(?![\w.])")
PATH_RE = re.compile(r"(/[\w.@+,:=~-]*)+")
EXCERPT_MAP_ENTRIES = 20

# Python refuses int() of a digit run longer than 4300 digits (ValueError), and one BEGIN { printf("1111...") }
# made a whole student "not gradable".  No descriptor, count or pid bpftrace prints has more than 20 digits (u64),
# so a longer run is read as a 21-digit number: still a number the student printed (it counts against an answer
# like any number never returned), never equal to anything in the truth, and never an overflow.
MAX_NUMBER_DIGITS = 21


def number(text):
    """int of an optionally signed digit string from student output, without int()'s digit-limit error."""
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-")
    return int(sign + digits[:MAX_NUMBER_DIGITS])


@dataclass
class MapEntry:
    map: str
    key: tuple          # the key's fields as text; () for a scalar map
    value: object       # int, str, or whatever the JSON held

    def int_fields(self):
        """(position, int) for each key field that is an integer."""
        out = []
        for i, text in enumerate(self.key):
            try:
                out.append((i, number(text)))
            except ValueError:
                continue
        return out


@dataclass
class ScriptOutput:
    attached_probes: int = 0
    printf_text: str = ""
    maps: dict = field(default_factory=dict)      # name -> last printed value (dict or scalar)
    hists: dict = field(default_factory=dict)     # name -> list of buckets (or dict of them)
    errors: list = field(default_factory=list)
    lost_events: int = 0
    unparsed_lines: int = 0

    @cached_property
    def lines(self):
        """The printf lines, blank ones dropped (computed once: the checks read them many times)."""
        return [line for line in self.printf_text.splitlines() if line.strip()]

    def entries(self):
        """Every printed map entry as a MapEntry (multi-key keys split into fields)."""
        out = []
        for name, value in self.maps.items():
            if isinstance(value, dict):
                for key, val in value.items():
                    fields = tuple(part.strip() for part in str(key).split(","))
                    out.append(MapEntry(name, fields, val))
            else:
                out.append(MapEntry(name, (), value))
        return out

    def map_items(self):
        """(map name, key string or None, value) for every printed map entry."""
        for name, value in self.maps.items():
            if isinstance(value, dict):
                for key, val in value.items():
                    yield name, str(key), val
            else:
                yield name, None, value

    def texts(self):
        """Every piece of text the student printed: printf lines, map keys, string map values."""
        out = list(self.lines)
        for _, key, val in self.map_items():
            if key is not None:
                out.append(key)
            if isinstance(val, str):
                out.append(val)
        return out

    def hist_buckets(self):
        """name (with its key, if any) -> list of (min, max, count) with both ends known."""
        out = {}
        for name, value in self.hists.items():
            groups = value.items() if isinstance(value, dict) else [(None, value)]
            for key, buckets in groups:
                label = name if key is None else "%s[%s]" % (name, key)
                rows = []
                for b in buckets if isinstance(buckets, list) else []:
                    if isinstance(b, dict) and isinstance(b.get("min"), int) and isinstance(b.get("max"), int):
                        rows.append((b["min"], b["max"], int(b.get("count") or 0)))
                out[label] = rows
        return out

    def excerpt(self, max_lines=12):
        """What the student's script printed, for the reports: printf lines, then maps and histograms."""
        parts = self.lines[:max_lines]
        if len(self.lines) > max_lines:
            parts.append("... (%d more lines)" % (len(self.lines) - max_lines))
        for name, value in self.maps.items():
            if isinstance(value, dict):
                items = list(value.items())
                shown = ", ".join("%s: %s" % (k, v) for k, v in items[:EXCERPT_MAP_ENTRIES])
                more = ", ... (%d more)" % (len(items) - EXCERPT_MAP_ENTRIES) if len(items) > EXCERPT_MAP_ENTRIES else ""
                parts.append("%s: {%s%s}" % (name, shown, more))
            else:
                parts.append("%s: %s" % (name, value))
        for label, rows in self.hist_buckets().items():
            nonzero = ["[%d, %d]: %d" % r for r in rows if r[2]]
            parts.append("%s (histogram): %s" % (label, ", ".join(nonzero[:EXCERPT_MAP_ENTRIES])))
        return "\n".join(parts)


def parse(text):
    out = ScriptOutput()
    printf = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            out.unparsed_lines += 1
            continue
        if not isinstance(rec, dict):
            out.unparsed_lines += 1
            continue
        kind, data = rec.get("type"), rec.get("data")
        if kind == "attached_probes" and isinstance(data, dict):
            out.attached_probes += _int(data.get("probes"))
        elif kind == "printf" and isinstance(data, str):
            printf.append(data)
        elif kind in ("map", "stats", "value") and isinstance(data, dict):
            out.maps.update(data)
        elif kind == "hist" and isinstance(data, dict):
            out.hists.update(data)
        elif kind == "lost_events" and isinstance(data, dict):
            out.lost_events += _int(data.get("events"))
        elif kind in ("error", "warning") or "error" in rec:
            out.errors.append(str(data if data is not None else rec.get("error"))[:500])
    out.printf_text = "".join(printf)
    return out


def _int(value):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
