"""The form of a check, for every lab's checks module.  A check gets the parsed output of the student's
script and the workload's ground truth (grader/truth.py), and returns a Verdict whose feedback teaches without
giving the answer away (hints come from the lab spec, keyed by the reason).

The checks themselves live with their lab (labs/<lab>/checks.py or checks/, named by lab.yaml's checks_module):
the grader core knows no workload.  ``check`` registers a function under its name in CHECKS, which holds every
check loaded in this process by name (the last one loaded wins, for tests); a lab uses only those of its own
module (grader/labspec.py: Lab.checks), so two labs may each have a check of the same name."""

from dataclasses import dataclass


@dataclass
class Verdict:
    passed: bool
    reason: str          # machine-readable key, also the hint key in lab.yaml
    detail: str = ""     # what was seen, safe to show the student (never the answer)


CHECKS = {}
_REGISTERED = []     # (name, fn), every check ever registered


def check(name):
    def register(fn):
        CHECKS[name] = fn
        _REGISTERED.append((name, fn))
        return fn
    return register


def checks_of(module):
    """{name: check} registered by ``module`` or its submodules (a lab's checks package)."""
    prefix = module.__name__
    return {name: fn for name, fn in _REGISTERED
            if fn.__module__ == prefix or fn.__module__.startswith(prefix + ".")}
