"""Human labels for the reason codes, in one table beside the checks that return them.

A verdict's reason (``close_path``) is a key: lab.yaml's hints are keyed by it and the journal keeps it.  An
instructor reading the dashboard needs words instead, so every code the grader (grader/grading.py) or a lab's
checks (labs/*/checks*) can return has a label here or, for a code only one lab's checks return, in that lab's
lab.yaml (`reason_labels:`); tests/unit/test_reason_labels.py reads the sources and fails when a code has none.

Not-gradable results keep only their one-line error (no code), so NOT_GRADABLE maps the error's wording to a
group: a code, a label and the fix an instructor applies to every student of that group at once.
"""

import re

EXERCISE_REASONS = {
    # the grader's own, decided before any check runs (grader/grading.py: judge_exercise)
    "ok": "passed",
    "missing": "script not found",
    "too_large": "script too large",
    "unreadable": "script unreadable",
    "refused": "script refused",
    "attach_timeout": "probes attached too slowly",
    "unsafe": "needs --unsafe (never allowed)",
    "attach_failed": "probes could not attach",
    "compile_error": "did not compile",
    "not_attached": "probes never attached",
    "wrong_probe_type": "wrong probe kind for this lab",
    "not_probed": "does not probe the function asked about",
    "flooded": "printed too much (stopped)",
    "stop_timeout": "bpftrace did not end after Ctrl-C",
    # the labs' checks
    "no_truth": "workload recorded nothing (lab VM problem)",
    "not_found": "answer not in the output",
    "unfiltered": "includes other processes' files",
    "empty_path": "empty path printed",
    "too_many_numbers": "too many numbers per open",
    "no_fds": "no descriptor numbers",
    "count_mismatch": "not one descriptor per open",
    "close_path": "closes not taken into account",
    "no_leaks": "leaked descriptors not singled out",
    "kernel_stack": "kernel stacks, not user stacks",
    "short_stack": "stacks stop in libc",
    "unresolved": "stacks without function names",
    "no_stacks": "no stacks naming the workload's functions",
    "not_deleted": "closed descriptors left in the map",
    "wrong_function": "wrong opening function",
    "wrong_fds": "wrong descriptors",
    "other_field": "another field printed",
    "partial": "some values missing",
    "no_hist": "no histogram or durations",
    "lumped": "histogram too coarse",
    "too_coarse": "durations too coarse",
    "wrong_split": "durations split wrongly",
    "wrong_total": "not one duration per call",
    "non_parser": "credits calls to the wrong job",
    "wrong_counts": "wrong counts per job",
}

# (code, pattern on the error text, label, the fix); the first that matches wins, the last matches everything.
NOT_GRADABLE = [
    ("not_graded", r"^not graded yet", "not graded yet",
     "run grade without --student (or with --student NAME)"),
    ("no_scripts", r"^no scripts found", "no scripts in the answers folder",
     "the students save their scripts there, or the roster names the folder (answers: or student_user:)"),
    ("auth", r"authentication refused|no authentication methods|permission denied \(publickey",
     "SSH login refused", "check the roster's user and key for these hosts"),
    ("host_key", r"host key changed", "host key changed",
     "the VM was rebuilt: grade again with --replace-host-keys"),
    ("unreachable", r"host unreachable|connection refused|no route to host|timed out connecting",
     "host unreachable", "start the VMs (vagrant up) or fix the roster's host and port"),
    ("roster", r"^roster|duplicate student id|key file not found|chmod 600|not a mapping",
     "roster row unusable", "fix the roster row as each line says, then grade again"),
    ("connection", r"connection to .* lost|did not answer the|upload to .* failed",
     "connection lost or stalled", "check the VM is not frozen or overloaded, then grade again"),
    ("agent", r"agent|sudo refused|playbook", "lab agent missing or broken",
     "re-run the lab playbook on these VMs"),
    ("vm_broken", r"VM broken|tracefs|lab VM broken|recorded no", "lab VM broken",
     "re-run the lab playbook or rebuild these VMs"),
    ("busy", r"host busy", "host busy", "wait for the other job, or reboot the VM, then grade again"),
    ("submission", r"submission|collected|changed after", "submission problem",
     "see each line; fix the submission or re-collect"),
    ("grader_error", r"grader error|re-judged:", "grader error", "report it with the line shown; grade again"),
    ("other", r"", "other", "see each line"),
]
_NOT_GRADABLE = [(code, re.compile(pattern, re.I), label, fix) for code, pattern, label, fix in NOT_GRADABLE]


def label(code, lab=None):
    """The human label of an exercise reason code: this table's, else the lab's own (lab.yaml `reason_labels`, for
    the codes only its checks return: a new lab adds its words in its folder), else the code itself with
    underscores as spaces."""
    code = str(code or "")
    own = getattr(lab, "reason_labels", None) or {}
    return EXERCISE_REASONS.get(code) or own.get(code) or code.replace("_", " ") or "?"


def not_gradable_group(error):
    """(code, label, fix) of the group a not-gradable result's error text belongs to."""
    text = str(error or "")
    for code, pattern, group_label, fix in _NOT_GRADABLE:
        if pattern.search(text):
            return code, group_label, fix
    return "other", "other", "see each line"
