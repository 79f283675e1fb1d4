"""What a correct answer is.  Each check gets the parsed output of the student's script and
the workload's ground truth, and returns a Verdict whose feedback teaches without giving the
answer away (hints come from the lab spec, keyed by the reason)."""

from dataclasses import dataclass


@dataclass
class Verdict:
    passed: bool
    reason: str          # machine-readable key, also the hint key in lab.yaml
    detail: str = ""     # what was seen, safe to show the student (never the answer)


CHECKS = {}


def check(name):
    def register(fn):
        CHECKS[name] = fn
        return fn
    return register


from . import files, descriptors, stacks  # noqa: E402,F401  (registers the checks)
