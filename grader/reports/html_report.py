"""A static HTML summary; every piece of student-controlled text goes through html.escape."""

import html

from . import clean


def e(text, limit=4000):
    return html.escape(clean(text, limit), quote=True)


def render(results, lab):
    rows = []
    for r in results:
        if r.status != "graded":
            rows.append('<tr class="ng"><td>%s</td><td colspan="%d">not gradable: %s</td></tr>'
                        % (e(r.student, 200), len(lab.exercises) + 1, e(r.error, 500)))
            continue
        cells = []
        by_id = {x.id: x for x in r.exercises}
        for ex in lab.exercises:
            x = by_id.get(ex.id)
            if x is None:
                cells.append("<td></td>")
                continue
            cells.append('<td class="%s" title="%s">%s %g/%g<details><summary>why</summary><pre>%s</pre></details></td>'
                         % ("pass" if x.passed else "fail", e(x.reason, 100), "✔" if x.passed else "✘",
                            x.score, x.max_score, e(x.feedback + "\n\n" + x.output_excerpt)))
        rows.append("<tr><td>%s</td><td>%g / %g</td>%s</tr>" % (e(r.student, 200), r.score, lab.max_score,
                                                                 "".join(cells)))
    head = "".join("<th>%s</th>" % e(ex.id + ": " + ex.title, 200) for ex in lab.exercises)
    return """<!doctype html>
<html><head><meta charset="utf-8"><title>bpfhol: %s</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}
.pass{background:#e6ffe6}.fail{background:#ffe6e6}.ng{background:#eee}pre{white-space:pre-wrap;max-width:40em}</style>
</head><body><h1>%s</h1><table><tr><th>student</th><th>score</th>%s</tr>
%s
</table></body></html>
""" % (e(lab.name, 100), e(lab.title or lab.name, 200), head, "\n".join(rows))
