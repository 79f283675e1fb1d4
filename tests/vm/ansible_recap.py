"""Reading an ansible-playbook run's text output: the PLAY RECAP totals and which tasks changed."""

import re


def play_recap(text):
    """Sum the PLAY RECAP lines of an ansible run: {"ok": N, "changed": N, ...}; {} when there is none."""
    totals, seen = {}, False
    recap = text.split("PLAY RECAP")[-1] if "PLAY RECAP" in text else ""
    for line in recap.splitlines():
        m = re.match(r"^\s*\S+\s*:\s*((?:\w+=\d+\s*)+)$", line)
        if not m:
            continue
        seen = True
        for k, v in re.findall(r"(\w+)=(\d+)", m.group(1)):
            totals[k] = totals.get(k, 0) + int(v)
    return totals if seen else {}


def changed_tasks(text):
    """Names of the tasks an ansible run reported as changed (what to fix when a re-run is not idempotent)."""
    names, task = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*?)\]", line)
        if m:
            task = m.group(1)
        elif line.startswith("changed:") and task and (not names or names[-1] != task):
            names.append(task)
    return names
