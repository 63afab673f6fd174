"""Cost-quality frontier of a method's operating points: hull, AIQ and cost to a target.

Definitions (shared by every method in one report, so the numbers compare):

* **Hull**: the upper convex hull of the method's (cost, quality) points together with the
  origin (0, 0) — answering nothing costs nothing — made non-decreasing: beyond its best
  point the hull stays flat. Every point on it is reachable by randomly mixing two adjacent
  operating points, which is why interpolating along it is fair.
* **AIQ** (RouterBench's Average Improvement in Quality, here the normalised area): with
  ``c_max`` the report's largest cost, ``AIQ = (1 / c_max) * integral_0^c_max hull(c) dc``,
  in quality units (accuracy); points above ``c_max`` are ignored.
* **Cost to reach q**: the least cost at which the hull reaches quality ``q``, or None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]  # (cost, quality)


def hull(points: Sequence[Point]) -> list[Point]:
    """Vertices of the non-decreasing upper convex hull (with the origin), by cost."""
    pts = sorted({(0.0, 0.0), *((float(c), float(q)) for c, q in points)})
    upper: list[Point] = []
    for p in pts:
        while len(upper) >= 2:
            (x1, y1), (x2, y2) = upper[-2], upper[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                upper.pop()
            else:
                break
        upper.append(p)
    best = int(np.argmax([q for _, q in upper]))
    return upper[: best + 1]


def quality_at(vertices: Sequence[Point], cost: float) -> float:
    """The hull's quality at ``cost`` (flat after the last vertex)."""
    xs = [c for c, _ in vertices]
    ys = [q for _, q in vertices]
    return float(np.interp(cost, xs, ys))


def aiq(points: Sequence[Point], max_cost: float) -> float:
    """Normalised area under the hull on [0, max_cost] (see the module docstring)."""
    if max_cost <= 0:
        return 0.0
    vertices = hull(points)
    xs = [c for c, _ in vertices if c < max_cost] + [max_cost]
    ys = [quality_at(vertices, x) for x in xs]
    x, y = np.array(xs), np.array(ys)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / max_cost)


def cost_to_reach(points: Sequence[Point], quality: float) -> float | None:
    """Least cost on the hull with at least ``quality``; None when never reached."""
    vertices = hull(points)
    if vertices[-1][1] < quality:
        return None
    for (c0, q0), (c1, q1) in zip(vertices, vertices[1:], strict=False):
        if q1 >= quality:
            return c0 + (c1 - c0) * (quality - q0) / (q1 - q0) if q1 > q0 else c0
    return vertices[0][0]
