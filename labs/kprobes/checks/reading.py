"""Reading answers out of a script's output, whatever form the student chose.

Students print the same fact in many ways: a line per event in any wording, a map keyed by
fd or by (pid, fd) or (comm, fd), an lhist of descriptor numbers.  The helpers here find
the NUMBERS a student printed and how they line up, without trusting any single wording:

* line shapes: lines that differ only in their numbers (and paths) are one shape; within a
  shape, the k-th number of every line is a column.  A line-per-event answer puts its fd in
  one column, in event order.  A line that lists many numbers does not make any column
  follow the run, which is why "every number on every line" cannot pass.
* keyed tables: a map keyed by fd, or by a tuple holding an fd, read as {fd: value}; entries
  whose other key fields name another process (another comm, another pid) are left out.
* labelled counts: numbers a word containing "open" or "clos" labels (map names, map keys,
  the word next to a number in a line); the last one printed is the student's final figure.
"""

import re
from collections import defaultdict
from functools import lru_cache

from grader.bpftrace_output import INT_RE, PATH_RE, number

# A line-shape with more numbers than this is a list, not a record of one event.
MAX_RECORD_COLUMNS = 4


@lru_cache(maxsize=65536)
def shape_of(line):
    """(shape, ints): the line with paths and integers replaced by placeholders, and its integers."""
    text = PATH_RE.sub("<path>", line)
    ints = tuple(number(n) for n in INT_RE.findall(text))
    return INT_RE.sub("#", text).strip(), ints


def columns(lines):
    """{(shape, k): [k-th integer of each line of that shape, in order]}."""
    return _columns(tuple(lines))


@lru_cache(maxsize=256)
def _columns(lines):
    out = defaultdict(list)
    for line in lines:
        shape, ints = shape_of(line)
        for k, n in enumerate(ints):
            out[(shape, k)].append(n)
    return dict(out)


def about_workload(text, truth):
    """Does this line or key mention the workload (its comm or its pid as a whole number)?"""
    if truth.comm and truth.comm in text:
        return True
    return truth.pid > 0 and str(truth.pid) in text and truth.pid in shape_of(text)[1]


def workload_lines(lines, truth):
    return [line for line in lines if about_workload(line, truth)]


def foreign_key(entry, position, truth):
    """True when a key field other than ``position`` names another process (comm or pid)."""
    for i, text in enumerate(entry.key):
        if i == position:
            continue
        if text.isdigit():
            n = number(text)
            if truth.pid and n > 3 * 1024 and n != truth.pid:      # another pid (fds stay small)
                return True
        elif text and not text.startswith(("kprobe", "kretprobe", "tracepoint", "k:", "kr:", "t:", "fentry",
                                           "fexit", "kfunc")) and text != truth.comm and "/" not in text:
            return True      # another comm
    return False


def keyed_tables(output, truth, max_key=4096):
    """{(map, key position): {int key: value}} for maps with an integer key field (fd-like: 0..max_key)."""
    tables = defaultdict(dict)
    for entry in output.entries():
        for pos, n in entry.int_fields():
            if 0 <= n <= max_key and not foreign_key(entry, pos, truth):
                tables[(entry.map, pos)][n] = entry.value
    return dict(tables)


def int_value(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return number(value.strip())
    return None


LABELS = {"opens": re.compile(r"open", re.I), "closes": re.compile(r"clos", re.I)}
# Phrases that name the leaks, not the opens or closes ("still open: 4", "never closed 4").
LEAK_PHRASE = re.compile(r"\b(still|left|remain\w*|never|not|un)[\s_-]*(open\w*|clos\w*)", re.I)
TOKEN = re.compile(r"[A-Za-z_@][\w@]*|-?\d+(?![\w.])")
NUMBER = re.compile(r"-?\d+")


def labelled_counts(output, truth):
    """{"opens": n, "closes": n}: the last number a word labels as such (printf lines, then maps).

    In a line, each clause (split at , ; |) is read both ways, "opens 24" and "24 opens"; the way
    that labels more of its numbers wins (ties: label first).  A word naming both (or a leak
    phrase such as "still open") labels nothing."""
    found = {}
    for line in output.lines:
        for clause in re.split(r"[,;|]", LEAK_PHRASE.sub(" leaked ", PATH_RE.sub(" ", line))):
            for label, n in _clause_labels(TOKEN.findall(clause)):
                found[label] = n
    for entry in output.entries():
        value = int_value(entry.value)
        if value is None or (entry.key and not _count_key(entry, truth)):
            continue
        label = _label_any([entry.map] + [k for k in entry.key if not k.isdigit()])
        if label:
            found[label] = value
    return found


def _clause_labels(tokens):
    nums = [i for i, t in enumerate(tokens) if NUMBER.fullmatch(t)]

    def read(direction):
        pairs = []
        for j, i in enumerate(nums):
            if direction < 0:
                words = tokens[(nums[j - 1] + 1 if j else 0):i][::-1]
            else:
                words = tokens[i + 1:(nums[j + 1] if j + 1 < len(nums) else len(tokens))]
            label = _label_any(words)
            if label:
                pairs.append((label, number(tokens[i])))
        return pairs

    before, after = read(-1), read(+1)
    return after if len(after) > len(before) else before


def _count_key(entry, truth):
    """A count map's key names the workload or a probe (comm, pid, probe, func), never an fd."""
    for text in entry.key:
        if text.isdigit():
            if truth.pid and number(text) == truth.pid:
                continue
            return False
        if (truth.comm and text == truth.comm) or ":" in text or "open" in text.lower() or "clos" in text.lower():
            continue
        return False
    return True


def _label(word):
    hits = [name for name, rx in LABELS.items() if word and rx.search(word)]
    return hits[0] if len(hits) == 1 else None


def _label_any(words):
    for word in words:
        label = _label(word)
        if label:
            return label
    return None
