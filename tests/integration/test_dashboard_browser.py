"""The cohort dashboard opened in a real headless browser (chromium), for a 200-student journal made by the real
grader code (evidence included): the not-gradable list comes first, then the histogram and the per-question pass
rates; the table sorts and filters from the URL; hostile names and scripts stay text; each student's page holds
what the verdicts were decided on.  The screenshot is checked by its pixels, not only its existence."""

import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest

import replay
from grader import grading
from grader.cohort import cohort_results
from grader.journal import Journal
from grader.labspec import load_lab
from grader.reports import html_report, write_all

pytestmark = pytest.mark.integration
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
EVIL_NAME = '<img src=x onerror="document.title=1">"\'&'
EVIL_SOURCE = 'kprobe:x { } </pre><script>document.title="pwned"</script>'


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


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    lab = load_lab("kprobes")
    folder = tmp_path_factory.mktemp("dash") / "results"
    journal = Journal(folder)
    names = replay.cohort(journal, lab, 199)
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    import random

    evil = grading.grade(replay.ReplayBackend(replay.HONEST, source=EVIL_SOURCE), lab, EVIL_NAME, scripts,
                         rng=random.Random(7))
    evil.max_score = lab.max_score
    journal.record(evil, lab)
    results = cohort_results(journal, names + [EVIL_NAME])
    write_all(results, lab, folder)
    journal.release()
    return {"folder": folder, "results": results, "lab": lab}


def test_the_dashboard_shows_not_gradable_first_then_histogram_and_rates(dashboard, tmp_path):
    results, lab, index = dashboard["results"], dashboard["lab"], dashboard["folder"] / "index.html"
    assert len(results) == 200
    dom = Dom(browser("--dump-dom", url=index.as_uri()))
    assert dom.all("body", **{"data-ready": "1"}), "the page's script did not run (CSP?)"
    order = [dom.index(i) for i in ("not-gradable", "histogram", "questions", "students")]
    assert order == sorted(order), order
    broken = [r for r in results if r.status == "not_gradable"]
    graded = [r for r in results if r.status == "graded"]
    assert broken and len(dom.all("li")) == len(broken) <= html_report.NG_LISTED
    assert "start the VM (vagrant up)" in dom.text["not-gradable"]
    bins = dom.all("rect")
    assert sum(int(b["data-count"]) for b in bins) == len(graded)
    for b in bins:
        assert int(b["data-count"]) == sum(1 for r in graded if "%g" % r.score == b["data-score"])
    for q in dom.all("tr", **{"class": "question"}):
        marks = [x.passed for r in graded for x in r.exercises if x.id == q["data-exercise"]]
        assert float(q["data-rate"]) == round(100.0 * sum(marks) / len(marks), 1)
    assert re.search(r"q1.*not_found \(\d+\)", dom.text["questions"].replace("\n", " "))
    assert dom.text["shown"] == "200 of 200 shown"

    shot = tmp_path / "dashboard.png"
    browser("--window-size=1280,1400", "--screenshot=%s" % shot, url=index.as_uri())
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 1400)
    warn, bars = first_row_with(rows, (0xff, 0xf3, 0xcd)), first_row_with(rows, (0x44, 0xaa, 0x88))
    assert warn is not None and bars is not None and warn < bars < height, (warn, bars)


def test_the_table_sorts_and_filters_from_the_url(dashboard):
    index = dashboard["folder"] / "index.html"
    dom = Dom(browser("--dump-dom", url=index.as_uri() + "#sort=-score&filter=q3:fail"))
    rows = dom.all("tr", **{"class": "graded"}) + dom.all("tr", **{"class": "notgradable"})
    shown = [r for r in dom.all("tr") if "data-student" in r and "hidden" not in r]
    assert shown and all(r["data-q3"] == "fail" for r in shown)
    scores = [float(r["data-score"]) for r in shown]
    assert scores == sorted(scores, reverse=True)
    expected = sum(1 for r in dashboard["results"] if r.status == "graded"
                   and not next(x for x in r.exercises if x.id == "q3").passed)
    assert len(shown) == expected and dom.text["shown"] == "%d of 200 shown" % expected
    assert len(rows) == 200


def test_hostile_text_stays_text_and_the_student_page_holds_the_evidence(dashboard):
    from grader.journal import slug

    index = dashboard["folder"] / "index.html"
    page = dashboard["folder"] / "students" / slug(EVIL_NAME) / "index.html"
    for url in (index.as_uri(), page.as_uri()):
        out = browser("--dump-dom", url=url)
        dom = Dom(out)
        assert not dom.all("img") and "pwned" not in out.split("<title>")[1].split("</title>")[0]
        assert len(dom.all("script")) == (1 if url == index.as_uri() else 0)
    dom = Dom(browser("--dump-dom", url=page.as_uri()))
    text = "".join(dom.text.values())
    assert "score" in dom.text and "13 / 13" in dom.text["score"]
    for ex in dashboard["lab"].exercises:
        assert "ex-" + ex.id in dom.text
    assert EVIL_SOURCE in dom.text["ex-q1"]                         # the script as run, as text
    assert "kprobeme opens /run/bpfhol-lab/" in dom.text["ex-q1"] or "/run/" in dom.text["ex-q1"]
    assert "workload.args" in dom.text["run"] and "opens" in dom.text["run"]
    assert "truth summary" in text.lower()
