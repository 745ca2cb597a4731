"""Inline SVG scatter/line plots: no JavaScript library, no network, one string per plot.

Points carry a <title> (hover tooltip in every browser) and may link to a run page.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass
class Series:
    name: str
    points: list[tuple[float | str, float, str, str | None]] = field(default_factory=list)  # x, y, tooltip, href
    line: bool = False          # connect the mean per x (sweeps)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


def _fmt(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e4 or a < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4g}"


def plot(series: list[Series], xlabel: str, ylabel: str, title: str = "", width: int = 560, height: int = 340,
         front: list[tuple[float, float]] | None = None, plot_id: str = "") -> str:
    pts = [p for s in series for p in s.points if isinstance(p[1], (int, float)) and math.isfinite(p[1])]
    if not pts:
        return ""
    categorical = any(isinstance(p[0], str) for p in pts)
    cats: list[str] = []
    if categorical:
        for p in pts:
            if str(p[0]) not in cats:
                cats.append(str(p[0]))

    def xval(x) -> float:
        return float(cats.index(str(x))) if categorical else float(x)

    xs = [xval(p[0]) for p in pts]
    ys = [float(p[1]) for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if categorical:
        x0, x1 = -0.5, len(cats) - 0.5
    else:
        pad = (x1 - x0) * 0.06 or (abs(x0) * 0.1 or 1.0)
        x0, x1 = x0 - pad, x1 + pad
    pad = (y1 - y0) * 0.08 or (abs(y0) * 0.1 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    ml, mr, mt, mb = 64, 150, 28, 46
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg class="plot" id="{escape(plot_id)}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or ylabel)}">',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
    if title:
        out.append(f'<text x="{ml}" y="16" class="ptitle">{escape(title)}</text>')
    for t in _nice_ticks(y0, y1):
        y = sy(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    xt = [(i, c) for i, c in enumerate(cats)] if categorical else [(t, _fmt(t)) for t in _nice_ticks(x0, x1)]
    for t, lab in xt:
        x = sx(float(t))
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle" class="tick">{escape(str(lab)[:18])}</text>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis">'
               f'{escape(ylabel)}</text>')
    if front and len(front) > 1:
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(xval(x)):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(front))
        out.append(f'<path d="{d}" class="front"><title>Pareto front</title></path>')
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        good = [p for p in s.points if isinstance(p[1], (int, float)) and math.isfinite(p[1])]
        if s.line:
            by_x: dict = {}
            for p in good:
                by_x.setdefault(xval(p[0]), []).append(float(p[1]))
            xs_sorted = sorted(by_x)
            if len(xs_sorted) > 1:
                d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(sum(by_x[x]) / len(by_x[x])):.1f}"
                             for j, x in enumerate(xs_sorted))
                out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5" opacity="0.8"/>')
        for x, y, tip, href in good:
            c = (f'<circle cx="{sx(xval(x)):.1f}" cy="{sy(float(y)):.1f}" r="4.5" fill="{color}" class="pt" '
                 f'data-series="{escape(s.name)}"><title>{escape(tip)}</title></circle>')
            out.append(f'<a href="{escape(href)}">{c}</a>' if href else c)
        ly = mt + 12 + i * 16
        out.append(f'<circle cx="{ml + pw + 14}" cy="{ly - 4}" r="4.5" fill="{color}"/>'
                   f'<text x="{ml + pw + 24}" y="{ly}" class="legend">{escape(s.name[:20])}</text>')
    out.append("</svg>")
    return "".join(out)
