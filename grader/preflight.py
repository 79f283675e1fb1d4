"""Preflight: is each lab host fit to grade on?  Reported apart from grades, so an
instructor sees "VM broken" distinct from "student wrong"."""

from concurrent.futures import ThreadPoolExecutor

from .agent import AGENT_VERSION
from .errors import HostError


def check_host(entry, make_backend):
    row = {"student": entry.student, "host": "%s:%s" % (entry.host, entry.port), "ok": False, "problems": []}
    if entry.problem:
        row["problems"].append(entry.problem)
        return row
    backend = make_backend(entry)
    try:
        backend.connect()
        facts = backend.agent_facts()
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
    if not facts.get("kprobe_attach"):
        row["problems"].append("kprobes do not attach: %s" % facts.get("kprobe_error", ""))
    if facts.get("tracefs") is False:
        row["problems"].append("tracefs not mounted at /sys/kernel/tracing: re-run the lab playbook")
    if not facts.get("btf"):
        row["problems"].append("no BTF (/sys/kernel/btf/vmlinux)")
    row["ok"] = not row["problems"]
    return row


def preflight(entries, make_backend, parallel=8):
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(entries)))) as pool:
        return list(pool.map(lambda e: check_host(e, make_backend), entries))


def render(rows):
    from .reports import clean

    lines = ["%-20s %-22s %-7s %-14s %-8s %-5s %-7s %s" % ("student", "host", "arch", "kernel", "bpftrace", "btf",
                                                           "kprobe", "status")]
    for r in rows:
        lines.append("%-20s %-22s %-7s %-14s %-8s %-5s %-7s %s" % (
            clean(r["student"], 20), clean(r["host"], 22), r.get("arch") or "-", clean(r.get("kernel") or "-", 14),
            r.get("bpftrace") or "-", "yes" if r.get("btf") else "-", "yes" if r.get("kprobe_attach") else "no",
            "ok" if r["ok"] else "BROKEN: " + clean("; ".join(r["problems"]), 200)))
    return "\n".join(lines) + "\n"
