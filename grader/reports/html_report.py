"""The cohort dashboard: index.html (not-gradable students first, with the fix; the score histogram; each
question's pass rate and commonest failure reasons; a sortable, filterable table) and one page per student
(students/<id>/index.html: each script as run, its raw output and errors, the feedback, the run's parameters and
the truth summary), all from the journal and the evidence.

Self-contained: no CDN, no fetch, a Content-Security-Policy that allows only this page's own inline script (by
its sha256) and styles. Every piece of student- or host-controlled text goes through clean() and html.escape.
The index works without its script (the table is plain HTML); the script adds sorting and the filter, and reads
its state from the URL's #hash (e.g. index.html#sort=score&filter=q3:fail) so a view can be shared.
"""

import base64
import hashlib
import html
import json
from collections import Counter

from . import clean

SHOWN_BYTES = 64 << 10
NG_LISTED = 40              # not-gradable students listed on top; the table's filter shows them all      # of a script's output on a student page (the evidence keeps it all)


def e(text, limit=4000):
    return html.escape(clean(str(text), limit), quote=True)


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1{margin:0 0 .2em}h2{margin:1.4em 0 .5em}
.muted{color:#666}.ng{background:#fff3cd;border:1px solid #e0c36b;padding:.6em 1em;border-radius:4px}
.ng li{margin:.3em 0}.grid{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
#students td{white-space:nowrap}#students td:last-child{white-space:normal}
th[data-key]{cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
.pass{background:#e6ffe6}.fail{background:#ffe6e6}.notgradable td{background:#f3f3f3}
.bar{display:inline-block;height:.8em;background:#4a8;vertical-align:middle}
.barbg{display:inline-block;width:10em;height:.8em;background:#eee;vertical-align:middle}
pre{white-space:pre-wrap;max-width:60em;max-height:24em;overflow:auto;background:#f8f8f8;padding:.5em;border:1px solid #ddd}
svg text{font-size:11px;fill:#333}#filter{width:18em}
"""

SCRIPT = """
(function () {
  var table = document.getElementById('students'), body = table.tBodies[0];
  var input = document.getElementById('filter'), count = document.getElementById('shown');
  var rows = Array.prototype.slice.call(body.rows), sortKey = '', sortDir = 1;
  function state() {
    var out = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var i = kv.indexOf('=');
      if (i > 0) out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }
  function save() {
    var parts = [];
    if (sortKey) parts.push('sort=' + encodeURIComponent((sortDir < 0 ? '-' : '') + sortKey));
    if (input.value) parts.push('filter=' + encodeURIComponent(input.value));
    history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname);
  }
  function matches(row, words) {
    return words.every(function (w) {
      var m = /^(q?\\w+):(pass|fail)$/.exec(w);
      if (m) return row.getAttribute('data-' + m[1]) === m[2];
      if (w === 'notgradable' || w === 'graded') return row.getAttribute('data-status') === w;
      return row.getAttribute('data-student').indexOf(w) >= 0;
    });
  }
  function apply() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    var sorted = rows.slice();
    if (sortKey) sorted.sort(function (a, b) {
      var x = a.getAttribute('data-' + sortKey), y = b.getAttribute('data-' + sortKey);
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (x < y ? -1 : x > y ? 1 : 0);
      return c * sortDir;
    });
    sorted.forEach(function (row) {
      var ok = matches(row, words);
      row.hidden = !ok;
      shown += ok ? 1 : 0;
      body.appendChild(row);
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (th.getAttribute('data-key') === sortKey) th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    });
    count.textContent = shown + ' of ' + rows.length + ' shown';
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var key = th.getAttribute('data-key');
    if (!key) return;
    th.addEventListener('click', function () {
      sortDir = (sortKey === key) ? -sortDir : 1;
      sortKey = key;
      apply(); save();
    });
  });
  input.addEventListener('input', function () { apply(); save(); });
  var s = state();
  if (s.sort) { sortDir = s.sort.charAt(0) === '-' ? -1 : 1; sortKey = s.sort.replace(/^-/, ''); }
  if (s.filter) input.value = s.filter;
  apply();
  document.body.setAttribute('data-ready', '1');
})();
"""


def _csp(script=None):
    src = "'sha256-%s'" % base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() if script else "'none'"
    return "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src %s; base-uri 'none'; " \
           "form-action 'none'" % src


def _page(title, body, script=None):
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"%s\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            "<meta name=\"viewport\" content=\"width=device-width\"><title>%s</title><style>%s</style></head>\n"
            "<body>\n%s\n%s</body></html>\n"
            % (_csp(script), e(title, 200), STYLE, body, "<script>%s</script>\n" % script if script else ""))


def histogram(scores, max_score):
    """An inline SVG bar chart of the graded students' scores (one bar per point up to 30, else 10 bins)."""
    if not scores:
        return '<p class="muted">no graded students yet</p>'
    whole = max_score == int(max_score) and max_score <= 30
    bins = int(max_score) + 1 if whole else 10
    counts = [0] * bins
    for s in scores:
        i = int(round(s)) if whole else min(bins - 1, int(s / max_score * bins)) if max_score else 0
        counts[max(0, min(bins - 1, i))] += 1
    labels = [str(i) for i in range(bins)] if whole else \
        ["%g-%g" % (round(max_score * i / bins, 1), round(max_score * (i + 1) / bins, 1)) for i in range(bins)]
    top, bar_w, height = max(counts), 28, 120
    width = bins * bar_w + 40
    parts = ['<svg id="histogram" role="img" aria-label="score histogram" width="%d" height="%d" '
             'xmlns="http://www.w3.org/2000/svg">' % (width, height + 40)]
    for i, n in enumerate(counts):
        h = round(height * n / top) if top else 0
        x = 30 + i * bar_w
        parts.append('<rect class="bin" data-score="%s" data-count="%d" x="%d" y="%d" width="%d" height="%d" '
                     'fill="#4a8"><title>%s: %d students</title></rect>'
                     % (e(labels[i]), n, x, 10 + height - h, bar_w - 4, h, e(labels[i]), n))
        if n:
            parts.append('<text x="%d" y="%d" text-anchor="middle">%d</text>' % (x + bar_w / 2 - 2, 8 + height - h, n))
        parts.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % (x + bar_w / 2 - 2, height + 24, e(labels[i])))
    parts.append('<text x="0" y="%d">score</text></svg>' % (height + 38))
    return "".join(parts)


def question_rates(results, lab):
    """Per exercise: (exercise, passed, graded, [(reason, count), ...] commonest failures first)."""
    graded = [r for r in results if r.status == "graded"]
    out = []
    for ex in lab.exercises:
        marks = [x for r in graded for x in r.exercises if x.id == ex.id]
        reasons = Counter(x.reason or "?" for x in marks if not x.passed)
        out.append((ex, sum(1 for x in marks if x.passed), len(marks), reasons.most_common(3)))
    return out


def _student_link(slug_of, r):
    return '<a href="students/%s/index.html">%s</a>' % (html.escape(slug_of(r.student), quote=True),
                                                       e(r.student, 200))


def render(results, lab, slug_of=None):
    """index.html for the cohort."""
    from ..journal import slug as default_slug

    slug_of = slug_of or default_slug
    graded = [r for r in results if r.status == "graded"]
    broken = [r for r in results if r.status == "not_gradable"]
    waiting = [r for r in results if r.status == "not_graded"]
    parts = ['<h1>%s</h1>' % e(lab.title or lab.name, 200),
             '<p class="muted" id="counts">lab %s: %d students, %d graded, %d not gradable%s</p>'
             % (e(lab.name, 100), len(results), len(graded), len(broken),
                ", %d not graded yet" % len(waiting) if waiting else "")]
    if broken:
        items = "".join('<li data-student="%s">%s: %s</li>' % (e(r.student.lower(), 200), _student_link(slug_of, r),
                                                              e(r.error, 500)) for r in broken[:NG_LISTED])
        if len(broken) > NG_LISTED:
            items += ('<li class="more">and %d more: filter the table below with <code>notgradable</code></li>'
                      % (len(broken) - NG_LISTED))
        parts.append('<section id="not-gradable" class="ng"><h2>Not gradable (%d): fix these and grade again</h2>'
                     '<p>Each line says what failed and what to fix; <code>bpfhol-grade grade ROSTER</code> retries '
                     'only these students.</p><ul>%s</ul></section>' % (len(broken), items))
    else:
        parts.append('<section id="not-gradable"><h2>Not gradable</h2><p>none</p></section>')

    mean = sum(r.score for r in graded) / len(graded) if graded else 0
    parts.append('<div class="grid"><section id="distribution"><h2>Scores</h2>%s<p class="muted">mean %.1f of %g'
                 '</p></section>' % (histogram([r.score for r in graded], lab.max_score), mean, lab.max_score))
    rows = []
    for ex, passed, n, reasons in question_rates(results, lab):
        rate = 100.0 * passed / n if n else 0
        why = ", ".join("%s (%d)" % (e(reason, 60), count) for reason, count in reasons) or "-"
        rows.append('<tr class="question" data-exercise="%s" data-rate="%.1f"><td>%s</td><td>%s</td>'
                    '<td style="white-space:nowrap"><span class="barbg"><span class="bar" style="width:%.1f%%"></span></span> %.0f%% '
                    '(%d of %d)</td><td>%s</td></tr>'
                    % (e(ex.id, 40), rate, e(ex.id, 40), e(ex.title, 120), rate, rate, passed, n, why))
    parts.append('<section id="questions"><h2>Pass rate per question</h2><table><thead><tr><th>question</th>'
                 '<th>title</th><th>passed</th><th>commonest failures</th></tr></thead><tbody>%s</tbody></table>'
                 '</section></div>' % "".join(rows))

    head = ['<th data-key="student">student</th>', '<th data-key="score">score</th>']
    head += ['<th data-key="%s">%s</th>' % (e(ex.id.lower(), 40), e(ex.id, 40)) for ex in lab.exercises]
    head.append('<th data-key="status">note</th>')
    body = []
    for r in results:
        by_id = {x.id: x for x in r.exercises}
        status = {"graded": "graded", "not_gradable": "notgradable"}.get(r.status, "notgraded")
        attrs = ['data-student="%s"' % e(r.student.lower(), 200), 'data-status="%s"' % status,
                 'data-score="%s"' % ("%g" % r.score if r.status == "graded" else "-1")]
        cells = []
        for ex in lab.exercises:
            x = by_id.get(ex.id)
            mark = "pass" if x and x.passed else "fail" if x else ""
            attrs.append('data-%s="%s"' % (e(ex.id.lower(), 40), mark))
            cells.append('<td class="%s" title="%s">%s</td>' % (
                mark, e(x.reason, 100) if x else "", "%s %g/%g" % ("✔" if x.passed else "✘", x.score, x.max_score)
                if x else "-"))
        score = "%g / %g" % (r.score, lab.max_score) if r.status == "graded" else "-"
        note = "" if r.status == "graded" else e(r.error, 300)
        body.append('<tr class="%s" %s><td>%s</td><td>%s</td>%s<td>%s</td></tr>'
                    % (status, " ".join(attrs), _student_link(slug_of, r), score, "".join(cells), note))
    parts.append('<section id="table"><h2>Students</h2><p><label>filter <input id="filter" type="search" '
                 'placeholder="name, q3:fail, notgradable"></label> <span id="shown" class="muted">%d students</span>'
                 ' <span class="muted">(click a column to sort)</span></p><table id="students"><thead><tr>%s</tr>'
                 '</thead><tbody>%s</tbody></table></section>' % (len(results), "".join(head), "\n".join(body)))
    return _page("bpfhol: %s" % lab.name, "\n".join(parts), SCRIPT)


def _kv(data, limit=40):
    if not isinstance(data, dict) or not data:
        return '<p class="muted">none recorded</p>'
    rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (e(k, 80), e(json.dumps(v, sort_keys=True)
                                                                      if not isinstance(v, str) else v, 600))
                   for k, v in sorted(data.items(), key=lambda kv: str(kv[0]))[:limit])
    return "<table>%s</table>" % rows


def _shown(text):
    text = text if isinstance(text, str) else ""
    cut = len(text.encode("utf-8", "replace")) > SHOWN_BYTES
    text = text.encode("utf-8", "replace")[:SHOWN_BYTES].decode("utf-8", "ignore")
    return e(text, SHOWN_BYTES) + ("\n[... cut here; the evidence file keeps it all]" if cut else "")


def render_student(result, lab, doc=None):
    """students/<id>/index.html: what this student's verdicts were decided on."""
    doc = doc if isinstance(doc, dict) else {}
    reply = doc.get("reply") if isinstance(doc.get("reply"), dict) else {}
    job = doc.get("job") if isinstance(doc.get("job"), dict) else {}
    items = {str(i.get("name")): i for i in reply.get("scripts") or [] if isinstance(i, dict)}
    parts = ['<p><a href="../../index.html">&larr; cohort</a></p><h1>%s</h1>' % e(result.student, 200)]
    if result.status != "graded":
        parts.append('<section id="not-gradable" class="ng"><h2>%s</h2><p>%s</p></section>'
                     % ("Not graded yet" if result.status == "not_graded" else "Not gradable", e(result.error, 800)))
    else:
        parts.append('<p id="score">score <b>%g / %g</b> &middot; lab %s &middot; graded on %s &middot; evidence '
                     '<code>%s</code></p>' % (result.score, lab.max_score, e(lab.name, 100), e(result.host, 200),
                                              e(result.evidence or "none", 100)))
    if result.rejudged:
        prev = result.rejudged.get("previous") or {}
        parts.append('<p class="muted">re-judged; before: %s / %s</p>' % (e(prev.get("score", "?"), 20),
                                                                           e(prev.get("max_score", "?"), 20)))
    titles = {ex.id: ex.title for ex in lab.exercises}
    for x in result.exercises:
        item = items.get(x.id, {})
        parts.append('<section class="exercise" id="ex-%s"><h2>%s: %s &mdash; <span class="%s">%s %g/%g</span></h2>'
                     '<p>verdict: <code>%s</code></p><h3>Feedback</h3><pre>%s</pre>'
                     % (e(x.id, 40), e(x.id, 40), e(titles.get(x.id, x.title), 200), "pass" if x.passed else "fail",
                        "PASS" if x.passed else "FAIL", x.score, x.max_score, e(x.reason, 100), e(x.feedback)))
        if item:
            parts.append('<h3>Script as run</h3><pre class="source">%s</pre><h3>Raw output</h3>'
                         '<pre class="stdout">%s</pre><h3>bpftrace errors and warnings</h3><pre class="stderr">%s</pre>'
                         '<p class="muted">exit %s, attached %s%s</p>'
                         % (_shown(item.get("source")), _shown(item.get("stdout")), _shown(item.get("stderr")),
                            e(item.get("exit_code"), 20), e(item.get("attached"), 10),
                            ", signals %s" % e(item.get("signals"), 100) if item.get("signals") else ""))
        parts.append("</section>")
    run = {k: job.get(k) for k in ("window", "attach_timeout", "grace", "output_cap", "lab") if k in job}
    if isinstance(job.get("workload"), dict):
        run.update({"workload." + str(k): v for k, v in job["workload"].items()})
    parts.append('<section id="run"><h2>The run</h2><h3>Parameters (randomised for this run)</h3>%s'
                 '<h3>Truth summary (what the workload really did)</h3>%s<h3>Host</h3>%s</section>'
                 % (_kv(run), _kv(result.workload), _kv(dict(result.facts, grader=doc.get("grader_version"),
                                                             agent=doc.get("agent_version")))))
    return _page("bpfhol: %s" % clean(result.student, 100), "\n".join(parts))
