"""Grade one Gradescope submission on the instructor's lab-VM pool (submissions mode, one student per VM).

Layout (Gradescope's): ROOT/source/ holds this bundle (config.yml, the VM roster, the grader's key, the pinned
known_hosts), ROOT/submission/ the student's files, ROOT/results/results.json the answer Gradescope reads.

A submission the grader could not run anywhere (no VM answered, keys refused, agent broken) is an autograder
error: a message on stdout for the staff, no results.json, exit 2; Gradescope then shows "autograder failed"
and the staff can rerun it once the pool is back.  Never a zero for the student.

Evidence: with ``evidence_dir`` in config.yml (make-bundle --evidence-dir DIR) or $BPFHOL_EVIDENCE_DIR, every run
records into that folder as `bpfhol-grade grade` records into a results folder (journal.jsonl, each student's
evidence: scripts, raw output, the workload's truth), one student per Gradescope submitter, a resubmission
replacing their earlier verdict; `bpfhol-grade report --results DIR --rejudge` re-judges them later.  It must be
a folder that outlives the run (Gradescope's container does not: a mounted share); without it the evidence is
deleted with the run's temporary folder, as before.  Runs sharing the folder queue for it (its lock).
"""

import os

import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

EXIT_ERROR = 2


def fail(message):
    print("bpfhol autograder error: %s" % message)
    print("This is not the student's fault: no score was recorded. Fix the lab-VM pool, then use "
          "\"Rerun autograder\" on this assignment.")
    return EXIT_ERROR


def collect(submission, lab, staging):
    """The lab's scripts from the submission, wherever the student put them (a zip may add a folder)."""
    wanted = {ex.script for ex in lab.exercises}
    folder = staging / "submission"
    folder.mkdir(parents=True)
    found = []
    for path in sorted(Path(submission).rglob("*.bt")):
        if path.name in wanted and not path.is_symlink() and path.is_file() and path.name not in found:
            shutil.copyfile(path, folder / path.name)
            found.append(path.name)
    return found


def submitter(root):
    """Who submitted, from Gradescope's submission_metadata.json: the first user's email, else their sid, else the
    submission id; "submission" when the file is missing (a local test run)."""
    try:
        meta = json.loads((Path(root) / "submission_metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "submission"
    users = meta.get("users") if isinstance(meta, dict) else None
    first = users[0] if isinstance(users, list) and users and isinstance(users[0], dict) else {}
    for key in ("email", "sid"):
        if isinstance(first.get(key), str) and first[key].strip():
            return first[key].strip()[:200]
    return "submission-%s" % str(meta.get("id", "")).strip()[:40] if isinstance(meta, dict) and meta.get("id") \
        else "submission"


def main(root):
    from grader.cohort import grade_submissions
    from grader.errors import GraderError
    from grader.journal import Journal
    from grader.labspec import load_lab
    from grader.reports import gradescope, write_atomic
    from grader.roster import load_roster
    from grader.submissions import load_submissions

    root = Path(root)
    source = root / "source"
    try:
        config = yaml.safe_load((source / "config.yml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return fail("cannot read %s: %s" % (source / "config.yml", exc))
    staging = Path(tempfile.mkdtemp(prefix="bpfhol-gradescope-"))
    try:
        lab_ref = str(config.get("lab", "kprobes"))
        lab = load_lab(source / lab_ref if (source / lab_ref / "lab.yaml").is_file() else lab_ref,
                       course_seed=config.get("course_seed") or None)
        found = collect(root / "submission", lab, staging / "subs")
        print("bpfhol: lab %s, scripts found: %s" % (lab.name, ", ".join(found) or "none"))
        vms = load_roster(source / str(config.get("vms", "vms.yml")), warn=print)
        random.shuffle(vms)            # several Gradescope runs at once start on different VMs
        if not any(not vm.problem for vm in vms):
            return fail("no usable lab VM in the bundle's roster: %s" % vms[0].problem)
        known_hosts = staging / "known_hosts"         # a writable copy of the keys pinned when the bundle was made
        pinned = source / str(config.get("known_hosts", "known_hosts"))
        if pinned.is_file():
            shutil.copyfile(pinned, known_hosts)
        options = {"known_hosts": str(known_hosts), "connect_timeout": int(config.get("connect_timeout", 10)),
                   "quiet": True}
        subs = load_submissions(staging / "subs", lab)
        kept = os.environ.get("BPFHOL_EVIDENCE_DIR") or config.get("evidence_dir")
        if kept:
            from grader.rejudge import remember_lab

            subs[0].student = submitter(root)
            journal = Journal(str(kept), wait=True)
            [result] = grade_submissions(lab, subs, vms, journal, force=True, retries=1, options=options)
            remember_lab(str(kept), lab, "gradescope")
            print("bpfhol: evidence kept in %s (journal.jsonl, students/); re-judge with `bpfhol-grade report "
                  "--results %s --rejudge`" % (kept, kept))
        else:
            [result] = grade_submissions(lab, subs, vms, Journal(staging / "results"), retries=1, options=options)
    except GraderError as exc:
        return fail(str(exc))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if result.status != "graded":
        return fail(result.error)
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_atomic(results / "results.json", json.dumps(gradescope.results_json(result, lab), indent=2))
    print("bpfhol: graded on %s: %g/%g" % (result.host or "a lab VM", result.score, result.max_score))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/autograder"))
