"""The USDT lab's checks (labs/usdt/checks.py), attacked and defended like the uprobes ones.

Simulated runs follow labs/usdt/lab.yaml through Lab.workload_run and the record formats of usdtme's truth log
(labs/usdt/workload/usdtme.c; tests/unit/test_workload_contract.py runs the real one).  Every guessing strategy
(constants, ranges, every number, last run's answer, the most common answer, the other argument) must pass at
most 1 % of RUNS runs; every valid variant (other print forms, map forms, reordered lines) must pass every run.
About 3 s.
"""

import functools
import json
import random
from collections import Counter

import pytest

from grader import bpftrace_output
from grader.labspec import load_lab
from grader.truth import parse_truth

RUNS = 1000
LIMIT = 0.01
LAB = load_lab("usdt")
EX = {ex.id: ex for ex in LAB.exercises}
CUSTOMERS = ["ada", "brook", "cyrus", "dagny", "emeka", "freya", "gulnar", "hiro"]


def simulated_log(rng):
    """usdtme's truth log (JSON lines) for one draw of the lab's randomization."""
    args = LAB.workload_run(rng)["args"]
    count, k = int(args["count"]), int(args["customers"])
    customers = sorted(rng.sample(CUSTOMERS, k))
    recs = [{"event": "start", "pid": rng.randint(300, 4000000), "count": count, "customers": k},
            {"event": "released"}]
    ids = rng.sample(range(100000, 1000000), count)
    for seq in range(count):
        who = customers[seq] if seq < k else rng.choice(customers)      # each customer pays at least once
        recs.append({"event": "order", "seq": seq, "order_id": ids[seq], "qty": rng.randint(1, 9)})
        recs.append({"event": "payment", "seq": seq, "customer": who, "amount": rng.randint(100, 99999)})
    recs.append({"event": "done", "count": count})
    return [json.dumps(r) for r in recs]


def simulated(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        truth = parse_truth(simulated_log(rng))
        truth.comm = LAB.workload_comm
        out.append(truth)
    return out


SIMULATED = simulated(RUNS, seed=20261207)


def printf(*lines):
    return "".join(json.dumps({"type": "printf", "data": line + "\n"}) + "\n" for line in lines)


def map_(name, table):
    return json.dumps({"type": "map", "data": {name: {str(k): v for k, v in table.items()}}}) + "\n"


def orders(t):
    return t.of("order")


def payments(t):
    return t.of("payment")


def totals(t):
    out = Counter()
    for p in payments(t):
        out[p["customer"]] += p["amount"]
    return out


HONEST = {
    "s1": {
        "printf order qty": lambda t: printf(*["order %d qty %d" % (o["order_id"], o["qty"]) for o in orders(t)]),
        "bare numbers, lines reordered": lambda t: printf(*sorted("%d" % o["order_id"] for o in orders(t))),
        "pid, id, qty": lambda t: printf(*["%d %d %d" % (t.pid, o["order_id"], o["qty"]) for o in orders(t)]),
        "map @[arg0] = count()": lambda t: map_("@", Counter(o["order_id"] for o in orders(t))),
        "map @[arg0, arg1] = count()": lambda t: map_("@", Counter("%d, %d" % (o["order_id"], o["qty"])
                                                                  for o in orders(t))),
        "map @qty[arg0] = arg1": lambda t: map_("@qty", {o["order_id"]: o["qty"] for o in orders(t)}),
        "map @[nsecs] = arg0 (values the ids)": lambda t: map_("@", {10**12 + 7 * i: o["order_id"]
                                                                     for i, o in enumerate(orders(t))}),
    },
    "s2": {
        "@paid[str(arg0)] = sum(arg1)": lambda t: map_("@paid", totals(t)),
        "@paid[comm, str(arg0)] = sum(arg1)": lambda t: map_("@paid", {"%s, %s" % (t.comm, c): v
                                                                       for c, v in totals(t).items()}),
        "@[str(arg0), arg1] = count()": lambda t: map_("@", Counter("%s, %d" % (p["customer"], p["amount"])
                                                                    for p in payments(t))),
        "a line per payment": lambda t: printf(*["%s paid %d cents" % (p["customer"], p["amount"])
                                                 for p in payments(t)]),
        "a line per payment with seq and pid, reordered": lambda t: printf(*sorted(
            "pid %d #%d %s %d" % (t.pid, i, p["customer"], p["amount"]) for i, p in enumerate(payments(t)))),
    },
}


def _previous(ex_id, name):
    answer = HONEST[ex_id][name]
    return lambda i, t: answer(SIMULATED[i - 1])


@functools.lru_cache(maxsize=None)
def _mean_totals():
    """Every customer with the average total a customer gets over the simulated runs."""
    per = [v for t in SIMULATED for v in totals(t).values()]
    return map_("@paid", {c: sum(per) // len(per) for c in CUSTOMERS})


GUESSES = {
    "s1": {
        "a constant id": lambda i, t: printf("order 123456 qty 3"),
        "ids 100000..100999, a line each": lambda i, t: printf(*[str(v) for v in range(100000, 101000)]),
        "ids 100000..100999 as map keys": lambda i, t: map_("@", {v: 1 for v in range(100000, 101000)}),
        "last run's answer": _previous("s1", "printf order qty"),
        "the quantities instead": lambda i, t: printf(*["qty %d" % o["qty"] for o in orders(t)]),
        "the right count of made-up ids": lambda i, t: printf(*[str(100000 + n) for n in range(len(orders(t)))]),
    },
    "s2": {
        "every customer, the mean total": lambda i, t: _mean_totals(),
        "last run's totals": _previous("s2", "@paid[str(arg0)] = sum(arg1)"),
        "the right customers, counts not sums": lambda i, t: map_("@", Counter(p["customer"] for p in payments(t))),
        "the right customers, made-up totals": lambda i, t: map_("@", {c: 50000 * n for c, n in
                                                                       Counter(p["customer"] for p in payments(t)).items()}),
        "every customer, every number 0..99999 on its line": lambda i, t: printf(*[
            "%s %s" % (c, " ".join(str(v) for v in range(0, 100000, 997))) for c in CUSTOMERS]),
        "the order ids summed per customer": lambda i, t: printf(*[
            "%s %d" % (p["customer"], o["order_id"]) for p, o in zip(payments(t), orders(t))]),
    },
}


def pass_rate(ex_id, output_of):
    ex = EX[ex_id]
    passed = 0
    for i, truth in enumerate(SIMULATED):
        passed += LAB.checks[ex.check](bpftrace_output.parse(output_of(i, truth)), truth, ex.params).passed
    return passed / len(SIMULATED)


@pytest.mark.parametrize("ex_id,name", [(e, n) for e, forms in HONEST.items() for n in forms])
def test_valid_variants_pass_every_run(ex_id, name):
    answer = HONEST[ex_id][name]
    rate = pass_rate(ex_id, lambda i, t: answer(t))
    print("%s %-45s passes %.1f %%" % (ex_id, name, 100 * rate))
    assert rate == 1.0


@pytest.mark.parametrize("ex_id,name", [(e, n) for e, forms in GUESSES.items() for n in forms])
def test_guessing_passes_at_most_one_percent(ex_id, name):
    rate = pass_rate(ex_id, GUESSES[ex_id][name])
    print("%s %-45s passes %.2f %%" % (ex_id, name, 100 * rate))
    assert rate <= LIMIT


def test_feedback_names_what_to_fix():
    t = SIMULATED[0]

    def verdict(ex_id, text):
        return LAB.checks[EX[ex_id].check](bpftrace_output.parse(text), t, EX[ex_id].params)

    assert verdict("s1", printf(*["qty %d" % o["qty"] for o in orders(t)])).reason == "other_field"
    assert verdict("s1", printf("order 1 qty 2")).reason == "not_found"
    assert verdict("s1", printf("order %d" % orders(t)[0]["order_id"])).reason == "partial"
    assert verdict("s2", printf("nothing here 42")).reason == "not_found"
    assert verdict("s2", map_("@", Counter(p["customer"] for p in payments(t)))).reason == "wrong_sums"
    stranger = next(c for c in CUSTOMERS if c not in totals(t))
    assert verdict("s2", map_("@", dict(totals(t), **{stranger: 5}))).reason == "stranger"
    assert all(h in EX[e].hints for e, h in [("s1", "other_field"), ("s1", "partial"), ("s2", "not_found"),
                                             ("s2", "wrong_sums"), ("s2", "stranger")])


def test_a_run_without_payments_is_the_vm_not_the_student():
    empty = parse_truth([json.dumps({"event": "start", "pid": 1}), json.dumps({"event": "done"})])
    for ex in LAB.exercises:
        assert LAB.checks[ex.check](bpftrace_output.parse(printf("x")), empty, ex.params).reason == "no_truth"
