"""Command line: python -m grader (or bpfhol-grade) grade | submissions | preflight | self-check | report.

Exit codes, for CI pipelines:
  0  every student graded (scores are in the reports)      self-check: every exercise passed
  1  some students not gradable (see the reports)          self-check: some exercise failed
  2  bad input: roster, lab, options (one-line error)
  3  results could not be written (finished ones are kept)
  4  preflight: some host is broken
  5  the reports could not be made (a grader bug; the journal keeps every result: one line says so,
     the traceback goes to <results>/report-error.txt)
"""

import argparse
import os
import sys
from pathlib import Path

from .errors import GraderError, HostError, WriteError

EXIT_OK, EXIT_NOT_GRADABLE, EXIT_INPUT, EXIT_WRITE, EXIT_BROKEN, EXIT_REPORT_BUG = 0, 1, 2, 3, 4, 5
ROSTER_FORMATS = ["yaml", "csv", "ansible", "ini", "ssh_config"]
KNOWN_HOSTS_HELP = ("known_hosts file where the grader pins each host's key on first contact (default: "
                    "$BPFHOL_KNOWN_HOSTS, else ~/.cache/bpfhol/known_hosts; the same for every command)")


def default_known_hosts():
    """One pinned-key file per instructor account, shared by grade, submissions, preflight and self-check, so a new
    results folder does not trust a changed key again."""
    return os.environ.get("BPFHOL_KNOWN_HOSTS") or os.path.expanduser("~/.cache/bpfhol/known_hosts")


def _wait_option(p):
    p.add_argument("--wait", action="store_true",
                   help="if another grader run holds the results folder, wait for it to end (default: exit 2)")
    p.add_argument("--show-output", action="store_true",
                   help="each student's results.json (what the student sees) also shows the first lines of their "
                   "scripts' raw output (default: feedback only; the evidence and the dashboard keep it)")


def _course_seed(p):
    p.add_argument("--course-seed", default=os.environ.get("BPFHOL_COURSE_SEED") or None, metavar="SEED",
                   help="the course seed the lab VMs were provisioned with (bpfhol_course_seed): the program and "
                   "function names of the course's variant (default: $BPFHOL_COURSE_SEED, else the lab's own names)")


def _common(p):
    p.add_argument("--lab", default=None, help="lab name (a folder in labs/) or a lab folder path (default: the lab "
                   "the --results folder was last judged with, see its lab.json; else kprobes)")
    _course_seed(p)
    p.add_argument("--results", default=None, help="results folder (default: results/<lab>)")
    p.add_argument("--force", action="store_true", help="regrade students already in the journal")
    p.add_argument("--known-hosts", default=None, help=KNOWN_HOSTS_HELP)
    p.add_argument("--replace-host-keys", action="store_true",
                   help="accept hosts whose key changed (e.g. rebuilt VMs) and record the new key")
    p.add_argument("--connect-timeout", type=int, default=10, help="seconds per SSH connect step (default 10)")
    p.add_argument("--retries", type=int, default=1, help="regrade after a lost connection this many times (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _wait_option(p)
    p.add_argument("--lms-assignment", default=None, metavar="NAME",
                   help="assignment column of canvas.csv and moodle.csv (default: 'bpfhol <lab>'; for Canvas, "
                   "'Name (12345)' updates the existing assignment 12345); remembered in <results>/lms.json")
    _lms_options(p)
    _course_options(p)


def _lms_options(p, report=False):
    """canvas.csv and moodle.csv settings (docs/lms.md), remembered in <results>/lms.json for later reports."""
    if report:
        p.add_argument("--lms-assignment", default=None, metavar="NAME",
                       help="assignment column of canvas.csv and moodle.csv; remembered in <results>/lms.json")
    p.add_argument("--canvas-assignment", default=None, metavar="NAME",
                   help="canvas.csv's assignment column, e.g. 'Kprobes lab (4242)' to update Canvas assignment 4242 "
                   "(default: --lms-assignment); remembered")
    p.add_argument("--moodle-assignment", default=None, metavar="NAME",
                   help="moodle.csv's grade item column (default: --lms-assignment); remembered")
    p.add_argument("--lms-points", default=None, metavar="N",
                   help="the points the LMS assignment is worth: canvas.csv and moodle.csv scale each score to it "
                   "(7/10 with --lms-points 20 is 14; default: the lab's points); remembered")
    p.add_argument("--moodle-match", default=None, choices=("email", "username", "idnumber"),
                   help="the user field moodle.csv identifies students by (Moodle's 'Map from'/'Map to'); only "
                   "students who have it get a row (default: the field most graded students have); remembered")
    if report:
        p.add_argument("--lms-roster", default=None, metavar="ROSTER",
                       help="a roster (any format, hosts not needed) whose rows give students' LMS identities: "
                       "email, lms_id, sis_id, login, name (e.g. after `submissions`, which has no roster)")


def _course_options(p):
    p.add_argument("--question", metavar="ID", default=None,
                   help="with --force (grade) or --rejudge (report): re-run or re-judge only this question "
                   "(e.g. q3); every other question keeps its recorded verdict")
    p.add_argument("--overrides", metavar="FILE", default=None,
                   help="the instructor's grade overrides (CSV student,question,points,reason or a YAML list of "
                   "them; question 'total' sets the total): kept in <results>/overrides.json, recorded in the "
                   "journal, honoured by every report and LMS file from then on (an empty file removes them)")


def build_parser():
    parser = argparse.ArgumentParser(prog="bpfhol-grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("grade", help="grade a cohort: each student's own VM, scripts in their answers folder",
                       description="SSH into every student VM in the roster, run their scripts against a fresh "
                       "randomized workload, and write reports. Rerunning resumes: graded students are skipped, students "
                       "recorded as not gradable are tried again.")
    g.add_argument("roster", help="YAML/CSV roster (student,host,port,user,key), Ansible inventory (file or folder, "
                   "read with ansible-inventory), or ssh_config (e.g. the output of `vagrant ssh-config`)")
    g.add_argument("--format", choices=ROSTER_FORMATS, help="roster format (default: guessed)")
    g.add_argument("--parallel", type=int, default=16, help="hosts graded at once (default 16)")
    g.add_argument("--student", action="append",
                   help="grade only this student (repeatable); the reports still list the whole cohort")
    g.add_argument("--pool", metavar="VMS",
                   help="grades that count: collect each student's scripts from their VM and grade them on these "
                   "lab VMs of yours (roster, same formats). Without it, scripts run on each student's own VM, "
                   "where the student is root: a self-check, not a grade to sign")
    g.add_argument("--pool-format", choices=ROSTER_FORMATS, help="format of the --pool roster (default: guessed)")
    g.add_argument("--deadline", metavar="TIME",
                   help="scripts changed after TIME (ISO 8601, e.g. 2026-12-14T23:59, local time unless a zone is "
                   "given) are flagged, penalised with --late-penalty, or not graded with --late refuse (with "
                   "--pool the times come from the collection, else from each student's VM after grading)")
    g.add_argument("--extensions", metavar="FILE",
                   help="with --deadline: later deadlines for some students (CSV student,deadline or YAML "
                   "{student: deadline})")
    g.add_argument("--late", choices=("flag", "refuse"), default="flag",
                   help="a script changed after the deadline: flag it in the feedback (default) or do not grade it")
    g.add_argument("--late-penalty", metavar="RATE", default=None,
                   help="with --deadline: points off a late script's question per started day or hour late, e.g. "
                   "10%%/day or 2%%/hour (shown in its feedback)")
    g.add_argument("--recollect", action="store_true",
                   help="with --pool: collect the scripts again (default: a student's first collection is kept) "
                   "and regrade those students")
    _common(g)

    s = sub.add_parser("submissions", help="grade a folder SUBMISSIONS/<student-id>/q1.bt ... on lab VMs you name",
                       description="Each student's scripts are uploaded to one of the lab VMs and graded there, one "
                       "student per VM at a time (every probe sees the whole kernel); several VMs share the load.")
    s.add_argument("folder", help="SUBMISSIONS folder")
    s.add_argument("--vms", required=True, help="roster of lab VMs (same formats as grade)")
    s.add_argument("--format", choices=ROSTER_FORMATS, help="VM roster format")
    _common(s)

    pf = sub.add_parser("preflight", help="check lab hosts: arch, kernel, bpftrace, BTF, a real probe attach "
                        "(kprobe, or the --lab's own kind)",
                        description="Reports per host whether it can grade, apart from grades.")
    pf.add_argument("roster")
    pf.add_argument("--format", choices=ROSTER_FORMATS)
    pf.add_argument("--parallel", type=int, default=16)
    pf.add_argument("--known-hosts", default=None, help=KNOWN_HOSTS_HELP)
    pf.add_argument("--replace-host-keys", action="store_true")
    pf.add_argument("--connect-timeout", type=int, default=10)
    pf.add_argument("--lab", default=None, help="prove the probe kind this lab needs (its lab.yaml host_probe: a "
                    "uprobe for the uprobes lab, through a short job of its workload); default: a kprobe")
    _course_seed(pf)

    sc = sub.add_parser("self-check", help="a student checks their own answers (visible checks only)",
                        description="On the lab VM: `bpfhol check kprobes` runs this with --local. From the host: "
                        "`vagrant ssh-config > vm.cfg; python -m grader self-check kprobes --roster vm.cfg`.")
    sc.add_argument("lab_name", metavar="lab", nargs="?", default="kprobes")
    where = sc.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="run here, on the lab VM")
    where.add_argument("--roster", help="ssh_config/roster naming the VM (first entry is used)")
    sc.add_argument("--answers", default=None, help="answers folder (default: the lab's, e.g. ~/answers/kprobes)")
    _course_seed(sc)
    sc.add_argument("--known-hosts", default=None, help=KNOWN_HOSTS_HELP)
    sc.add_argument("--connect-timeout", type=int, default=10)

    r = sub.add_parser("report", help="rewrite the reports from a results folder's journal",
                       description="Rewrite the reports from the journal. With --rejudge, every graded student is "
                       "judged again by today's checks from the evidence saved with the result (each script's "
                       "raw output and the workload's truth log): no VM is contacted.")
    r.add_argument("--lab", default=None,
                   help="the lab the folder was graded with (default: the one its journal records; another is refused)")
    r.add_argument("--results", required=True)
    _wait_option(r)
    r.add_argument("--rejudge", action="store_true",
                   help="re-judge graded students from their saved evidence, record the new verdicts (each keeping "
                   "the one it replaced) and print a table of who changed from what, and why")
    r.add_argument("--dry-run", action="store_true",
                   help="with --rejudge: print the table of changes, write nothing")
    r.add_argument("--quiet", action="store_true", help="no score table on the terminal (the reports are written)")
    r.add_argument("--out", metavar="DIR", default=None,
                   help="write the reports to DIR instead, from a snapshot of the journal, without taking the "
                   "results folder (read-only: works while a grade runs; the default when one does)")
    _course_options(r)
    _lms_options(r, report=True)

    sub.add_parser("labs", help="list the labs the grader knows")
    return parser


def _options(args, results_dir):
    return {"known_hosts": args.known_hosts or default_known_hosts(),
            "replace_host_keys": args.replace_host_keys, "connect_timeout": args.connect_timeout,
            "quiet": getattr(args, "quiet", False)}


class ReportBug(Exception):
    """Writing the reports failed for a reason other than the disk: a grader bug on odd text.
    Every result is already in the journal; the traceback is kept for the bug report."""

    def __init__(self, results_dir, exc):
        import traceback

        self.where = Path(results_dir) / "report-error.txt"
        try:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.where.write_text(text, encoding="utf-8", errors="replace")
        except OSError:
            self.where = None
        super().__init__("could not make the reports in %s (%s: %s); every result is in its journal.jsonl. "
                         "Please report this bug%s; `report --results %s` retries"
                         % (results_dir, type(exc).__name__, str(exc)[:160],
                            " with %s" % self.where if self.where else "", results_dir))


def _finish(results, lab, results_dir, quiet=False, judged=None, source_dir=None):
    """Write every report for `results` (the whole cohort) to `results_dir`; the exit code speaks for `judged` (this
    run's students, default: all of them).  ``source_dir``: the results folder whose lms.json and evidence the
    reports read, when they are written elsewhere (report --out)."""
    from .reports import table, write_all

    try:
        if source_dir is None:
            write_all(results, lab, results_dir)
        else:
            write_all(results, lab, results_dir, source_dir=source_dir)
    except OSError as exc:
        raise WriteError("cannot write reports to %s: %s (the journal keeps every result; rerun `report`)"
                          % (results_dir, exc.strerror))
    except Exception as exc:  # noqa: BLE001 - a report bug must not look like a crash that lost results
        raise ReportBug(results_dir, exc)
    if not quiet:
        from .reports import lms

        sys.stdout.write(table.render(results, lab))
        sys.stdout.write("reports: %s/{summary.txt,gradebook.csv,canvas.csv,moodle.csv,junit.xml,index.html,"
                         "students/*/results.json}\n" % results_dir)
        for line in lms.left_out(results, lab, lms.load(source_dir or results_dir))[1]:
            sys.stdout.write(line + "\n")        # who canvas.csv / moodle.csv leave out: lms-left-out.txt says why
    judged = results if judged is None else judged
    return EXIT_OK if all(r.status == "graded" for r in judged) else EXIT_NOT_GRADABLE


def _remember_lms(results_dir, entries, args):
    """The roster's LMS identities and the LMS options given, into <results>/lms.json (checked first)."""
    from .reports import lms

    settings = {"canvas_assignment": getattr(args, "canvas_assignment", None),
                "moodle_assignment": getattr(args, "moodle_assignment", None),
                "points": getattr(args, "lms_points", None), "moodle_match": getattr(args, "moodle_match", None)}
    if settings["points"] is not None and lms.points_problem(settings["points"]):
        raise GraderError(lms.points_problem(settings["points"]))
    if settings["points"] is not None:
        settings["points"] = lms.number(float(settings["points"]))
    for option, name, which in (("--canvas-assignment", settings["canvas_assignment"], "canvas"),
                                ("--moodle-assignment", settings["moodle_assignment"], "moodle"),
                                ("--lms-assignment", getattr(args, "lms_assignment", None), "canvas")):
        if name is not None and lms.assignment_problem(name, which):
            raise GraderError("%s: %s" % (option, lms.assignment_problem(name, which)))
    try:
        lms.remember(results_dir, entries, getattr(args, "lms_assignment", None), **settings)
    except OSError as exc:
        raise WriteError("cannot write %s/lms.json: %s" % (results_dir, exc.strerror))


def cmd_grade(args):
    from .cohort import cohort_results, grade_roster
    from .journal import Journal
    from .labspec import load_lab
    from .roster import load_roster

    lab = load_lab(_lab_argument(args), course_seed=args.course_seed)
    question = _question(args, lab, "force")
    cohort = entries = load_roster(args.roster, args.format)
    if args.student:
        wanted = set(args.student)
        entries = [e for e in cohort if e.student in wanted]
        if not entries:
            raise GraderError("none of --student %s is in the roster" % ", ".join(sorted(wanted)))
    if args.parallel < 1:
        raise GraderError("--parallel must be at least 1")
    if args.recollect and not args.pool:
        raise GraderError("--recollect goes with --pool (grades that count are computed on your lab VMs)")
    if args.extensions and not args.deadline:
        raise GraderError("--extensions goes with --deadline (the deadline everyone else has)")
    if args.late_penalty and not args.deadline:
        raise GraderError("--late-penalty goes with --deadline (the time after which points are taken off)")
    if args.late_penalty and args.late == "refuse":
        raise GraderError("--late-penalty goes with --late flag (--late refuse grades no late script at all)")
    if args.late_penalty:
        from .late import parse_penalty

        parse_penalty(args.late_penalty)
    if args.deadline:                     # checked before the results folder is made
        from .collect import load_extensions, parse_time

        parse_time(args.deadline)
        if args.extensions:
            load_extensions(args.extensions)
    results_dir = args.results or os.path.join("results", lab.name)
    journal = Journal(results_dir, wait=args.wait, show_output=args.show_output)
    _same_lab(lab, journal, results_dir)
    _remember_lms(results_dir, cohort, args)
    _take_overrides(args, lab, journal, results_dir, [e.student for e in cohort])
    if args.pool:
        judged = _grade_on_pool(args, lab, entries, journal, results_dir, question)
    else:                        # the table and summary.txt say these are self-checks (reports/table.py)
        judged = grade_roster(lab, entries, journal, parallel=args.parallel, force=args.force,
                              retries=args.retries, options=_options(args, results_dir), question=question,
                              adjust=_deadline_marks(args, lab, entries))
    _remember_lab(results_dir, lab, "grade")
    _stop_if_most_have_no_scripts(judged, results_dir)
    return _finish(cohort_results(journal, [e.student for e in cohort]), lab, results_dir, args.quiet, judged)


def _stop_if_most_have_no_scripts(judged, results_dir):
    """A run where most students have no scripts in their answers folder is the roster's mistake (a forgotten
    `answers:` or `student_user:`), not the cohort's: stop with one line before any report or LMS file is
    written.  Their results are in the journal as not gradable, so the rerun after the fix grades exactly them."""
    empty = [r for r in judged if r.status != "graded" and r.error.startswith("no scripts found")]
    if len(judged) >= 3 and 2 * len(empty) > len(judged):
        raise GraderError("%d of %d students have no scripts in their answers folder (%s): the roster most likely "
                          "names the wrong folder or account; set answers: or student_user: (docs/roster.md) and "
                          "rerun; no report was written (the journal in %s keeps every result)"
                          % (len(empty), len(judged), empty[0].error.split(" (fix:")[0][len("no scripts found in "):],
                             results_dir))


def _lab_argument(args):
    """--lab, else the lab the --results folder was last judged with (its lab.json), else kprobes."""
    from .rejudge import remembered_lab

    if args.lab:
        return args.lab
    memo = remembered_lab(args.results) if args.results else None
    if memo and Path(memo["path"], "lab.yaml").is_file():
        return memo["path"]
    return "kprobes"


def _question(args, lab, needs):
    """--question, checked against the lab; it goes with --force (grade) or --rejudge (report)."""
    if not args.question:
        return None
    from .questions import check_question

    if not getattr(args, needs):
        raise GraderError("--question goes with --%s (it %s one question of students already graded)"
                          % (needs, "re-runs" if needs == "force" else "re-judges"))
    return check_question(lab, args.question)


def _remember_lab(results_dir, lab, by):
    from .rejudge import remember_lab

    remember_lab(results_dir, lab, by)


def _take_overrides(args, lab, journal, results_dir, students=()):
    """--overrides FILE: checked, kept in <results>/overrides.json, and every student it changes recorded again
    (a journal line with the override applied; grader/overrides.py)."""
    if not args.overrides:
        return
    from . import overrides

    recorded = journal.load()
    rows = overrides.load(args.overrides, lab, set(recorded) | set(students))
    overrides.save(results_dir, rows, Path(args.overrides).resolve())
    journal.overrides = rows
    changed = 0
    for result in recorded.values():
        before = (result.score, [(e.score, e.feedback) for e in result.exercises], result.error)
        journal.adjust(result)
        if (result.score, [(e.score, e.feedback) for e in result.exercises], result.error) != before:
            journal.record(result, lab)
            changed += 1
    waiting = sorted({o["student"] for o in rows} - {s for s, r in recorded.items() if r.status == "graded"})
    print("overrides: %d rows from %s, %d students' results changed%s" % (
        len(rows), args.overrides, changed,
        "; not applied until graded: %s" % ", ".join(waiting[:5]) if waiting else ""), file=sys.stderr)


def _deadline_marks(args, lab, entries):
    """Cohort mode with --deadline: after each student is graded their agent reports the scripts' modification
    times (grader/collect.py script_times); late ones are flagged, penalised or refused as in pool mode."""
    if not args.deadline:
        return None
    from .cohort import backend_for
    from .collect import load_extensions, mark_late, parse_time, script_times, student_deadline

    deadline = parse_time(args.deadline)
    extensions = load_extensions(args.extensions) if args.extensions else {}
    unknown = sorted(set(extensions) - {e.student for e in entries})
    if unknown and not args.student:
        raise GraderError("the extensions file names %s, who is not in the roster" % ", ".join(unknown[:3]))
    options = _options(args, None)

    def adjust(result, entry):
        backend = backend_for(entry, options)
        try:
            backend.connect()
            manifest = script_times(backend, lab, entry)
        finally:
            backend.close()
        mark_late(result, lab, manifest, student_deadline(entry.student, deadline, extensions), args.late,
                  args.late_penalty)

    return adjust


def _grade_on_pool(args, lab, entries, journal, results_dir, question=None):
    """grade --pool: collect each student's scripts from their VM (kept in <results>/collected/), then grade them
    on the instructor's VMs through the submissions path (grader/collect.py says what each step trusts)."""
    from . import grading
    from .cohort import backend_for, finished, grade_submissions, rerun_question
    from .collect import (collect_cohort, handed_in, load_extensions, mark_late, parse_time, student_deadline,
                          submission_of)
    from .roster import load_roster

    vms = load_roster(args.pool, args.pool_format)
    if not any(not vm.problem for vm in vms):
        raise GraderError("no usable lab VM in %s: %s" % (args.pool, vms[0].problem))
    deadline = parse_time(args.deadline) if args.deadline else None
    extensions = load_extensions(args.extensions) if args.extensions else {}
    unknown = sorted(set(extensions) - {e.student for e in entries})
    if unknown and not args.student:
        raise GraderError("the extensions file names %s, who is not in the roster" % ", ".join(unknown[:3]))
    options = _options(args, results_dir)
    done = {} if (args.force or args.recollect) else {
        s: r for s, r in finished(journal).items() if r.mode == "pool"}     # a self-check's grade never counts
    todo = [e for e in entries if e.student not in done]

    def said(student, manifest):
        if not args.quiet:
            what = "collected" if isinstance(manifest, dict) else "not collected: %s" % manifest[:100]
            print("collect %s: %s" % ("".join(c for c in student if c.isprintable())[:40], what), file=sys.stderr)

    manifests = collect_cohort(lab, todo, results_dir, lambda e: backend_for(e, options), args.parallel,
                               recollect=args.recollect, progress=said)
    subs = []
    for entry in todo:
        manifest = manifests[entry.student]
        if isinstance(manifest, dict) and not handed_in(manifest):
            folders = sorted({f["path"].rsplit("/", 1)[0] for f in manifest["files"].values()})
            manifest = ("no scripts found in %s on %s (fix: the student saves %s there, or the roster names the "
                        "folder that holds them with answers: or student_user:; then rerun)"
                        % (" and ".join(folders), entry.host, ", ".join(sorted(manifest["files"]))))
        if isinstance(manifest, dict):
            subs.append(submission_of(lab, manifest, results_dir,
                                      student_deadline(entry.student, deadline, extensions), args.late))
            continue
        result = grading.not_gradable(entry.student, manifest if manifest.startswith("no scripts found") else
                                      "could not collect the scripts: %s" % manifest, entry.host)
        result.max_score, result.mode = lab.max_score, "pool"
        if question and rerun_question(journal, question, result, journal.load().get(entry.student)) is None:
            continue                 # --question: a student who could not be collected keeps their grade
        journal.record(result, lab)

    def adjust(result):
        mark_late(result, lab, manifests[result.student], student_deadline(result.student, deadline, extensions),
                  args.late, args.late_penalty)

    if subs:
        grade_submissions(lab, subs, vms, journal, force=True, retries=args.retries, options=options, mode="pool",
                          adjust=adjust, question=question)
    recorded = journal.load()
    return [recorded[e.student] for e in entries if e.student in recorded]


def cmd_submissions(args):
    from .cohort import cohort_results, grade_submissions
    from .journal import Journal
    from .labspec import load_lab
    from .roster import load_roster
    from .submissions import load_submissions

    lab = load_lab(_lab_argument(args), course_seed=args.course_seed)
    question = _question(args, lab, "force")
    subs = load_submissions(args.folder, lab)
    vms = load_roster(args.vms, args.format)
    if not any(not vm.problem for vm in vms):
        raise GraderError("no usable lab VM in %s: %s" % (args.vms, vms[0].problem))
    results_dir = args.results or os.path.join("results", lab.name)
    journal = Journal(results_dir, wait=args.wait, show_output=args.show_output)
    _same_lab(lab, journal, results_dir)
    _remember_lms(results_dir, (), args)
    _take_overrides(args, lab, journal, results_dir, [s.student for s in subs])
    judged = grade_submissions(lab, subs, vms, journal, force=args.force, retries=args.retries,
                               options=_options(args, results_dir), question=question)
    _remember_lab(results_dir, lab, "submissions")
    return _finish(cohort_results(journal, [s.student for s in subs]), lab, results_dir, args.quiet, judged)


def cmd_preflight(args):
    from .cohort import backend_for
    from .preflight import preflight, render
    from .roster import load_roster

    entries = load_roster(args.roster, args.format)
    opts = {"known_hosts": args.known_hosts or default_known_hosts(),
            "replace_host_keys": args.replace_host_keys, "connect_timeout": args.connect_timeout}
    lab = None
    if args.lab:
        from .labspec import load_lab

        lab = load_lab(args.lab, course_seed=args.course_seed)
    rows = preflight(entries, lambda e: backend_for(e, opts), args.parallel, lab=lab)
    sys.stdout.write(render(rows))
    return EXIT_OK if all(r["ok"] for r in rows) else EXIT_BROKEN


def cmd_self_check(args):
    from . import grading
    from .labspec import expand_home, load_lab
    from .reports import clean

    lab = load_lab(args.lab_name, course_seed=args.course_seed)
    if args.local:
        from .backend.local import LocalBackend

        backend = LocalBackend()
        user = os.environ.get("SUDO_USER") or os.environ.get("USER") or "vagrant"
        answers = args.answers or expand_home(lab.answers_dir, user)
    else:
        from .cohort import backend_for
        from .roster import load_roster

        entry = load_roster(args.roster)[0]
        if entry.problem:
            raise GraderError("roster %s: %s" % (args.roster, entry.problem))
        backend = backend_for(entry, {"known_hosts": args.known_hosts or default_known_hosts(),
                                      "connect_timeout": args.connect_timeout})
        answers = args.answers or expand_home(lab.answers_dir, entry.user)
    scripts = {ex.id: ("path", os.path.join(answers, ex.script)) for ex in lab.exercises}
    print("self-check of lab %s: running your scripts in %s for about %ds ..." % (lab.name, answers, lab.window + 10))
    try:
        backend.connect()
        result = grading.grade(backend, lab, "self-check", scripts, visible_only=True)
    except HostError as exc:
        raise GraderError("cannot run the self-check: %s" % exc)
    finally:
        backend.close()
    for ex in result.exercises:
        print("%-4s %-5s %g/%g  %s" % (ex.id, "PASS" if ex.passed else "FAIL", ex.score, ex.max_score, ex.title))
        if not ex.passed:
            for line in clean(ex.feedback).splitlines():
                print("       " + line)
    print("score: %g/%g" % (result.score, result.max_score))
    return EXIT_OK if all(e.passed for e in result.exercises) else EXIT_NOT_GRADABLE


def _same_lab(lab, journal, results_dir):
    """A results folder holds one lab: grading another into it would mix two cohorts' grades."""
    from .rejudge import check_same_lab, check_same_points, check_same_variant, folder_lab, folder_lab_dir, \
        recorded_variant

    results = journal.load().values()
    recorded = folder_lab(journal, results, results_dir)
    check_same_lab(lab, recorded, results_dir,
                   where=folder_lab_dir(journal, results, results_dir, recorded) if recorded else None)
    check_same_variant(lab, recorded_variant(journal, results), results_dir)
    check_same_points(lab, results_dir)


def cmd_report(args):
    """Rewrite the reports, re-judge (--rejudge), or take an overrides file.

    Beside a running grade: a plain report does not wait for the grade's hold on the results folder.  It reads a
    snapshot of the journal (each line is appended whole and fsync'd, a line being written is skipped: that
    student is simply not in the snapshot yet) and writes the reports to a separate folder, --out DIR or by
    default <results>/snapshot/, so nothing the grade writes is touched; the grade rewrites the folder's own
    reports when it ends.  --rejudge and --overrides record journal lines: they take the folder (or --wait)."""
    from .errors import ResultsBusy
    from .journal import Journal
    from .rejudge import choose_lab, rejudge_all

    if args.dry_run and not args.rejudge:
        raise GraderError("--dry-run goes with --rejudge (a plain report only rewrites the reports)")
    if not Path(args.results, "journal.jsonl").is_file():
        raise GraderError("no journal.jsonl in %s: grade first" % args.results)
    writes_journal = (args.rejudge and not args.dry_run) or args.overrides
    if args.out and writes_journal:
        raise GraderError("--out writes reports only: drop it to %s" % ("re-judge" if args.rejudge else
                                                                        "take the overrides"))
    out_dir, busy = args.out, None
    if not out_dir and not args.dry_run:
        try:
            journal = Journal(args.results, wait=args.wait, show_output=args.show_output)
        except ResultsBusy as exc:
            if writes_journal:
                raise
            busy, out_dir = exc, str(Path(args.results) / "snapshot")
    if out_dir or args.dry_run:
        journal = Journal(args.results, hold=False, show_output=args.show_output)
    results = list(journal.load().values())
    lab = choose_lab(args.lab, journal, results, args.results, rejudge=args.rejudge)
    question = _question(args, lab, "rejudge")
    if args.overrides:
        _take_overrides(args, lab, journal, args.results)
        results = list(journal.load().values())
    if args.rejudge:
        results = rejudge_all(lab, journal, results, dry_run=args.dry_run, question=question)
        if args.dry_run:
            return EXIT_OK
        _remember_lab(args.results, lab, "report --rejudge")
    _report_lms_options(args, out_dir)
    if out_dir:
        from .reports import private_dir

        try:
            private_dir(out_dir)
        except OSError as exc:
            raise WriteError("cannot write reports to %s: %s" % (out_dir, exc.strerror))
        if busy is not None:
            print("bpfhol-grade: %s is in use by a running grade; reports of the %d results so far written to %s "
                  "(the grade rewrites the folder's own reports when it ends)" % (args.results, len(results),
                                                                                   out_dir), file=sys.stderr)
        return _finish(results, lab, out_dir, args.quiet, source_dir=args.results)
    return _finish(results, lab, args.results, args.quiet)


def _report_lms_options(args, out_dir):
    """report --canvas-assignment/--lms-points/--lms-roster/...: remembered in the results folder's lms.json."""
    names = ("lms_assignment", "canvas_assignment", "moodle_assignment", "lms_points", "moodle_match", "lms_roster")
    if not any(getattr(args, name, None) is not None for name in names):
        return
    if out_dir:
        raise GraderError("the LMS options change %s/lms.json: rerun without --out once the grade has ended"
                          % args.results)
    entries = ()
    if args.lms_roster:
        from .roster import load_roster

        entries = load_roster(args.lms_roster)
    _remember_lms(args.results, entries, args)


def cmd_labs(args):
    from .labspec import available_labs

    print("\n".join(available_labs()))
    return EXIT_OK


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_INPUT
    handler = {"grade": cmd_grade, "submissions": cmd_submissions, "preflight": cmd_preflight,
               "self-check": cmd_self_check, "report": cmd_report, "labs": cmd_labs}[args.command]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")     # a student's name must not fail on a non-UTF-8 terminal
    try:
        return handler(args)
    except ReportBug as exc:
        print("bpfhol-grade: error: %s" % str(exc).replace("\n", " "), file=sys.stderr)
        return EXIT_REPORT_BUG
    except GraderError as exc:
        msg = str(exc)
        print("bpfhol-grade: error: %s" % msg, file=sys.stderr)
        return EXIT_WRITE if isinstance(exc, WriteError) else EXIT_INPUT
    except KeyboardInterrupt:
        print("bpfhol-grade: interrupted; finished students are in the journal, rerun to resume", file=sys.stderr)
        return 130
