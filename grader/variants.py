#!/usr/bin/env python3
"""Course variants: the names a course's copy of a lab uses, drawn from the course's seed.

A lab's answers are public (last year's, a classmate's, a forum's), and every one of them names the lab's program
and functions: `comm == "kprobeme"`, `uprobe:/opt/bpfhol/bin/uprobeme:process_order`.  A lab.yaml may list, under
``variants:``, each name a course may change with the names it may become:

    variants:
      kprobeme: [filewatch, cfgpoll, ...]     # the workload program (its binary and its comm: 15 bytes at most)
      load_config: [read_settings, ...]       # a function of the workload

With a course seed (the roles' ``bpfhol_course_seed``, the grader's ``--course-seed``) every listed name is
replaced by one of its choices, the same for everyone who uses that seed: the workload is built with the drawn
names (a C header of ``#define canonical drawn`` lines, included by the workload's source), the lab text and
examples installed on the VM say them, and the grader runs and judges the drawn workload.  An answer written for
the lab's own names, or another course's, names a program or functions this course's VMs do not have.  Without a
seed, nothing changes.  The draw is per course, not per student: grades that count are computed on the course's
pool of VMs, which all run the course's one variant.

Standard library (and PyYAML to read lab.yaml): the roles run this file on the Ansible controller
(``python3 grader/variants.py LAB_DIR SEED`` prints the names and the header as JSON).
"""

import hashlib
import json
import re
import sys
from pathlib import Path

NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
PROGRAM_MAX = 15                     # the kernel's comm: what a `comm ==` filter compares


class VariantError(ValueError):
    """A lab.yaml whose variants cannot be drawn: one line saying what to fix."""


def choices_of(spec, where="lab.yaml"):
    """{canonical name: [choices]} of a lab spec (a dict), checked: names are C identifiers, the program's fit in
    comm, no choice is the canonical name or any other listed name (so drawn names never collide)."""
    variants = spec.get("variants") or {}
    if not isinstance(variants, dict):
        raise VariantError("%s: variants must map each name to the names it may become" % where)
    program = str((spec.get("workload") or {}).get("program", ""))
    seen = set(variants)
    out = {}
    for canonical, options in variants.items():
        if not isinstance(canonical, str) or not NAME.fullmatch(canonical):
            raise VariantError("%s: variants: %r is not a name (lower-case C identifier)" % (where, canonical))
        if not isinstance(options, list) or not options:
            raise VariantError("%s: variants.%s must list the names it may become" % (where, canonical))
        for option in options:
            if not isinstance(option, str) or not NAME.fullmatch(option):
                raise VariantError("%s: variants.%s: %r is not a name (lower-case C identifier)"
                                   % (where, canonical, option))
            if canonical == program and len(option) > PROGRAM_MAX:
                raise VariantError("%s: variants.%s: %r is longer than the %d bytes of a process name (comm)"
                                   % (where, canonical, option, PROGRAM_MAX))
            if option in seen:
                raise VariantError("%s: variants.%s: %r is listed twice (every name and choice must differ)"
                                   % (where, canonical, option))
            seen.add(option)
        out[canonical] = list(options)
    return out


def draw(lab_name, spec, seed):
    """{canonical: drawn} for a course seed ({} without a seed: the lab's own names)."""
    if seed in (None, ""):
        return {}
    out = {}
    for canonical, options in choices_of(spec, "labs/%s/lab.yaml" % lab_name).items():
        digest = hashlib.sha256(("%s\0%s\0%s" % (seed, lab_name, canonical)).encode()).hexdigest()
        out[canonical] = options[int(digest, 16) % len(options)]
    return out


def rename(text, names):
    """``text`` with every whole-word occurrence of a canonical name replaced by its drawn one, all at once (a
    drawn name is never renamed again), except in a C file's name."""
    if not names:
        return text
    # A source file's name (kprobeme.c) keeps the lab's name: the file on the VM is called that.
    pattern = re.compile(r"(?<![A-Za-z0-9_])(%s)(?![A-Za-z0-9_]|\.[ch]\b)" % "|".join(
        re.escape(n) for n in sorted(names, key=len, reverse=True)))
    return pattern.sub(lambda m: names[m.group(1)], text)


def header(names):
    """The C header a workload includes (variant.h): each canonical identifier defined as the drawn one, so the
    preprocessor renames functions, and XSTR(name) spells the drawn name in strings."""
    lines = ["/* bpfhol course variant: written by the workloads role (grader/variants.py); do not edit. */"]
    lines += ["#define %s %s" % (canonical, drawn) for canonical, drawn in sorted(names.items())]
    return "\n".join(lines) + "\n"


def load_spec(lab_dir):
    import yaml

    path = Path(lab_dir) / "lab.yaml"
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise VariantError("%s: not a lab spec (a mapping)" % path)
    return data


VARIANT_FILE = "variant.json"


def render(lab_dir, names, dest, dirs=()):
    """The lab's text (README.md) and the files of ``dirs`` (e.g. examples/) with the course's names, into
    ``dest``, beside variant.json (the names, which the grader's loader applies to the installed lab.yaml)."""
    lab_dir, dest = Path(lab_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "README.md").write_text(rename((lab_dir / "README.md").read_text(), names))
    for folder in dirs:
        for path in sorted((lab_dir / folder).glob("*")) if (lab_dir / folder).is_dir() else []:
            if path.is_file():
                (dest / folder).mkdir(exist_ok=True)
                (dest / folder / path.name).write_text(rename(path.read_text(), names))
    (dest / VARIANT_FILE).write_text(json.dumps(names, indent=1, sort_keys=True) + "\n")


USAGE = ("usage: variants.py LAB_DIR SEED                      prints {\"names\": ..., \"header\": ...} as JSON\n"
         "       variants.py LAB_DIR SEED --render DEST [DIR...]  the text (and DIRs) with the names, in DEST")


def main(argv):
    if len(argv) < 2 or (len(argv) > 2 and argv[2] != "--render") or len(argv) == 3:
        print(USAGE, file=sys.stderr)
        return 2
    lab_dir, seed = Path(argv[0]), argv[1]
    try:
        spec = load_spec(lab_dir)
        names = draw(str(spec.get("name") or lab_dir.name), spec, seed)
        if len(argv) > 2:
            render(lab_dir, names, argv[3], argv[4:])
    except (OSError, VariantError) as exc:
        print("variants.py: %s" % exc, file=sys.stderr)
        return 2
    print(json.dumps({"names": names, "header": header(names)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
