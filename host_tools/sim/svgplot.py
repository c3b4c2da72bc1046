"""A tiny SVG scatter plot with a log y axis: enough for a benchmark's picture, no dependency."""
from __future__ import annotations

import math
from pathlib import Path


def scatter_log(path: Path, title: str, xlabel: str, ylabel: str,
                series: list[tuple[str, str, list[tuple[float, float]]]],
                hline: tuple[float, str] | None = None) -> None:
    """series: (name, colour, [(x, y > 0)]); y on a log scale; hline: (y, label)."""
    w, h, left, right, top, bottom = 900, 480, 80, 20, 40, 50
    pts = [p for _, _, s in series for p in s if p[1] > 0]
    xmax = max(p[0] for p in pts) or 1
    lo = math.floor(math.log10(min(p[1] for p in pts)))
    hi = math.ceil(math.log10(max(p[1] for p in pts)))
    hi = max(hi, lo + 1)

    def sx(x: float) -> float:
        return left + (w - left - right) * x / xmax

    def sy(y: float) -> float:
        return top + (h - top - bottom) * (hi - math.log10(max(y, 10 ** lo))) / (hi - lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="15">{title}</text>']
    for e in range(lo, hi + 1):
        y = sy(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
    for i in range(0, 6):
        x = xmax * i / 5
        out.append(f'<text x="{sx(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">{x:.0f}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text x="16" y="{h / 2}" transform="rotate(-90 16 {h / 2})" text-anchor="middle">{ylabel}</text>')
    if hline:
        y = sy(hline[0])
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="black" '
                   f'stroke-dasharray="6 4"/><text x="{w - right - 4}" y="{y - 5:.1f}" '
                   f'text-anchor="end">{hline[1]}</text>')
    for n, (name, colour, s) in enumerate(series):
        for x, y in s:
            if y > 0:
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.6" fill="{colour}" '
                           'fill-opacity="0.5"/>')
        out.append(f'<rect x="{left + 10}" y="{top + 8 + 18 * n}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + 26}" y="{top + 17 + 18 * n}">{name}</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
