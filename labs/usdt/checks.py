"""What a correct answer is in the USDT lab (loaded by lab.yaml's checks_module).

The truth is usdtme's log (labs/usdt/workload/usdtme.c): one "order" record per hit of till:order_taken
(order_id, qty) and one "payment" record per hit of till:payment_made (customer, amount).  Order ids, the
run's customers (3 to 5 of 8 names) and every amount are drawn from a fresh seed per grading run, so what a
check accepts must come from watching the run.

probe_arg_values (s1): the run's values of one argument, one per hit.  Accepted: a column of the printf lines
  (lines with the same count of integers, the same position) whose values are exactly the run's values (as a
  multiset: per-CPU buffers may reorder lines); or a map keyed by them (any key field, whatever its values
  hold: its keys are exactly the run's distinct values); or a map whose values are exactly them.  The ids are
  6-digit numbers drawn per hit and the whole set must match, so no guess passes.  The other argument (qty)
  gets its own hint.
sum_per_name (s2): per customer, the total of the amounts.  Accepted: a map whose keys name one customer each
  (any other key fields, such as comm) holding the sums, summed over keys naming the same customer; a map keyed
  by customer and amount holding counts (the amounts times the counts); or printf lines naming one customer, a
  column of their integers summed per customer.  Totals of 24-100 amounts of 100-99999 cents cannot be guessed.
tests/unit/test_usdt_checks.py attacks both (guessing strategies over 1000 simulated runs) and keeps the valid
variants that must pass.
"""

import functools
import re
from collections import Counter, defaultdict

from grader.bpftrace_output import INT_RE, number
from grader.checks import Verdict, check


@functools.lru_cache(maxsize=8192)
def _ints(text):
    """The integers of a line, read once per distinct line."""
    return tuple(number(m.group(0)) for m in INT_RE.finditer(text))


def _read(output):
    """(columns, keyed, valued): the printf lines' integer columns {(ints per line, position): [values]}, per map
    and key position the set of integer keys, per map the multiset of its integer values."""
    columns, keyed, valued = defaultdict(list), defaultdict(set), defaultdict(Counter)
    for line in output.lines:
        values = _ints(line)
        for pos, value in enumerate(values):
            columns[(len(values), pos)].append(value)
    for entry in output.entries():
        for pos, value in entry.int_fields():
            keyed[(entry.map, pos)].add(value)
        if isinstance(entry.value, int) and entry.key:
            valued[entry.map][entry.value] += 1
    return columns, keyed, valued


def _matches(read, wanted):
    """Where the output holds exactly the multiset ``wanted`` (None if nowhere)."""
    columns, keyed, valued = read
    for values in columns.values():
        if Counter(values) == wanted:
            return "a line per hit (%d lines)" % len(values)
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


@check("probe_arg_values")
def probe_arg_values(output, truth, params):
    hits = truth.of(params.get("event", "order"))
    field = params.get("field", "order_id")
    wanted = Counter(rec.get(field) for rec in hits if isinstance(rec.get(field), int))
    if not wanted:
        return Verdict(False, "no_truth", "the workload's log has no %s values (a lab VM problem)" % field)
    read = _read(output)
    where = _matches(read, wanted)
    if where:
        return Verdict(True, "ok", "every %s of the run's %d hits is there: %s" % (field, len(hits), where))
    seen = _seen(output)
    other = params.get("other_field")
    others = Counter(rec.get(other) for rec in hits if isinstance(rec.get(other), int)) if other else Counter()
    found = seen & set(wanted)
    if others and not found and _matches(read, others):
        return Verdict(False, "other_field", "your output holds the hits' %s, not their %s" % (other, field))
    if not found:
        return Verdict(False, "not_found", "none of the run's %d %s values appear in your output" % (len(hits), field))
    return Verdict(False, "partial", "%d of the run's %d distinct %s values appear, but your output does not hold "
                   "them all, one per hit" % (len(found), len(wanted), field))


def _names_in(text, names):
    return {n for n in names if re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(n), text)}


# Every name a run may draw (usdtme.c CUSTOMERS): a total credited to one the run did not draw is a stranger.
ALL_CUSTOMERS = ("ada", "brook", "cyrus", "dagny", "emeka", "freya", "gulnar", "hiro")


@check("sum_per_name")
def sum_per_name(output, truth, params):
    payments = truth.of(params.get("event", "payment"))
    name_field, value_field = params.get("name_field", "customer"), params.get("value_field", "amount")
    wanted = Counter()
    for rec in payments:
        if isinstance(rec.get(name_field), str) and isinstance(rec.get(value_field), int):
            wanted[rec[name_field]] += rec[value_field]
    if not wanted:
        return Verdict(False, "no_truth", "the workload's log has no %s records (a lab VM problem)" % name_field)
    names = sorted(set(ALL_CUSTOMERS) | set(wanted))
    tables = defaultdict(Counter)      # (where) -> {name: total}
    named_any = False
    for entry in output.entries():
        named = _names_in(", ".join(entry.key), names)
        if not named or not isinstance(entry.value, int):
            continue
        named_any = True
        if len(named) != 1:
            continue
        who = named.pop()
        tables["map %s" % entry.map][who] += entry.value
        for pos, key_int in entry.int_fields():
            tables["map %s, key field %d times its count" % (entry.map, pos)][who] += key_int * entry.value
    for line in output.lines:
        named = _names_in(line, names)
        if named:
            named_any = True
        if len(named) != 1:
            continue
        who = named.pop()
        values = _ints(line)
        for pos, value in enumerate(values):
            tables["printed lines (%d numbers, number %d)" % (len(values), pos + 1)][who] += value
    for where, totals in tables.items():
        if +totals == +wanted:
            return Verdict(True, "ok", "%s gives each of the run's %d customers its total (%d payments)"
                           % (where, len(wanted), len(payments)))
    if not named_any:
        return Verdict(False, "not_found", "nothing in your output names one of the run's customers")
    if any(set(+totals) - set(wanted) for totals in tables.values()):
        return Verdict(False, "stranger", "your output credits payments to a customer who paid nothing in this run")
    return Verdict(False, "wrong_sums", "the customers are named, but not with this run's totals")
