"""``lpo-ci history html``: one self-contained HTML file, charts drawn as SVG by this module.

No CDN, no font, no request of any kind (a Content-Security-Policy forbids
them): the file opens offline, from a CI artifact or GitHub Pages alike. Per
template an accuracy-over-commits chart with the 95% interval as a band,
lines broken where the fingerprint changes (those records are not
comparable), markers where the template text (T), the model (M) or the data,
scorer or spec (D) changed, and a chart of tokens and cost per run. A few
lines of script show the commit, its date and subject under the pointer.
Every text from the history (commit subjects, paths, model names) is escaped.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import LpoError
from . import record as rec
from .series import CHANGE_NAMES, Series
from .show import rows, parse_since, ref_filter

WIDTH, HEIGHT, COST_HEIGHT = 960, 230, 120
LEFT, RIGHT, TOP, BOTTOM = 48, 56, 18, 28
MARK_COLOURS = {"T": "#2563eb", "M": "#ea580c", "D": "#7c3aed"}
POINTS_DRAWN = 150  # above this many records, dots would hide the line: the line alone


@dataclass
class Columns:
    """A series' records as columns: what the charts and the tooltips read, computed once."""

    acc: list[float | None]
    lo: list[float]
    hi: list[float]
    fingerprints: list[str]
    marks: list[str]
    tokens: list[int]
    cost: list[float]
    dates: list[str]

    @classmethod
    def of(cls, lines) -> "Columns":
        columns = cls([], [], [], [], [], [], [], [])
        for r, marks in lines:
            accuracy, interval = r["accuracy"], r["interval"]
            columns.acc.append(accuracy)
            low, high = interval if interval else (accuracy or 0.0, accuracy or 0.0)
            columns.lo.append(low)
            columns.hi.append(high)
            columns.fingerprints.append(r["fingerprint"])
            columns.marks.append(marks)
            columns.tokens.append(r["tokens"] or 0)
            columns.cost.append(r["cost"] or 0.0)
            columns.dates.append(r["commit_date"] or r["run_date"])
        return columns

    def xs(self) -> list[float]:
        count, inner = len(self.acc), WIDTH - LEFT - RIGHT
        if count == 1:
            return [LEFT + inner / 2]
        step = inner / (count - 1)
        return [LEFT + i * step for i in range(count)]

    def runs(self) -> list[list[int]]:
        """Runs of consecutive records with the same fingerprint and a known accuracy."""
        found: list[list[int]] = [[]]
        for index, accuracy in enumerate(self.acc):
            if accuracy is None or (found[-1] and self.fingerprints[found[-1][-1]] != self.fingerprints[index]):
                found.append([])
            if accuracy is not None:
                found[-1].append(index)
        return [run for run in found if run]


@dataclass
class Axis:
    low: float
    high: float
    top: float
    height: float

    def y(self, value: float) -> float:
        return self.top + (self.high - value) / (self.high - self.low) * self.height

    def ys(self, values) -> list[float]:
        top, high, scale = self.top, self.high, self.height / (self.high - self.low)
        return [top + (high - v) * scale for v in values]


def _accuracy_axis(columns: Columns) -> Axis:
    lows = [low for low, a in zip(columns.lo, columns.acc) if a is not None]
    highs = [high for high, a in zip(columns.hi, columns.acc) if a is not None]
    low = math.floor(min(lows, default=0.0) * 10) / 10
    high = math.ceil(max(highs, default=1.0) * 10) / 10
    if high - low < 0.2:
        low, high = max(0.0, high - 0.2), max(high, 0.2)
    return Axis(low, high, TOP, HEIGHT - TOP - BOTTOM)


def _path(xs, ys) -> str:
    return "M" + "L".join(map("%.1f %.1f".__mod__, zip(xs, ys)))


def _frame(axis: Axis, ticks: list[float], label) -> list[str]:
    parts = []
    for value in ticks:
        y = axis.y(value)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label(value)}</text>')
    return parts


def _dates(columns: Columns, xs: list[float], height: float) -> list[str]:
    count = len(xs)
    picks = sorted({round(i * (count - 1) / 5) for i in range(6)}) if count > 1 else [0]
    return [f'<text class="tick" x="{xs[i]:.1f}" y="{height - 8}" text-anchor="middle">'
            f'{html.escape(rec.day(columns.dates[i]))}</text>' for i in picks]


def accuracy_chart(columns: Columns, number: int) -> str:
    xs, axis = columns.xs(), _accuracy_axis(columns)
    step = 0.1 if axis.high - axis.low <= 0.5 else 0.2
    ticks = [round(axis.low + k * step, 2) for k in range(int(round((axis.high - axis.low) / step)) + 1)]
    parts = _frame(axis, ticks, lambda v: f"{v:.0%}")
    for index, marks in enumerate(columns.marks):
        for mark in marks:
            x = xs[index]
            parts.append(f'<line class="mark mark-{mark}" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                         f'y2="{HEIGHT - BOTTOM}" stroke="{MARK_COLOURS[mark]}"/>')
            parts.append(f'<text class="mark-label" x="{x + 2:.1f}" y="{TOP + 9 + 10 * "TMD".index(mark)}" '
                         f'fill="{MARK_COLOURS[mark]}">{mark}</text>')
    for run in columns.runs():
        run_xs = [xs[i] for i in run]
        upper, lower = axis.ys(columns.hi[i] for i in run), axis.ys(columns.lo[i] for i in run)
        centre = axis.ys(columns.acc[i] for i in run)
        if len(run) == 1:  # a lone record: its interval as a bar
            x = run_xs[0]
            parts.append(f'<path class="band" d="M{x - 3:.1f} {upper[0]:.1f}H{x + 3:.1f}V{lower[0]:.1f}'
                         f'H{x - 3:.1f}Z"/>')
        else:
            parts.append(f'<path class="band" d="{_path(run_xs + run_xs[::-1], upper + lower[::-1])}Z"/>')
            parts.append(f'<path class="line" d="{_path(run_xs, centre)}"/>')
        if len(xs) <= POINTS_DRAWN or len(run) == 1:
            parts += [f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>' for x, y in zip(run_xs, centre)]
    parts += _dates(columns, xs, HEIGHT)
    return _svg("accuracy", number, HEIGHT, parts, "accuracy with its 95% interval")


def cost_chart(columns: Columns, number: int) -> str:
    xs = columns.xs()
    axis = Axis(0.0, 1.0, TOP, COST_HEIGHT - TOP - BOTTOM)
    top_tokens, top_cost = max(columns.tokens, default=0) or 1, max(columns.cost, default=0.0) or 1.0
    parts = [f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis.y(v):.1f}" y2="{axis.y(v):.1f}"/>'
             for v in (0.0, 0.5, 1.0)]
    parts.append(f'<text class="tick tokens" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{top_tokens:,}</text>')
    parts.append(f'<text class="tick cost" x="{WIDTH - RIGHT + 6}" y="{TOP + 4}">${top_cost:.4f}</text>')
    for name, values, top in (("tokens", columns.tokens, top_tokens), ("cost", columns.cost, top_cost)):
        ys = axis.ys(v / top for v in values)
        line_xs = xs if len(xs) > 1 else [xs[0], xs[0] + 1]
        parts.append(f'<path class="line {name}" d="{_path(line_xs, ys if len(ys) > 1 else ys * 2)}"/>')
    parts.append(f'<text class="tick tokens" x="{LEFT + 4}" y="{TOP - 4}">tokens per run</text>')
    parts.append(f'<text class="tick cost" x="{WIDTH - RIGHT - 4}" y="{TOP - 4}" text-anchor="end">cost per run</text>')
    parts += _dates(columns, xs, COST_HEIGHT)
    return _svg("cost", number, COST_HEIGHT, parts, "tokens (left scale) and cost (right scale) per run")


def _svg(kind: str, number: int, height: int, parts: list[str], label: str) -> str:
    return (f'<svg class="chart {kind}" data-series="{number}" viewBox="0 0 {WIDTH} {height}" '
            f'role="img" aria-label="{html.escape(label)}">'
            + "".join(parts)
            + f'<line class="cursor" x1="0" x2="0" y1="{TOP}" y2="{height - BOTTOM}" visibility="hidden"/>'
            f'<rect class="hover" x="{LEFT}" y="0" width="{WIDTH - LEFT - RIGHT}" height="{height}"/></svg>')


def mini_sparkline(columns: Columns) -> str:
    """A small inline SVG sparkline for the summary table."""
    known = [v for v in columns.acc if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = max(high - low, 0.05)
    width, height, count = 120, 24, len(columns.acc)
    pieces = []
    for run in columns.runs():
        if len(run) > 1:
            pieces.append(_path([2 + (width - 4) * i / (count - 1) for i in run],
                                [2 + (height - 4) * (high - value) / span for i in run
                                 if (value := columns.acc[i]) is not None]))
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            + "".join(f'<path d="{d}"/>' for d in pieces) + "</svg>")


@dataclass
class Page:
    commits: dict[str, int] = field(default_factory=dict)
    commit_rows: list[list[str]] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    model_keys: dict[tuple, int] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)

    def commit(self, r: dict[str, Any]) -> int:
        key = r["commit"] or ""
        if key not in self.commits:
            self.commits[key] = len(self.commit_rows)
            self.commit_rows.append([rec.short(r["commit"]), rec.day(r["commit_date"] or r["run_date"]),
                                     (r["subject"] or "")[:200]])
        return self.commits[key]

    def model(self, r: dict[str, Any]) -> int:
        key = (r["model"], *r["reported_models"])
        if key not in self.model_keys:
            ids = ", ".join(r["reported_models"])
            name = r["model"] + (f" ({ids})" if ids and ids != r["model"] else "")
            self.model_keys[key] = self.models.setdefault(name, len(self.models))
        return self.model_keys[key]

    def add(self, lines, columns: Columns) -> None:
        counts, commits, models = [], [], []
        commit, model = self.commit, self.model
        for r, _ in lines:
            counts.append(r["n"])
            commits.append(commit(r))
            models.append(model(r))
        self.data.append({"acc": columns.acc, "lo": columns.lo, "hi": columns.hi, "n": counts, "c": commits,
                          "m": models, "k": columns.marks, "tok": columns.tokens, "usd": columns.cost})

    def script_data(self) -> str:
        text = json.dumps({"commits": self.commit_rows, "models": list(self.models), "series": self.data},
                          ensure_ascii=False, separators=(",", ":"))
        return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


STYLE = """
:root{color-scheme:light;--ink:#1f2937;--soft:#6b7280;--line:#0f766e;--band:#99f6e4;--grid:#e5e7eb}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0;background:#f9fafb}
header{padding:20px 28px 8px}h1{font-size:22px;margin:0 0 4px}header p{margin:0;color:var(--soft)}
main{padding:8px 28px 40px;max-width:1040px}table{border-collapse:collapse;background:#fff;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--grid);text-align:left;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{font-weight:600;color:var(--soft);font-size:12px}
section{background:#fff;border:1px solid var(--grid);border-radius:8px;margin:22px 0;padding:14px 16px}
h2{font-size:16px;margin:0 0 2px;word-break:break-all}.meta{color:var(--soft);margin:0 0 8px;font-size:13px}
svg.chart{width:100%;height:auto;display:block}.grid{stroke:var(--grid);stroke-width:1}
.tick{font-size:11px;fill:var(--soft)}.band{fill:var(--band);opacity:.55}.line{fill:none;stroke:var(--line);stroke-width:1.6}
.dot{fill:var(--line)}.mark{stroke-dasharray:3 3;stroke-width:1}.mark-label{font-size:10px;font-weight:700}
.line.tokens{stroke:#2563eb}.line.cost{stroke:#d97706}.tick.tokens{fill:#2563eb}.tick.cost{fill:#d97706}
.cursor{stroke:#111827;stroke-width:1}.hover{fill:transparent;cursor:crosshair}
svg.spark{vertical-align:middle}svg.spark path{fill:none;stroke:var(--line);stroke-width:1.5}
.legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
#tip{position:fixed;pointer-events:none;background:#111827;color:#fff;padding:6px 9px;border-radius:6px;font-size:12px;
max-width:420px;display:none;z-index:2;white-space:pre-line}
footer{color:var(--soft);font-size:12px;padding:0 28px 24px}
"""

SCRIPT = """
(function () {
  var page = JSON.parse(document.getElementById("history-data").textContent);
  var tip = document.getElementById("tip");
  function pct(v) { return v === null ? "-" : (v * 100).toFixed(1) + "%"; }
  function text(s, i) {
    var c = page.commits[s.c[i]];
    return c[0] + "  " + c[1] + "\\n" + c[2] + "\\naccuracy " + pct(s.acc[i]) + "  [" + pct(s.lo[i]) + ", " +
      pct(s.hi[i]) + "]  n=" + s.n[i] + "\\nmodel " + page.models[s.m[i]] + "\\n" + s.tok[i] +
      " tokens, $" + s.usd[i].toFixed(4) + (s.k[i] ? "\\nchanged: " + s.k[i] : "");
  }
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var s = page.series[Number(svg.getAttribute("data-series"))];
    var area = svg.querySelector("rect.hover"), cursor = svg.querySelector("line.cursor");
    var count = s.acc.length;
    area.addEventListener("mousemove", function (event) {
      var box = area.getBoundingClientRect();
      var i = count > 1 ? Math.round((event.clientX - box.left) / box.width * (count - 1)) : 0;
      i = Math.max(0, Math.min(count - 1, i));
      var x = Number(area.getAttribute("x")) + (count > 1 ? i * Number(area.getAttribute("width")) / (count - 1)
                                                         : Number(area.getAttribute("width")) / 2);
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x); cursor.setAttribute("visibility", "visible");
      tip.textContent = text(s, i);
      tip.style.display = "block";
      tip.style.left = Math.min(event.clientX + 14, window.innerWidth - 440) + "px";
      tip.style.top = (event.clientY + 14) + "px";
    });
    area.addEventListener("mouseleave", function () {
      tip.style.display = "none"; cursor.setAttribute("visibility", "hidden");
    });
  });
  document.documentElement.setAttribute("data-charts", String(document.querySelectorAll("svg.chart").length));
})();
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def dashboard(selected: list[Series], *, title: str, last: int | None = None, since: str | None = None,
              ref: str | None = None) -> str:
    """The whole page as a string."""
    by_ref = ref_filter(ref)
    since_prefix = parse_since(since) if since else None

    def keep(r: dict[str, Any]) -> bool:
        return (since_prefix is None or r["run_date"] >= since_prefix) and (by_ref is None or by_ref(r))

    page = Page()
    summary, sections = [], []
    for series in selected:
        lines = rows(series, last, keep if (since_prefix or by_ref) else None)
        if not lines:
            continue
        number = len(page.data)
        columns = Columns.of(lines)
        page.add(lines, columns)
        latest = lines[-1][0]
        anchor = f"t{number}"
        interval = latest["interval"]
        span = f"[{interval[0]:.1%}, {interval[1]:.1%}]" if interval else ""
        accuracy = "-" if latest["accuracy"] is None else f"{latest['accuracy']:.1%}"
        summary.append(f'<tr><td><a href="#{anchor}">{html.escape(series.template)}</a></td>'
                       f'<td>{mini_sparkline(columns)}</td><td class="num">{accuracy} {span}</td>'
                       f'<td class="num">{len(lines)}</td>'
                       f'<td>{html.escape(rec.day(latest["commit_date"] or latest["run_date"]))}</td></tr>')
        former = f" (formerly {html.escape(', '.join(series.paths[1:]))})" if len(series.paths) > 1 else ""
        models = sorted({r["model"] for r, _ in lines})
        sections.append(
            f'<section id="{anchor}"><h2>{html.escape(series.template)}{former}</h2>'
            f'<p class="meta">{html.escape(latest["data"] or "")} · {html.escape(", ".join(models))} · '
            f'{len(lines)} records, last {html.escape(rec.short(latest["commit"]))} · latest {accuracy} {span}</p>'
            f'{accuracy_chart(columns, number)}{cost_chart(columns, number)}</section>')
    legend = "".join(f'<span><i style="background:{MARK_COLOURS[k]}"></i>{k}: {html.escape(v)}</span>'
                     for k, v in CHANGE_NAMES.items())
    body = ("<p>No history records match.</p>" if not sections else
            '<table><thead><tr><th>template</th><th>trend</th><th>latest accuracy (95% interval)</th>'
            '<th>records</th><th>last run</th></tr></thead><tbody>' + "".join(summary) + "</tbody></table>"
            f'<p class="legend">{legend}<span>a break in a line: records that are not comparable</span></p>'
            + "".join(sections))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1><p>accuracy of each prompt template over the evaluated "
            "commits, with its 95% interval; hover a chart for the commit</p></header>"
            f"<main>{body}</main><div id=\"tip\"></div>"
            f"<footer>written by lpo-ci {html.escape(__version__)}</footer>"
            f'<script type="application/json" id="history-data">{page.script_data()}</script>'
            f"<script>{SCRIPT}</script></body></html>\n")


def write_dashboard(out: Path, selected: list[Series], **options) -> Path:
    page = dashboard(selected, **options)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise LpoError(f"cannot write the dashboard: {exc.strerror}", path=exc.filename or out,
                       hint="name a file in a writable folder") from None
    return out
