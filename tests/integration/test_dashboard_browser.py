"""The cohort dashboard opened in a real headless browser (chromium), for a 200-student journal made by the real
grader code (evidence included): the not-gradable students come first, grouped by reason (collapsed, with the
fix), then the histogram, the cohort's figures and the per-question pass rates, which follow the table's filter
(taken from the URL); reasons are words linking to their lists; names and sections come from the roster; hostile
names and scripts stay text; each student's page shows the outputs as bpftrace prints them, without Python
reprs.  The screenshots are checked by their pixels, not only their existence; BPFHOL_SCREENSHOTS=1 also writes
them to docs/ (the README shows them)."""

import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

import replay
from grader import grading
from grader.cohort import cohort_results
from grader.journal import Journal
from grader.labspec import load_lab
from grader.reports import html_report, lms, write_all

pytestmark = pytest.mark.integration
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
EVIL_NAME = '<img src=x onerror="document.title=1">"\'&'
EVIL_SOURCE = 'kprobe:x { } </pre><script>document.title="pwned"</script>'


DUMPS = {}      # url -> its DOM after the script ran: each page is loaded once per module


def dump_dom(url):
    if url not in DUMPS:
        DUMPS[url] = browser("--dump-dom", url=url)
    return DUMPS[url]


def browser(*args, url):
    assert BROWSER, "no chromium: run scripts/setup-host (it installs chromium-headless-shell)"
    proc = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--virtual-time-budget=5000", *args, url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Dom(HTMLParser):
    """Elements in document order: (tag, attrs) and the text inside each id'd element."""

    def __init__(self, text):
        super().__init__()
        self.elements, self.text, self._open = [], {}, []
        self.feed(text)

    VOID = {"meta", "input", "br", "img", "hr", "link"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag not in self.VOID:
            self._open.append((tag, attrs.get("id")))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, name in self._open:
            if name:
                self.text[name] = self.text.get(name, "") + data

    def index(self, id_):
        return next(i for i, (_, a) in enumerate(self.elements) if a.get("id") == id_)

    def all(self, tag, **want):
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in want.items())]


def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB/RGBA PNG (what chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def first_row_with(rows, colour, tolerance=6):
    for y, row in enumerate(rows):
        if any(all(abs(p - q) <= tolerance for p, q in zip(px, colour)) for px in row):
            return y
    return None


NOT_GRADABLE_EXTRA = [      # beside replay.cohort's unreachable VMs: the reasons an instructor meets next
    ("nofiles%d", "no scripts found in /home/vagrant/answers/kprobes (fix: the student saves q1.bt, q2.bt, q3.bt, "
                  "q4.bt there, or the roster names the folder that holds them with answers: or student_user:; "
                  "then rerun)", 3),
    ("nokey%d", "authentication refused for bpfhol-grader@10.1.0.%d:22 (check the user and key in the roster)", 2),
    ("rebuilt%d", "host key changed: VM rebuilt? rerun with --replace-host-keys (10.2.0.%d's key differs)", 1),
]
HIST_OUTPUT = "".join(json.dumps(rec) + "\n" for rec in [
    {"type": "attached_probes", "data": {"probes": 2}},
    {"type": "printf", "data": "tracing opens\n"},
    {"type": "hist", "data": {"@fd": [{"min": 0, "max": 0, "count": 1}, {"min": 1, "max": 1, "count": 0},
                                      {"min": 2, "max": 3, "count": 2}, {"min": 4, "max": 7, "count": 8}]}},
    {"type": "map", "data": {"@by": {"kprobeme,5": 3, "kprobeme,6": 1}}},
    {"type": "stats", "data": {"@s": {"count": 2, "average": 6, "total": 12}}},
])
HIST_STUDENT, COPYCAT = "histo", "copycat"


def copied(source, names):
    """A copy as a student disguises it: comments dropped, maps renamed, lines re-indented."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    for old, new in names:
        source = source.replace(old, new)
    return "\n".join("  " + line.strip() for line in source.splitlines() if line.strip())
SECTIONS = ("L01", "L02")


class SignalledReplay(replay.ReplayBackend):
    """The replay host, its scripts ended as the agent ends them (SIGINT), as recorded in real evidence."""

    def run_agent_job(self, job, uploads, timeout):
        reply = super().run_agent_job(job, uploads, timeout)
        for item in reply["scripts"]:
            item["signals"] = ["SIGINT"]
        return reply


class Identity:
    def __init__(self, student, n):
        self.student = student
        self.identity = {"name": "Name%03d Family" % n, "section": SECTIONS[n % 2], "email": "s%d@uni.example" % n}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    import random

    lab = load_lab("kprobes")
    folder = tmp_path_factory.mktemp("dash") / "results"
    journal = Journal(folder)
    names = replay.cohort(journal, lab, 191)
    for pattern, error, count in NOT_GRADABLE_EXTRA:
        for i in range(count):
            names.append(pattern % i)
            journal.record(grading.not_gradable(names[-1], error % i if "%d" in error else error), lab)
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    outputs = dict(replay.HONEST, q3=lambda truth: HIST_OUTPUT)
    reference = (lab.path / "solutions" / "q3.bt").read_text()
    histo_source = copied(reference, [("@opens", "@n_open"), ("@open[", "@live["), ("@closes", "@n_close")])
    for student, source in ((HIST_STUDENT, histo_source), (COPYCAT, copied(histo_source, [("@live", "@still")]))):
        result = grading.grade(SignalledReplay(outputs, source=source), lab, student, scripts, rng=random.Random(3))
        result.max_score = lab.max_score
        journal.record(result, lab)
    evil = grading.grade(replay.ReplayBackend(replay.HONEST, source=EVIL_SOURCE), lab, EVIL_NAME, scripts,
                         rng=random.Random(7))
    evil.max_score = lab.max_score
    journal.record(evil, lab)
    names += [HIST_STUDENT, COPYCAT, EVIL_NAME]
    lms.remember(folder, [Identity(s, n) for n, s in enumerate(names)])
    results = cohort_results(journal, names)
    write_all(results, lab, folder)
    journal.release()
    return {"folder": folder, "results": results, "lab": lab}


def shown_rows(dom):
    return [r for r in dom.all("tr") if "data-student" in r and "hidden" not in r]


def figures_shown(dom):
    return {td["data-stat"]: td for td in dom.all("td") if "data-stat" in td}


def test_the_dashboard_shows_not_gradable_first_then_histogram_and_rates(dashboard, tmp_path):
    results, lab, index = dashboard["results"], dashboard["lab"], dashboard["folder"] / "index.html"
    assert len(results) == 200
    dom = Dom(dump_dom(index.as_uri()))
    assert dom.all("body", **{"data-ready": "1"}), "the page's script did not run (CSP?)"
    order = [dom.index(i) for i in ("not-gradable", "histogram", "stats", "questions", "similarity", "students")]
    assert order == sorted(order), order
    broken = [r for r in results if r.status == "not_gradable"]
    graded = [r for r in results if r.status == "graded"]
    # grouped by reason, commonest first, each collapsed with its count, the fix and a link to its list
    groups = dom.all("details", **{"class": "ng-group"})
    assert [g["data-group"] for g in groups] == ["unreachable", "no_scripts", "auth", "host_key"]
    assert [int(g["data-count"]) for g in groups] == [12, 3, 2, 1] and sum(int(g["data-count"]) for g in groups) \
        == len(broken) and not any("open" in g for g in groups)
    assert len(dom.all("li")) == len(broken)
    text = dom.text["not-gradable"]
    assert "host unreachable (12) — fix: start the VMs (vagrant up)" in text
    assert "SSH login refused (2) — fix: check the roster's user and key" in text
    assert dom.all("a", href="#filter=notgradable:unreachable")
    # the figures: graded count, median, quartiles, min/max as the instructor's statistics give them
    scores = sorted(r.score for r in graded)
    q1, median, q3 = statistics.quantiles(scores, n=4, method="inclusive")
    want = {"n": len(scores), "min": scores[0], "q1": q1, "median": median, "q3": q3, "max": scores[-1],
            "mean": statistics.mean(scores)}
    rows = dom.text["stats"]
    for key, value in want.items():
        assert "%g" % round(value, 1) in rows, (key, value, rows)
    assert dom.text["scope"] == "all graded students"
    bins = dom.all("rect")
    assert sum(int(b["data-count"]) for b in bins) == len(graded)
    for b in bins:
        assert int(b["data-count"]) == sum(1 for r in graded if "%g" % r.score == b["data-score"])
    for q in dom.all("tr", **{"class": "question"}):
        marks = [x.passed for r in graded for x in r.exercises if x.id == q["data-exercise"]]
        assert float(q["data-rate"]) == round(100.0 * sum(marks) / len(marks), 1)
    # reasons in words, each linking to its list; the codes stay out of the text
    questions = dom.text["questions"].replace("\n", " ")
    assert re.search(r"q1.*answer not in the output \(\d+\)", questions) and "not_found" not in questions
    assert dom.all("a", href="#filter=q1:not_found")
    # names and sections from the roster's identities (lms.json)
    heads = [th.get("data-key") for th in dom.all("th") if th.get("data-key")]
    assert heads[:4] == ["student", "name", "section", "score"]
    assert "Name000 Family" in dom.text["students"] and "L02" in dom.text["students"]
    assert dom.text["shown"] == "200 of 200 shown"
    # the similarity report: the disguised copies of each other (every question) and of the q3 reference, which
    # the q4 reference holds whole (it tracks the same open descriptors, plus their stacks)
    pairs = {(p["data-question"], p["data-first"], p["data-second"]) for p in dom.all("details", **{"class": "pair"})}
    assert pairs == {(q, COPYCAT, HIST_STUDENT) for q in ("q1", "q2", "q3", "q4")} | {
        (q, student, "") for q in ("q3", "q4") for student in (COPYCAT, HIST_STUDENT)}
    side = dom.text["similarity"]
    assert "@still[(int32)retval] = 1;" in side and "@live[(int32)retval] = 1;" in side
    assert "What is left in @open at the end" in side                  # the reference, beside the copy

    # the first screen of an 820 px window shows the grouped box and the histogram below it
    shot = tmp_path / "dashboard.png"
    browser("--window-size=1280,820", "--screenshot=%s" % shot, url=index.as_uri())
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 820)
    warn, bars = first_row_with(rows, (0xff, 0xf3, 0xcd)), first_row_with(rows, (0x44, 0xaa, 0x88))
    assert warn is not None and bars is not None and warn < bars < height, (warn, bars)
    if os.environ.get("BPFHOL_SCREENSHOTS"):
        browser("--window-size=1280,1100", "--screenshot=%s" % (DOCS / "dashboard.png"), url=index.as_uri())


def test_the_table_sorts_and_filters_from_the_url_and_the_figures_follow(dashboard):
    index, results = dashboard["folder"] / "index.html", dashboard["results"]
    graded = [r for r in results if r.status == "graded"]
    dom = Dom(dump_dom(index.as_uri() + "#sort=-score&filter=q3:fail"))
    rows = dom.all("tr", **{"class": "graded"}) + dom.all("tr", **{"class": "notgradable"})
    shown = shown_rows(dom)
    assert shown and all(r["data-q3"] == "fail" for r in shown)
    scores = [float(r["data-score"]) for r in shown]
    assert scores == sorted(scores, reverse=True)
    failed = [r for r in graded if not next(x for x in r.exercises if x.id == "q3").passed]
    assert len(shown) == len(failed) and dom.text["shown"] == "%d of 200 shown" % len(failed)
    assert len(rows) == 200
    # the histogram, the figures and the rates are the filtered students'
    counts = {b["data-score"]: int(b["data-count"]) for b in dom.all("rect")}
    assert sum(counts.values()) == len(failed)
    assert all(n == sum(1 for r in failed if "%g" % r.score == score) for score, n in counts.items())
    assert figures_shown(dom) and dom.text["scope"] == "the %d graded students the filter shows" % len(failed)
    assert "%g" % statistics.median(r.score for r in failed) in dom.text["stats"]
    rates = {q["data-exercise"]: float(q["data-rate"]) for q in dom.all("tr", **{"class": "question"})}
    assert rates["q3"] == 0.0
    q1_passed = sum(1 for r in failed if r.exercises[0].passed)
    assert rates["q1"] == round(100.0 * q1_passed / len(failed), 1) != round(
        100.0 * sum(1 for r in graded if r.exercises[0].passed) / len(graded), 1)

    # a reason's list (its link), within a section: the reasons shown are the filtered students' own
    dom = Dom(dump_dom(index.as_uri() + "#filter=q1:not_found%20l02"))
    want = [r for r in graded if r.exercises[0].reason == "not_found"
            and (results.index(r) % 2 == 1)]
    shown = shown_rows(dom)
    assert len(shown) == len(want) > 0 and all(r["data-section"] == "l02" for r in shown)
    reasons = [s for s in dom.all("span", **{"class": "why"}) if "hidden" not in s]
    q1 = [s for s in reasons if s["data-reason"] == "not_found"]
    assert q1 and int(q1[0]["data-count"]) == len(want)
    assert not [s for s in dom.all("span", **{"class": "why"}) if s["data-reason"] == "not_found"
                and "hidden" in s and s["data-count"] != "0"]

    dom = Dom(dump_dom(index.as_uri() + "#filter=notgradable:auth"))
    assert sorted(r["data-student"] for r in shown_rows(dom)) == ["nokey0", "nokey1"]
    assert dom.all("td", **{"data-stat": "n"})


DOCS = Path(__file__).resolve().parents[2] / "docs"
PYTHON_REPR = re.compile(r"\b(True|False|None)\b|\['|\{'")


def test_hostile_text_stays_text_and_the_student_page_holds_the_evidence(dashboard):
    from grader.journal import slug

    index = dashboard["folder"] / "index.html"
    page = dashboard["folder"] / "students" / slug(EVIL_NAME) / "index.html"
    for url in (index.as_uri(), page.as_uri()):
        out = dump_dom(url)
        dom = Dom(out)
        assert not dom.all("img") and "pwned" not in out.split("<title>")[1].split("</title>")[0]
        assert len(dom.all("script")) == (1 if url == index.as_uri() else 0)
    dom = Dom(dump_dom(page.as_uri()))
    text = "".join(dom.text.values())
    assert "score" in dom.text and "13 / 13" in dom.text["score"]
    for ex in dashboard["lab"].exercises:
        assert "ex-" + ex.id in dom.text
    assert EVIL_SOURCE in dom.text["ex-q1"]                         # the script as run, as text
    assert "kprobeme opens /run/bpfhol-lab/" in dom.text["ex-q1"] or "/run/" in dom.text["ex-q1"]
    assert "workload.args" in dom.text["run"] and "opens" in dom.text["run"]
    assert "truth summary" in text.lower()
    # q4's map of stacks as bpftrace prints it: @opened_by[fd]: then one frame per line
    assert re.search(r"@opened_by\[\d+\]: *\n\s+\S+\+\d+\n", dom.text["ex-q4"])


def test_the_student_page_prints_outputs_as_bpftrace_does_without_python_reprs(dashboard):
    from grader.journal import slug

    page = dashboard["folder"] / "students" / slug(HIST_STUDENT) / "index.html"
    dom = Dom(dump_dom(page.as_uri()))
    shown = dom.text["ex-q3"]
    assert "tracing opens\n@fd:\n[0]                    1 |@@@@@@" in shown
    assert "[4, 8)                 8 |%s|" % ("@" * 52) in shown
    assert "[2, 4)                 2 |%s%s|" % ("@" * 13, " " * 39) in shown
    assert "@by[kprobeme, 5]: 3\n@by[kprobeme, 6]: 1\n@s: count 2, average 6, total 12" in shown
    assert '"type": "hist"' in shown                                   # the raw JSON, folded below
    text = "".join(dom.text.values())
    assert "probes attached: yes, stopped with SIGINT" in dom.text["ex-q1"]
    assert not PYTHON_REPR.search(text), PYTHON_REPR.search(text)
    assert re.search(r"verdict: (passed|[a-z ,']+) \((ok|[a-z_]+)\)", dom.text["ex-q3"])
    if os.environ.get("BPFHOL_SCREENSHOTS"):
        browser("--window-size=1100,2000", "--screenshot=%s" % (DOCS / "dashboard-student.png"), url=page.as_uri())
