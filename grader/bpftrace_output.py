"""Parse `bpftrace -f json` output (0.17 and 0.23 print the same shapes for what we use).

One JSON object per line: attached_probes, printf, map, hist, stats, value, lost_events,
and sometimes non-JSON lines (blank lines before the END maps, warnings).  Unknown record
types are kept but ignored, so a newer bpftrace degrades gracefully.
"""

import json
import re
from dataclasses import dataclass, field

INT_RE = re.compile(r"(?<![\w.])-?\d+(?![\w.])")
PATH_RE = re.compile(r"(/[\w.@+,:=~-]*)+")


@dataclass
class ScriptOutput:
    attached_probes: int = 0
    printf_text: str = ""
    maps: dict = field(default_factory=dict)      # name -> last printed value (dict or scalar)
    hists: dict = field(default_factory=dict)     # name -> list of buckets (or dict of them)
    errors: list = field(default_factory=list)
    lost_events: int = 0
    unparsed_lines: int = 0

    @property
    def lines(self):
        return [line for line in self.printf_text.splitlines() if line.strip()]

    def map_items(self):
        """(map name, key string or None, value) for every printed map entry."""
        for name, value in self.maps.items():
            if isinstance(value, dict):
                for key, val in value.items():
                    yield name, str(key), val
            else:
                yield name, None, value

    def texts(self):
        """Every piece of text the student printed: printf lines, map keys."""
        out = list(self.lines)
        out += [key for _, key, _ in self.map_items() if key is not None]
        return out

    def ints_by_line(self):
        return [[int(n) for n in INT_RE.findall(line)] for line in self.lines]

    def int_keyed_maps(self):
        """Maps whose keys are all integers (e.g. @open[fd]): name -> {int key: value}."""
        result = {}
        for name, value in self.maps.items():
            if isinstance(value, dict) and value:
                try:
                    result[name] = {int(k): v for k, v in value.items()}
                except (TypeError, ValueError):
                    continue
        return result

    def counts(self):
        """Integers that can be counts: printf numbers and map values (map keys are labels, not counts)."""
        nums = [n for row in self.ints_by_line() for n in row]
        nums += [v for _, _, v in self.map_items() if isinstance(v, int) and not isinstance(v, bool)]
        return nums

    def numbers(self):
        """All integers the student printed, anywhere (printf, map keys and values)."""
        nums = [n for row in self.ints_by_line() for n in row]
        for _, key, val in self.map_items():
            if key is not None:
                nums += [int(n) for n in INT_RE.findall(key)]
            if isinstance(val, int) and not isinstance(val, bool):
                nums.append(val)
        return nums


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
            out.attached_probes += int(data.get("probes") or 0)
        elif kind == "printf" and isinstance(data, str):
            printf.append(data)
        elif kind in ("map", "stats", "value") and isinstance(data, dict):
            out.maps.update(data)
        elif kind == "hist" and isinstance(data, dict):
            out.hists.update(data)
        elif kind == "lost_events" and isinstance(data, dict):
            out.lost_events += int(data.get("events") or 0)
        elif kind in ("error", "warning") or "error" in rec:
            out.errors.append(str(data if data is not None else rec.get("error"))[:500])
    out.printf_text = "".join(printf)
    return out
