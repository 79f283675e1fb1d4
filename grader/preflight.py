"""Preflight: is each lab host fit to grade on?  Reported apart from grades, so an
instructor sees "VM broken" distinct from "student wrong".

Without a lab it proves a kprobe attach (the agent's ``facts``).  With ``--lab L`` it proves the probe kind L's
lab.yaml names (``host_probe``): kprobe through the same facts; any other kind through one short grading job of
L's own workload on the host, whose only script attaches a probe of that kind (a host fine for the uprobes lab is
not BROKEN for missing kprobes, and the job also proves L's workload runs and its barrier releases)."""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from .agent import AGENT_VERSION
from .errors import HostError

# One probe of each kind that attaches on any Debian 12/13 lab host whatever the lab (libc's strtol for uprobes).
PROOF_SCRIPTS = {
    "uprobe": "uprobe:libc:strtol { @calls = count(); }\n",
    "tracepoint": "tracepoint:syscalls:sys_enter_openat { @opens = count(); }\n",
}
PROOF_WINDOW = 2          # seconds: the shortest window a lab may have; the job proves an attach, not the lab


def check_host(entry, make_backend, lab=None):
    """One host's row: facts, and whether the probe kind of ``lab`` (kprobe without one) attaches there."""
    kind = lab.host_probe if lab is not None else "kprobe"
    row = {"student": entry.student, "host": "%s:%s" % (entry.host, entry.port), "ok": False, "problems": [],
           "probe": kind}
    if entry.problem:
        row["problems"].append(entry.problem)
        return row
    backend = make_backend(entry)
    fit = False
    try:
        backend.connect()
        facts = backend.agent_facts()
        fit = facts.get("agent_version") == AGENT_VERSION and bool(facts.get("bpftrace"))
        if kind == "kprobe":
            row["probe_attach"], why = bool(facts.get("kprobe_attach")), facts.get("kprobe_error", "")
        elif fit:                    # a job needs an agent of this grader's version and bpftrace
            row["probe_attach"], why = prove_by_job(backend, lab)
    except HostError as exc:
        row["problems"].append(str(exc))
        return row
    finally:
        backend.close()
    row.update({k: facts.get(k) for k in ("arch", "kernel", "bpftrace", "btf", "kprobe_attach", "workloads")})
    if facts.get("agent_version") != AGENT_VERSION:
        row["problems"].append("agent version %s, grader expects %s: re-run the lab playbook"
                               % (facts.get("agent_version"), AGENT_VERSION))
    if not facts.get("bpftrace"):
        row["problems"].append("bpftrace missing")
    elif "probe_attach" in row and not row["probe_attach"]:
        row["problems"].append("%ss do not attach: %s" % (kind, why or "no reason given"))
    if facts.get("tracefs") is False:
        row["problems"].append("tracefs not mounted at /sys/kernel/tracing: re-run the lab playbook")
    if not facts.get("btf"):
        row["problems"].append("no BTF (/sys/kernel/btf/vmlinux)")
    row["ok"] = not row["problems"]
    return row


def prove_by_job(backend, lab):
    """(attached?, why not) from one short job of ``lab``'s workload whose only script is a probe of the lab's
    kind: it must attach and the workload must be released (the barrier) and log its run."""
    from .grading import build_job, job_timeout
    from .labspec import Exercise
    from .truth import parse_truth

    proof = Exercise(id="preflight", title="preflight", script="preflight.bt", points=0, check="")
    short = dataclasses.replace(lab, exercises=[proof], window=PROOF_WINDOW)
    job = build_job(short, {proof.id: ("upload", proof.script)})
    job["stop_menu_workloads"] = False          # a check: the student's own copy of the workload keeps running
    raw = backend.run_agent_job(job, {proof.script: PROOF_SCRIPTS[lab.host_probe].encode()},
                                timeout=job_timeout(job))
    if not raw.get("ok"):
        return False, "the proof job failed: %s" % str(raw.get("error", "no reason given"))[:300]
    [item] = [s for s in raw.get("scripts") or [] if isinstance(s, dict)][:1] or [{}]
    if not item.get("attached"):
        lines = str(item.get("stderr") or item.get("error") or "").strip().splitlines()
        return False, (lines[-1] if lines else "bpftrace exit %s" % item.get("exit_code"))[:300]
    workload = raw.get("workload") if isinstance(raw.get("workload"), dict) else {}
    truth = parse_truth(workload.get("truth"))
    if not truth.released:
        return False, "the probe attached, but the lab's workload %s was not released (its truth log: %d records; " \
                      "re-run the lab playbook)" % (lab.workload_comm, len(truth.events))
    return True, ""


def preflight(entries, make_backend, parallel=8, lab=None):
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(entries)))) as pool:
        return list(pool.map(lambda e: check_host(e, make_backend, lab), entries))


def render(rows):
    from .reports import clean

    lines = ["%-20s %-22s %-7s %-14s %-8s %-5s %-14s %s" % ("student", "host", "arch", "kernel", "bpftrace", "btf",
                                                            "probe", "status")]
    for r in rows:
        proved = "%s %s" % (r.get("probe", "kprobe"), "yes" if r.get("probe_attach") else "no")
        lines.append("%-20s %-22s %-7s %-14s %-8s %-5s %-14s %s" % (
            clean(r["student"], 20), clean(r["host"], 22), r.get("arch") or "-", clean(r.get("kernel") or "-", 14),
            r.get("bpftrace") or "-", "yes" if r.get("btf") else "-", proved,
            "ok" if r["ok"] else "BROKEN: " + clean("; ".join(r["problems"]), 200)))
    return "\n".join(lines) + "\n"
