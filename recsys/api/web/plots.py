"""Inline SVG plots for the explorer (no script, no external asset): rates as bars with their intervals."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, LABEL, ROW = 460, 110, 26


def interval_bars(rows: list[dict[str, Any]], metric: str, title: str) -> str:
    """An SVG of ``rows[i][metric]`` (a ``{rate, low, high}``) as horizontal bars with whiskers, labelled by
    ``rows[i]["name"]``; the control's bar is darker. Markup safe to insert as is (names escaped)."""
    top = max([float(r[metric]["high"] or 0.0) for r in rows] + [1e-9]) * 1.1
    span = WIDTH - LABEL - 70
    height = ROW * len(rows) + 24

    def x(v: float) -> float:
        return LABEL + span * v / top

    parts = [f'<svg class="plot" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="0" y="12" class="plot-title">{escape(title)} (95% intervals)</text>']
    for i, r in enumerate(rows):
        y = 20 + i * ROW
        rate = r[metric]
        parts.append(f'<text x="0" y="{y + 15}">{escape(str(r["name"])[:16])}</text>')
        if rate["rate"] is None:
            parts.append(f'<text x="{LABEL}" y="{y + 15}" class="plot-none">no exposures</text>')
            continue
        fill = "#2b59c3" if r.get("control") else "#8aa6e6"
        parts.append(f'<rect x="{LABEL}" y="{y + 4}" width="{x(rate["rate"]) - LABEL:.1f}" height="14" '
                     f'fill="{fill}"><title>{rate["rate"]:.4f}</title></rect>')
        lo, hi, mid = x(rate["low"]), x(rate["high"]), y + 11
        parts.append(f'<path d="M{lo:.1f} {mid}H{hi:.1f}M{lo:.1f} {mid - 5}V{mid + 5}M{hi:.1f} {mid - 5}V{mid + 5}" '
                     f'stroke="#1d2330" stroke-width="1.5" fill="none"/>')
        parts.append(f'<text x="{hi + 6:.1f}" y="{y + 15}" class="plot-value">{100 * rate["rate"]:.2f}%</text>')
    parts.append("</svg>")
    return "".join(parts)
