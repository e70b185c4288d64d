"""Read back the QR codes the appliance draws: the module matrix of segno's inline SVG,
compared with segno's encoding of the expected text (equal matrices decode alike)."""

from __future__ import annotations

import re

import segno

from meshcall import devices


def svg_matrix(svg: str) -> list[list[int]]:
    """The dark modules of segno's inline SVG path: `M x y` / `m dx dy` moves and `h n`
    runs, each row drawn at y + 0.5 (a stroke one module wide)."""
    d = re.search(r' d="([^"]+)"', svg)
    assert d is not None
    size = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))  # type: ignore[union-attr]
    grid = [[0] * size for _ in range(size)]
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?:\s(-?[\d.]+))?", d.group(1)):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            for col in range(int(x), int(x) + int(a)):
                grid[int(y)][col] = 1
            x += int(a)
    return grid


def encoded(data: str) -> list[list[int]]:
    qr = segno.make(data, error=devices.QR_ERROR)
    return [list(map(int, row)) for row in qr.matrix_iter(scale=1, border=devices.QR_BORDER)]
