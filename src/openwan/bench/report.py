"""Bench reports: JSON (every number and status), CSVs, and a self-contained HTML page (inline CSS and
SVG, thumbnails as base64 JPEG; no network, no JavaScript). All files are written atomically."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint.io import write_text_atomic

if TYPE_CHECKING:
    from .runner import BenchResult

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"]


def to_dict(r: BenchResult) -> dict[str, Any]:
    s = r.suite
    card = r.scorecard
    return {
        "suite": s.name, "description": s.description, "notes": s.notes, "run_reduce": s.run_reduce,
        "scale": s.scale, "models": r.models,
        "dimensions": [{"key": d.key, "label": d.label, "metrics": list(d.metrics), "optional": list(d.optional),
                        "normalise": [d.lo, d.hi], "clip": d.clip, "scale": d.scale, "group": d.group,
                        "source": d.source} for d in s.dimensions],
        "results": {m: {"dimensions": {k: v.to_dict() for k, v in sm.dims.items()},
                        "totals": {k: {"value": t.value, "status": t.status, "used": t.used, "missing": t.missing}
                                   for k, t in sm.totals.items()},
                        "categories": sm.categories} for m, sm in r.summaries.items()},
        "scorecard": {"rows": card.categories, "margin": card.margin, "scores": card.scores,
                      "winners": {c: {"label": w.label, "models": w.models, "best": w.best, "tie": w.tie}
                                  for c, w in card.winners.items()},
                      "averages": card.averages, "missing": card.missing},
        "videos": [{"path": str(v.item.path), "model": v.item.model, "prompt": v.item.prompt,
                    "sample": v.item.sample, "category": v.item.category, "seed": v.item.seed,
                    "metrics": {k: m.to_dict() for k, m in v.metrics.items()},
                    "dimensions": {k: m.to_dict() for k, m in v.dims.items()}} for v in r.videos],
        "input_problems": [p.to_dict() for p in r.problems],
    }


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def summary_rows(r: BenchResult) -> list[list[Any]]:
    """One row per model × dimension, model × total, and model × category (categorised suites)."""
    rows: list[list[Any]] = [["model", "kind", "name", "value", "status", "winner"]]
    for m, sm in r.summaries.items():
        for k, v in sm.dims.items():
            w = r.scorecard.winners.get(k) if not r.suite.categorised else None
            rows.append([m, "dimension", k, v.value, v.status, w.label if w else ""])
        for k, t in sm.totals.items():
            if not r.suite.categorised:
                rows.append([m, "total", k, t.value, t.status, ""])
        if r.suite.categorised:
            for c in r.scorecard.categories:
                rows.append([m, "category", c, r.scorecard.scores[c][m],
                             "ok" if r.scorecard.scores[c][m] is not None else "not run", r.scorecard.winners[c].label])
            rows.append([m, "average", "all categories", r.scorecard.averages[m],
                         "ok" if not r.scorecard.missing.get(m) else
                         f"missing: {', '.join(r.scorecard.missing[m])}", ""])
    return rows


def video_rows(r: BenchResult) -> list[list[Any]]:
    rows: list[list[Any]] = [["model", "video", "prompt", "category", "sample", "seed", "kind", "name", "value",
                              "status"]]
    for v in r.videos:
        head = [v.item.model, str(v.item.path), v.item.prompt, v.item.category, v.item.sample, v.item.seed]
        rows += [head + ["metric", k, m.value, m.status] for k, m in v.metrics.items()]
        rows += [head + ["dimension", k, m.value, m.status] for k, m in v.dims.items()]
    return rows


def _fmt(v: float | None, scale: float) -> str:
    return "—" if v is None else (f"{v:.2f}" if scale > 1 else f"{v:.3f}")


def bar_chart(labels: list[str], models: list[str], values: dict[str, list[float | None]], vmax: float) -> str:
    """Grouped horizontal bars: one group per label, one bar per model; missing values say "not run"."""
    bar, gap, left, width = 12, 10, 230, 420
    h = len(labels) * (len(models) * bar + gap) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{h}" role="img">']
    y = 10
    for i, lab in enumerate(labels):
        out.append(f'<text x="{left - 8}" y="{y + len(models) * bar / 2 + 4}" text-anchor="end" '
                   f'font-size="12">{html.escape(lab)}</text>')
        for j, m in enumerate(models):
            v = values[m][i]
            if v is None:
                out.append(f'<text x="{left + 4}" y="{y + bar - 2}" font-size="10" fill="#888">not run</text>')
            else:
                w = max(0.0, min(1.0, v / vmax)) * width
                out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{COLORS[j % 8]}"/>')
                out.append(f'<text x="{left + w + 4}" y="{y + bar - 3}" font-size="10">{_fmt(v, vmax)}</text>')
            y += bar
        y += gap
    out.append("</svg>")
    return "".join(out)


def radar_chart(labels: list[str], models: list[str], values: dict[str, list[float | None]], vmax: float) -> str:
    """One polygon per model over the axes; a missing value sits at the centre (marked in the table)."""
    size, r0 = 420, 150
    cx = cy = size / 2
    n = max(len(labels), 3)
    pt = lambda i, f: (cx + r0 * f * math.sin(2 * math.pi * i / n), cy - r0 * f * math.cos(2 * math.pi * i / n))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 160}" height="{size}" role="img">']
    for f in (0.25, 0.5, 0.75, 1.0):
        ring = " ".join(f"{x:.1f},{y:.1f}" for x, y in (pt(i, f) for i in range(n)))
        out.append(f'<polygon points="{ring}" fill="none" stroke="#ddd"/>')
    for i, lab in enumerate(labels):
        x, y = pt(i, 1.0)
        lx, ly = pt(i, 1.12)
        out.append(f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        anchor = "middle" if abs(lx - cx) < 10 else ("start" if lx > cx else "end")
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="{anchor}">{html.escape(lab)}</text>')
    for j, m in enumerate(models):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in
                       (pt(i, max(0.0, min(1.0, (v or 0.0) / vmax))) for i, v in enumerate(values[m])))
        out.append(f'<polygon points="{pts}" fill="{COLORS[j % 8]}" fill-opacity="0.15" '
                   f'stroke="{COLORS[j % 8]}" stroke-width="2"/>')
        out.append(f'<rect x="{size + 10}" y="{20 + 18 * j}" width="12" height="12" fill="{COLORS[j % 8]}"/>'
                   f'<text x="{size + 28}" y="{30 + 18 * j}" font-size="12">{html.escape(m)}</text>')
    out.append("</svg>")
    return "".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}th{background:#f3f4f6}
.win{background:#dcfce7;font-weight:600}.nr{color:#888}.strip img{height:72px;margin-right:2px}
.problem{color:#b91c1c}h2{margin-top:28px}"""


def to_html(r: BenchResult) -> str:
    e = html.escape
    s, card, models = r.suite, r.scorecard, r.models
    scale = s.scale
    labels = {d.key: d.label for d in s.dimensions}
    p = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>openwan bench {e(s.name)}</title>"
         f"<style>{CSS}</style></head><body><h1>openwan bench: {e(s.name)}</h1><p>{e(s.description)}</p>"]
    p.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in s.notes) + "</ul>")
    # Scorecard: rows are categories (motion-physics) or dimensions; winners highlighted, ties named.
    p.append(f"<h2>Scorecard</h2><table id='scorecard'><thead><tr><th>{'category' if s.categorised else 'dimension'}"
             "</th>" + "".join(f"<th>{e(m)}</th>" for m in models) + "<th>winner</th></tr></thead><tbody>")
    for c in card.categories:
        w = card.winners[c]
        cells = "".join(f"<td class='{'win' if m in w.models else ('nr' if card.scores[c][m] is None else '')}'>"
                        f"{_fmt(card.scores[c][m], scale)}</td>" for m in models)
        p.append(f"<tr><td>{e(labels.get(c, c))}</td>{cells}<td>{e(w.label)}</td></tr>")
    avg = "".join(f"<td>{_fmt(card.averages[m], scale)}</td>" for m in models)
    p.append(f"<tr><th>average</th>{avg}<td></td></tr></tbody></table>"
             f"<p>Ties: models within {card.margin:g} of the best share the win. "
             f"Runs per prompt reduced by {e(s.run_reduce)}.</p>")
    # Totals and per-dimension status for each model
    if not s.categorised:  # categorised suites' totals are the scorecard averages above
        p.append("<h2>Totals</h2><table><tr><th>model</th><th>score</th><th>value</th><th>status</th></tr>")
        p += [f"<tr><td>{e(m)}</td><td>{e(k)}</td><td>{_fmt(t.value, scale)}</td><td>{e(t.status)}</td></tr>"
              for m in models for k, t in r.summaries[m].totals.items()]
        p.append("</table>")
    p.append("<h2>Dimensions</h2><table><tr><th>dimension</th><th>metrics</th>"
             + "".join(f"<th>{e(m)}</th>" for m in models) + "</tr>")
    for d in s.dimensions:
        dims = [r.summaries[m].dims[d.key] for m in models]
        cells = "".join(f"<td class='{'' if x.ok else 'nr'}'>{_fmt(x.value, scale) if x.ok else e(x.status)}</td>"
                        for x in dims)
        p.append(f"<tr><td>{e(d.label)}</td><td>{e(', '.join(d.metrics + d.optional))}</td>{cells}</tr>")
    p.append("</table>")
    rows = card.categories
    vals = {m: [card.scores[c][m] for c in rows] for m in models}
    names = [labels.get(c, c) for c in rows]
    p.append("<h2>Per-" + ("category" if s.categorised else "dimension") + " scores</h2>"
             + bar_chart(names, models, vals, scale) + radar_chart(names, models, vals, scale))
    if r.problems:
        p.append("<h2>Input problems</h2><table><tr><th>kind</th><th>model</th><th>path</th><th>message</th></tr>")
        p += [f"<tr class='problem'><td>{e(x.kind)}</td><td>{e(x.model)}</td><td>{e(x.path)}</td>"
              f"<td>{e(x.message)}</td></tr>" for x in r.problems]
        p.append("</table>")
    p.append("<h2>Videos</h2><table><tr><th>model</th><th>prompt</th><th>run</th><th>frames</th><th>scores</th></tr>")
    for v in r.videos:
        imgs = "".join(f"<img alt='frame' src='data:image/jpeg;base64,{t}'>" for t in v.thumbnails)
        sc = "<br>".join(f"{e(labels[k])}: {_fmt(d.value, scale) if d.ok else e(d.status)}" for k, d in v.dims.items())
        p.append(f"<tr><td>{e(v.item.model)}</td><td>{e(v.item.prompt)}</td><td>{v.item.sample}</td>"
                 f"<td class='strip'>{imgs}</td><td>{sc}</td></tr>")
    p.append("</table></body></html>")
    return "".join(p)


def write_reports(r: BenchResult, out: str | os.PathLike) -> dict[str, Path]:
    d = Path(out)
    return {
        "json": write_text_atomic(d / "report.json", json.dumps(to_dict(r), indent=2, ensure_ascii=False) + "\n"),
        "csv": write_text_atomic(d / "report.csv", _csv(summary_rows(r))),
        "videos_csv": write_text_atomic(d / "videos.csv", _csv(video_rows(r))),
        "html": write_text_atomic(d / "report.html", to_html(r)),
    }
