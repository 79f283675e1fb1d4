"""The cohort dashboard: index.html (not-gradable students first, grouped by reason with the fix; the score
distribution; each question's pass rate and commonest failure reasons; a sortable, filterable table) and one
page per student (students/<id>/index.html: each script as run, its output as bpftrace prints it, its errors,
the feedback, the run's parameters and the truth summary), all from the journal and the evidence.

Self-contained: no CDN, no fetch, a Content-Security-Policy that allows only this page's own inline script (by
its sha256) and styles. Every piece of student- or host-controlled text goes through clean() and html.escape.
The index works without its script (the table and the cohort's figures are plain HTML); the script adds sorting
and the filter, makes the histogram, the figures and the per-question rates follow the filter, and reads its
state from the URL's #hash (e.g. index.html#sort=score&filter=q3:fail) so a view can be shared and a reason's
link (#filter=q1:close_path) opens its list.  The script is one constant (its hash is in the CSP): the page's
data reaches it through data- attributes only.
"""

import base64
import hashlib
import html
from collections import Counter

from ..checks.reasons import label as reason_label
from ..checks.reasons import not_gradable_group
from . import clean
from .render_output import readable
from .render_output import render as render_bpftrace

SHOWN_BYTES = 64 << 10      # of a script's output on a student page (the evidence keeps it all)
NG_LISTED = 40              # students listed per not-gradable group; the table's filter shows them all
REASONS_SHOWN = 3           # commonest failure reasons shown per question
HIST_HEIGHT = 120


def e(text, limit=4000):
    return html.escape(clean(str(text), limit), quote=True)


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1{margin:0 0 .2em}h2{margin:1.2em 0 .5em}
.muted{color:#666}.ng{background:#fff3cd;border:1px solid #e0c36b;padding:.3em 1em .5em;border-radius:4px}
.ng h2{margin:.4em 0}.ng p{margin:.3em 0}.ng li{margin:.2em 0}.ng details{margin:.25em 0}.ng summary{cursor:pointer}
.ng ul{max-height:14em;overflow:auto;margin:.3em 0}.grid{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
#students td{white-space:nowrap}#students td:last-child{white-space:normal}
th[data-key]{cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
.pass{background:#e6ffe6}.fail{background:#ffe6e6}.notgradable td{background:#f3f3f3}
.bar{display:inline-block;height:.8em;background:#4a8;vertical-align:middle}
.barbg{display:inline-block;width:10em;height:.8em;background:#eee;vertical-align:middle}
.why{display:block}#stats td{text-align:right}
pre{white-space:pre-wrap;max-width:60em;max-height:24em;overflow:auto;background:#f8f8f8;padding:.5em;border:1px solid #ddd}
pre.stdout{white-space:pre;max-width:80em}
.side{display:grid;grid-template-columns:1fr 1fr;gap:1em}.side pre{max-width:none}#similarity summary{cursor:pointer}
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
      var m = /^([\\w-]+):([\\w-]+)$/.exec(w);
      if (m && m[1] === 'notgradable') return row.getAttribute('data-status') === 'notgradable' &&
        row.getAttribute('data-ng') === m[2];
      if (m && row.hasAttribute('data-' + m[1])) {
        if (m[2] === 'pass' || m[2] === 'fail') return row.getAttribute('data-' + m[1]) === m[2];
        return row.getAttribute('data-' + m[1] + '-why') === m[2];
      }
      if (w === 'notgradable' || w === 'graded') return row.getAttribute('data-status') === w;
      return row.getAttribute('data-text').indexOf(w) >= 0;
    });
  }
  function quantile(sorted, p) {
    var pos = (sorted.length - 1) * p, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }
  function fmt(x) { return (Math.round(x * 10) / 10).toString(); }
  function figures(shown, filtered) {
    var graded = shown.filter(function (r) { return r.getAttribute('data-status') === 'graded'; });
    var scores = graded.map(function (r) { return parseFloat(r.getAttribute('data-score')); })
      .sort(function (a, b) { return a - b; });
    var stats = {n: scores.length};
    if (scores.length) {
      stats.mean = scores.reduce(function (a, b) { return a + b; }, 0) / scores.length;
      stats.min = scores[0]; stats.q1 = quantile(scores, 0.25); stats.median = quantile(scores, 0.5);
      stats.q3 = quantile(scores, 0.75); stats.max = scores[scores.length - 1];
    }
    Array.prototype.forEach.call(document.querySelectorAll('#stats [data-stat]'), function (td) {
      var v = stats[td.getAttribute('data-stat')];
      td.textContent = v === undefined ? '-' : td.getAttribute('data-stat') === 'n' ? v : fmt(v);
    });
    document.getElementById('scope').textContent = filtered ? 'the ' + graded.length +
      ' graded students the filter shows' : 'all graded students';
    var svg = document.getElementById('histogram');
    if (svg) {
      var bins = {}, top = 0, height = parseFloat(svg.getAttribute('data-height'));
      graded.forEach(function (r) { var b = r.getAttribute('data-bin'); bins[b] = (bins[b] || 0) + 1; });
      Object.keys(bins).forEach(function (b) { top = Math.max(top, bins[b]); });
      Array.prototype.forEach.call(svg.querySelectorAll('rect.bin'), function (rect) {
        var b = rect.getAttribute('data-bin'), n = bins[b] || 0, h = top ? Math.round(height * n / top) : 0;
        rect.setAttribute('data-count', n); rect.setAttribute('height', h);
        rect.setAttribute('y', 10 + height - h);
        rect.firstChild.textContent = rect.getAttribute('data-score') + ': ' + n + ' students';
        var label = svg.querySelector('text.n[data-bin="' + b + '"]');
        label.textContent = n ? n : ''; label.setAttribute('y', 8 + height - h);
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll('tr.question'), function (q) {
      var id = q.getAttribute('data-key'), passed = 0, marked = 0, why = {};
      graded.forEach(function (r) {
        var mark = r.getAttribute('data-' + id);
        if (!mark) return;
        marked++;
        if (mark === 'pass') passed++;
        else { var w = r.getAttribute('data-' + id + '-why'); why[w] = (why[w] || 0) + 1; }
      });
      var rate = marked ? 100 * passed / marked : 0;
      q.setAttribute('data-rate', rate.toFixed(1));
      q.querySelector('.bar').style.width = rate.toFixed(1) + '%';
      q.querySelector('.ratetext').textContent = Math.round(rate) + '% (' + passed + ' of ' + marked + ')';
      var spans = Array.prototype.slice.call(q.querySelectorAll('.why'));
      spans.sort(function (a, b) {
        return (why[b.getAttribute('data-reason')] || 0) - (why[a.getAttribute('data-reason')] || 0);
      });
      var cell = q.querySelector('td.reasons'), shownReasons = 0;
      spans.forEach(function (s) {
        var n = why[s.getAttribute('data-reason')] || 0;
        s.setAttribute('data-count', n);
        s.querySelector('.n').textContent = n;
        s.hidden = !n || shownReasons >= %(reasons)d;
        if (!s.hidden) shownReasons++;
        cell.appendChild(s);
      });
      q.querySelector('.none').hidden = shownReasons > 0;
    });
  }
  function apply() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = [];
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
      if (ok) shown.push(row);
      body.appendChild(row);
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (th.getAttribute('data-key') === sortKey) th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    });
    count.textContent = shown.length + ' of ' + rows.length + ' shown';
    figures(shown, words.length > 0);
  }
  function load() {
    var s = state();
    sortKey = ''; sortDir = 1;
    if (s.sort) { sortDir = s.sort.charAt(0) === '-' ? -1 : 1; sortKey = s.sort.replace(/^-/, ''); }
    input.value = s.filter || '';
    apply();
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
  window.addEventListener('hashchange', load);
  load();
  document.body.setAttribute('data-ready', '1');
})();
""".replace("%(reasons)d", str(REASONS_SHOWN))


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


def score_bins(max_score):
    """(labels, bin_of(score)): one bin per point up to 30 points, else 10 bins."""
    whole = max_score == int(max_score) and max_score <= 30
    bins = int(max_score) + 1 if whole else 10
    labels = [str(i) for i in range(bins)] if whole else \
        ["%g-%g" % (round(max_score * i / bins, 1), round(max_score * (i + 1) / bins, 1)) for i in range(bins)]

    def bin_of(score):
        i = int(round(score)) if whole else min(bins - 1, int(score / max_score * bins)) if max_score else 0
        return max(0, min(bins - 1, i))
    return labels, bin_of


def histogram(scores, max_score):
    """An inline SVG bar chart of the graded students' scores; the page's script redraws it for the filter."""
    labels, bin_of = score_bins(max_score)
    counts = [0] * len(labels)
    for s in scores:
        counts[bin_of(s)] += 1
    top, bar_w, height = max(counts), 28, HIST_HEIGHT
    width = len(labels) * bar_w + 40
    parts = ['<svg id="histogram" role="img" aria-label="score histogram" width="%d" height="%d" data-height="%d" '
             'xmlns="http://www.w3.org/2000/svg">' % (width, height + 40, height)]
    for i, n in enumerate(counts):
        h = round(height * n / top) if top else 0
        x = 30 + i * bar_w
        parts.append('<rect class="bin" data-bin="%d" data-score="%s" data-count="%d" x="%d" y="%d" width="%d" '
                     'height="%d" fill="#4a8"><title>%s: %d students</title></rect>'
                     % (i, e(labels[i]), n, x, 10 + height - h, bar_w - 4, h, e(labels[i]), n))
        parts.append('<text class="n" data-bin="%d" x="%d" y="%d" text-anchor="middle">%s</text>'
                     % (i, x + bar_w / 2 - 2, 8 + height - h, n or ""))
        parts.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % (x + bar_w / 2 - 2, height + 24, e(labels[i])))
    parts.append('<text x="0" y="%d">score</text></svg>' % (height + 38))
    return "".join(parts)


def quantile(ordered, p):
    """Linear interpolation between the nearest ranks (numpy's default; the page's script computes the same)."""
    pos = (len(ordered) - 1) * p
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def score_figures(scores):
    """{n, mean, min, q1, median, q3, max} of a list of scores (only n when it is empty)."""
    ordered = sorted(scores)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "mean": sum(ordered) / len(ordered), "min": ordered[0],
            "q1": quantile(ordered, 0.25), "median": quantile(ordered, 0.5), "q3": quantile(ordered, 0.75),
            "max": ordered[-1]}


def _figures_table(scores, max_score):
    figures = score_figures(scores)
    names = [("n", "graded"), ("mean", "mean"), ("min", "min"), ("q1", "lower quartile"), ("median", "median"),
             ("q3", "upper quartile"), ("max", "max")]
    cells = "".join('<tr><th>%s</th><td data-stat="%s">%s</td></tr>'
                    % (label, key, "-" if key not in figures else figures[key] if key == "n"
                       else "%g" % round(figures[key], 1)) for key, label in names)
    return '<table id="stats"><tbody>%s</tbody></table><p class="muted">scores out of %g</p>' % (cells, max_score)


def question_rates(results, lab):
    """Per exercise: (exercise, passed, graded, [(reason, count), ...] every failure reason, commonest first)."""
    graded = [r for r in results if r.status == "graded"]
    out = []
    for ex in lab.exercises:
        marks = [x for r in graded for x in r.exercises if x.id == ex.id]
        reasons = Counter(x.reason or "?" for x in marks if not x.passed)
        out.append((ex, sum(1 for x in marks if x.passed), len(marks), reasons.most_common()))
    return out


def _name_link(slug_of, student):
    return '<a href="students/%s/index.html">%s</a>' % (html.escape(slug_of(student), quote=True), e(student, 200))


def _student_link(slug_of, r):
    return _name_link(slug_of, r.student)


def _filter_link(words, text):
    return '<a href="#filter=%s">%s</a>' % (html.escape(words, quote=True), text)


def _not_gradable_section(broken, slug_of):
    """The not-gradable students, one collapsible group per reason: its count, the fix, each student's line."""
    if not broken:
        return '<section id="not-gradable"><h2>Not gradable</h2><p>none</p></section>'
    groups = {}
    for r in broken:
        code, label, fix = not_gradable_group(r.error)
        groups.setdefault(code, (label, fix, []))[2].append(r)
    parts = []
    for code, (label, fix, members) in sorted(groups.items(), key=lambda g: -len(g[1][2])):
        items = "".join('<li data-student="%s">%s: %s</li>' % (e(r.student.lower(), 200), _student_link(slug_of, r),
                                                              e(r.error, 500)) for r in members[:NG_LISTED])
        if len(members) > NG_LISTED:
            items += '<li class="more">and %d more: %s</li>' % (
                len(members) - NG_LISTED, _filter_link("notgradable:" + code, "all of them in the table"))
        parts.append('<details class="ng-group" data-group="%s" data-count="%d"><summary><b>%s</b> '
                     '(<span class="count">%d</span>) &mdash; fix: %s &middot; %s</summary><ul>%s</ul></details>'
                     % (e(code, 40), len(members), e(label, 100), len(members), e(fix, 300),
                        _filter_link("notgradable:" + code, "list"), items))
    return ('<section id="not-gradable" class="ng"><h2>Not gradable (%d): fix these and grade again</h2>'
            '<p>One line per reason (open it for its students); <code>bpfhol-grade grade ROSTER</code> retries only '
            'these students.</p>%s</section>' % (len(broken), "".join(parts)))


def _questions_section(results, lab):
    rows = []
    for ex, passed, n, reasons in question_rates(results, lab):
        rate = 100.0 * passed / n if n else 0
        key = ex.id.lower()
        why = "".join('<span class="why" data-reason="%s" data-count="%d"%s>%s (<span class="n">%d</span>)</span>'
                      % (e(reason, 60), count, "" if i < REASONS_SHOWN else " hidden",
                         _filter_link("%s:%s" % (key, reason), e(reason_label(reason, lab), 80)), count)
                      for i, (reason, count) in enumerate(reasons))
        rows.append('<tr class="question" data-exercise="%s" data-key="%s" data-rate="%.1f"><td>%s</td><td>%s</td>'
                    '<td style="white-space:nowrap"><span class="barbg"><span class="bar" style="width:%.1f%%">'
                    '</span></span> <span class="ratetext">%.0f%% (%d of %d)</span></td><td class="reasons">'
                    '<span class="none"%s>-</span>%s</td></tr>'
                    % (e(ex.id, 40), e(key, 40), rate, e(ex.id, 40), e(ex.title, 120), rate, rate, passed, n,
                       " hidden" if reasons else "", why))
    return ('<section id="questions"><h2>Pass rate per question</h2><table><thead><tr><th>question</th>'
            '<th>title</th><th>passed</th><th>commonest failures</th></tr></thead><tbody>%s</tbody></table>'
            '</section>' % "".join(rows))


def _similarity_section(similar, slug_of):
    """Pairs of scripts over the similarity threshold (grader/similarity.py), each with both scripts side by side."""
    from ..similarity import MAX_PAIRS, THRESHOLD

    if similar is None:
        return ""
    head = ("<section id=\"similarity\"><h2>Similar scripts</h2><p class=\"muted\">Each question's scripts compared "
            "with each other and with the lab's reference (winnowing fingerprints; what the lab's examples hand out "
            "and what most of the cohort writes are left out). Pairs sharing %d%% or more: a reason to read both, "
            "not a verdict.</p>" % round(THRESHOLD * 100))
    if not similar:
        return head + '<p>none</p></section>'
    items = []
    for pair in similar[:MAX_PAIRS]:
        first = _name_link(slug_of, pair.first)
        if pair.against_reference:
            second = "the lab's reference"
            second_title = "the lab's reference (solutions/%s.bt)" % e(pair.question, 40)
        else:
            second = second_title = _name_link(slug_of, pair.second)
        items.append('<details class="pair" data-question="%s" data-score="%.2f" data-first="%s" data-second="%s">'
                     '<summary>%s: %s and %s &mdash; %d%% shared</summary><div class="side"><div><h3>%s</h3>'
                     '<pre class="first">%s</pre></div><div><h3>%s</h3><pre class="second">%s</pre></div></div>'
                     '</details>' % (e(pair.question, 40), pair.score, e(pair.first.lower(), 200),
                                     e(pair.second.lower(), 200), e(pair.question, 40), first, second,
                                     round(pair.score * 100), first, _shown(pair.first_source), second_title,
                                     _shown(pair.second_source)))
    more = '<p class="muted">and %d more pairs</p>' % (len(similar) - MAX_PAIRS) if len(similar) > MAX_PAIRS else ""
    return head + "".join(items) + more + "</section>"


def render(results, lab, slug_of=None, lms_data=None, similar=None):
    """index.html for the cohort (``lms_data``: grader/reports/lms.py's, for the roster's names and sections;
    ``similar``: grader/similarity.py's pairs, None when not computed)."""
    from ..journal import slug as default_slug

    slug_of = slug_of or default_slug
    identities = (lms_data or {}).get("students") or {}
    graded = [r for r in results if r.status == "graded"]
    broken = [r for r in results if r.status == "not_gradable"]
    waiting = [r for r in results if r.status == "not_graded"]
    parts = ['<h1>%s</h1>' % e(lab.title or lab.name, 200),
             '<p class="muted" id="counts">lab %s: %d students, %d graded, %d not gradable%s</p>'
             % (e(lab.name, 100), len(results), len(graded), len(broken),
                ", %d not graded yet" % len(waiting) if waiting else "")]
    parts.append(_not_gradable_section(broken, slug_of))

    scores = [r.score for r in graded]
    parts.append('<div class="grid"><section id="distribution"><h2>Scores</h2><p class="muted">of <span id="scope">'
                 'all graded students</span></p>%s</section><section id="figures"><h2>Figures</h2>%s</section>%s</div>'
                 % (histogram(scores, lab.max_score), _figures_table(scores, lab.max_score),
                    _questions_section(results, lab)))

    parts.append(_similarity_section(similar, slug_of))

    with_name = any(identities.get(r.student, {}).get("name") for r in results)
    with_section = any(identities.get(r.student, {}).get("section") for r in results)
    _, bin_of = score_bins(lab.max_score)
    head = ['<th data-key="student">student</th>']
    head += ['<th data-key="name">name</th>'] if with_name else []
    head += ['<th data-key="section">section</th>'] if with_section else []
    head += ['<th data-key="score">score</th>']
    head += ['<th data-key="%s">%s</th>' % (e(ex.id.lower(), 40), e(ex.id, 40)) for ex in lab.exercises]
    head.append('<th data-key="status">note</th>')
    body = []
    for r in results:
        ident = identities.get(r.student, {})
        name, section = ident.get("name", ""), ident.get("section", "")
        by_id = {x.id: x for x in r.exercises}
        status = {"graded": "graded", "not_gradable": "notgradable"}.get(r.status, "notgraded")
        attrs = ['data-student="%s"' % e(r.student.lower(), 200), 'data-status="%s"' % status,
                 'data-text="%s"' % e(" ".join((r.student, name, section)).lower(), 400),
                 'data-name="%s"' % e(name.lower(), 200), 'data-section="%s"' % e(section.lower(), 100),
                 'data-score="%s"' % ("%g" % r.score if r.status == "graded" else "-1")]
        if r.status == "graded":
            attrs.append('data-bin="%d"' % bin_of(r.score))
        elif r.status == "not_gradable":
            attrs.append('data-ng="%s"' % e(not_gradable_group(r.error)[0], 40))
        cells = []
        for ex in lab.exercises:
            x = by_id.get(ex.id)
            mark = "pass" if x and x.passed else "fail" if x else ""
            attrs.append('data-%s="%s"' % (e(ex.id.lower(), 40), mark))
            if x and not x.passed:
                attrs.append('data-%s-why="%s"' % (e(ex.id.lower(), 40), e(x.reason, 60)))
            cells.append('<td class="%s" title="%s">%s</td>' % (
                mark, e(reason_label(x.reason, lab), 100) if x else "", "%s %g/%g" % ("✔" if x.passed else "✘", x.score,
                                                                                  x.max_score) if x else "-"))
        score = "%g / %g" % (r.score, lab.max_score) if r.status == "graded" else "-"
        note = "" if r.status == "graded" else e(r.error, 300)
        idcells = ("<td>%s</td>" % e(name, 200) if with_name else "") + \
                  ("<td>%s</td>" % e(section, 100) if with_section else "")
        body.append('<tr class="%s" %s><td>%s</td>%s<td>%s</td>%s<td>%s</td></tr>'
                    % (status, " ".join(attrs), _student_link(slug_of, r), idcells, score, "".join(cells), note))
    parts.append('<section id="table"><h2>Students</h2><p><label>filter <input id="filter" type="search" '
                 'placeholder="name, section, q3:fail, q1:close_path, notgradable"></label> <span id="shown" '
                 'class="muted">%d students</span> <span class="muted">(click a column to sort; the scores, figures '
                 'and rates above follow the filter)</span></p><table id="students"><thead><tr>%s</tr>'
                 '</thead><tbody>%s</tbody></table></section>' % (len(results), "".join(head), "\n".join(body)))
    return _page("bpfhol: %s" % lab.name, "\n".join(parts), SCRIPT)


def _kv(data, limit=40):
    if not isinstance(data, dict) or not data:
        return '<p class="muted">none recorded</p>'
    rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (e(k, 80), e(readable(v), 600))
                   for k, v in sorted(data.items(), key=lambda kv: str(kv[0]))[:limit])
    return "<table>%s</table>" % rows


def _shown(text):
    text = text if isinstance(text, str) else ""
    cut = len(text.encode("utf-8", "replace")) > SHOWN_BYTES
    text = text.encode("utf-8", "replace")[:SHOWN_BYTES].decode("utf-8", "ignore")
    return e(text, SHOWN_BYTES) + ("\n[... cut here; the evidence file keeps it all]" if cut else "")


def _run_facts(item):
    """exit code, attached, signals as a sentence (never a Python repr)."""
    signals = item.get("signals") if isinstance(item.get("signals"), list) else []
    words = ["exit code %s" % readable(item.get("exit_code")),
             "probes attached: %s" % readable(bool(item.get("attached")))]
    if signals:
        words.append("stopped with %s" % " then ".join(str(s) for s in signals))
    if item.get("flooded"):
        words.append("stopped for printing too much")
    if item.get("stdout_truncated"):
        words.append("output cut at the cap")
    return ", ".join(words)


def render_student(result, lab, doc=None):
    """students/<id>/index.html: what this student's verdicts were decided on."""
    doc = doc if isinstance(doc, dict) else {}
    reply = doc.get("reply") if isinstance(doc.get("reply"), dict) else {}
    job = doc.get("job") if isinstance(doc.get("job"), dict) else {}
    items = {str(i.get("name")): i for i in reply.get("scripts") or [] if isinstance(i, dict)}
    parts = ['<p><a href="../../index.html">&larr; cohort</a></p><h1>%s</h1>' % e(result.student, 200)]
    if result.status != "graded":
        parts.append('<section id="not-gradable" class="ng"><h2>%s</h2><p>%s</p></section>'
                     % ("Not graded yet" if result.status == "not_graded" else
                        "Not gradable: %s" % e(not_gradable_group(result.error)[1], 100), e(result.error, 800)))
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
                     '<p class="verdict">verdict: %s <span class="muted">(<code>%s</code>)</span></p>'
                     '<h3>Feedback</h3><pre>%s</pre>'
                     % (e(x.id, 40), e(x.id, 40), e(titles.get(x.id, x.title), 200), "pass" if x.passed else "fail",
                        "PASS" if x.passed else "FAIL", x.score, x.max_score, e(reason_label(x.reason, lab), 100),
                        e(x.reason, 100), e(x.feedback)))
        if item:
            stdout = item.get("stdout") if isinstance(item.get("stdout"), str) else ""
            parts.append('<h3>Script as run</h3><pre class="source">%s</pre><h3>Output, as bpftrace prints it</h3>'
                         '<pre class="stdout">%s</pre><details><summary>the raw JSON output (bpftrace -f json)'
                         '</summary><pre class="raw">%s</pre></details><h3>bpftrace errors and warnings</h3>'
                         '<pre class="stderr">%s</pre><p class="muted runfacts">%s</p>'
                         % (_shown(item.get("source")), _shown(render_bpftrace(stdout)), _shown(stdout),
                            _shown(item.get("stderr")), e(_run_facts(item), 300)))
        parts.append("</section>")
    run = {k: job.get(k) for k in ("window", "attach_timeout", "grace", "output_cap", "lab") if k in job}
    if isinstance(job.get("workload"), dict):
        run.update({"workload." + str(k): v for k, v in job["workload"].items()})
    parts.append('<section id="run"><h2>The run</h2><h3>Parameters (randomised for this run)</h3>%s'
                 '<h3>Truth summary (what the workload really did)</h3>%s<h3>Host</h3>%s</section>'
                 % (_kv(run), _kv(result.workload), _kv(dict(result.facts, grader=doc.get("grader_version"),
                                                             agent=doc.get("agent_version")))))
    return _page("bpfhol: %s" % clean(result.student, 100), "\n".join(parts))
