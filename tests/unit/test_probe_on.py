"""A question about a function is answered by probing it (lab.yaml `probe_on`).

What it accepts: any function probe whose function, or glob, names one of the listed functions (uprobe or
uretprobe, by path or library, short kinds, several probes in a list, a predicate right after the name).
Attacked: a script that reads the answers from the workload's I/O (a uprobe on libc's write, a tracepoint on
write) or probes a neighbouring function fails as not_probed whatever it prints; the function's name in a
comment or a string is no probe."""

import json

import pytest

from grader.grading import judge_exercise, probed_functions, probes_one_of
from grader.labspec import load_lab


@pytest.fixture(scope="module")
def lab():
    return load_lab("uprobes")


def item(source, printed="order 123456\n"):
    return {"name": "x", "status": "ran", "source": source, "attached": True, "exit_code": 0,
            "stdout": json.dumps({"type": "printf", "data": printed}) + "\n", "stderr": ""}


ORACLES = [
    'uprobe:libc:write /comm == "uprobeme"/ { printf("%s", str(arg1)); }',
    'tracepoint:syscalls:sys_enter_write /comm == "uprobeme"/ { printf("%s", str(args->buf)); }\n'
    'uprobe:libc:nanosleep { @n = count(); }',
    '// uprobe:/opt/bpfhol/bin/uprobeme:process_order\nuprobe:/opt/bpfhol/bin/uprobeme:parse_field { @n = count(); }\n'
    'BEGIN { printf("uprobe:x:process_order\\n"); }',
    'uretprobe:/opt/bpfhol/bin/uprobeme:process_orders { printf("%d\\n", retval); }',
]


@pytest.mark.parametrize("source", ORACLES)
def test_answers_read_elsewhere_fail_as_not_probed(lab, source):
    for ex in lab.exercises[:3]:
        verdict = judge_exercise(ex, lab, item(source), truth=None)
        assert verdict.reason == "not_probed" and not verdict.passed, (ex.id, verdict.reason)
        assert "%s()" % ex.probe_on[0] in verdict.feedback


@pytest.mark.parametrize("source, functions", [
    ("uprobe:/opt/bpfhol/bin/uprobeme:process_order { }", ["process_order"]),
    ("u:/opt/bpfhol/bin/uprobeme:process_order{ }", ["process_order"]),
    ("uretprobe:/opt/bpfhol/bin/uprobeme:process_*/comm == \"uprobeme\"/ { }", ["process_order"]),
    ("BEGIN { }\nuprobe:libc:write, uprobe:libc:strtoll { }", ["strtol", "strtoll"]),
    ("uprobe:libc:__isoc23_strtol /comm == \"uprobeme\"/ { @[ustack] = count(); }", ["__isoc23_strtol"]),
])
def test_honest_probes_on_the_function_are_seen(source, functions):
    assert probes_one_of(source, functions)


def test_the_function_names_a_probe_declares():
    src = 'uprobe:/x/y:f1,uretprobe:/x/y:f2/pid == 1/ { printf("uprobe:/x:f3"); } kprobe:do_sys_openat2 { }'
    assert probed_functions(src) == ["f1", "f2", "do_sys_openat2"]
