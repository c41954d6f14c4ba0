"""Report figures drawn with OpenCV + numpy alone (no matplotlib on the device): a confusion matrix and a
contact sheet of images with captions. Pure functions: data in, a BGR uint8 image out.

Text uses OpenCV's Hershey font, which has ASCII glyphs only; other characters are drawn as '?'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.decode import imread

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, MUTED, FAINT = (30, 30, 30), (110, 110, 110), (185, 185, 185)
WHITE = (255, 255, 255)
TRUE_INK, WRONG_INK = (40, 110, 30), (30, 30, 190)  # BGR: green for the true label, red for the wrong one

# matplotlib's "Blues" (light to dark, as BGR), the usual confusion-matrix scale; interpolated to 256 steps.
_BLUES = np.array([(255, 251, 247), (247, 235, 222), (239, 219, 198), (225, 202, 158), (214, 174, 107),
                   (198, 146, 66), (181, 113, 33), (156, 81, 8), (107, 48, 8)], np.float32)
BLUES = np.stack([np.interp(np.linspace(0, len(_BLUES) - 1, 256), np.arange(len(_BLUES)), _BLUES[:, c])
                  for c in range(3)], axis=1).round().astype(np.uint8)


def text_width(text: str, scale: float, thickness: int = 1) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def shorten(text: str, width: int, scale: float, thickness: int = 1) -> str:
    """`text`, cut and ended with '..' if needed so it is at most `width` pixels wide."""
    text = text.encode("ascii", "replace").decode()
    if text_width(text, scale, thickness) <= width:
        return text
    while text and text_width(text + "..", scale, thickness) > width:
        text = text[:-1]
    return text.rstrip() + ".."


def put(image: np.ndarray, text: str, x: int, baseline: int, scale: float, colour=INK, thickness: int = 1) -> None:
    cv2.putText(image, text.encode("ascii", "replace").decode(), (x, baseline), FONT, scale, colour, thickness,
                cv2.LINE_AA)


def vertical_text(text: str, length: int, breadth: int, scale: float, colour=INK, centre: bool = False
                  ) -> np.ndarray:
    """A white [length, breadth] strip with `text` reading bottom to top, starting at the bottom (or centred)."""
    strip = np.full((breadth, length, 3), 255, np.uint8)  # drawn horizontally, then turned
    text = shorten(text, length - 8, scale)
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    put(strip, text, (length - w) // 2 if centre else 4, (breadth + h) // 2, scale, colour)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


@dataclass(frozen=True)
class ConfusionStyle:
    label_scale: float = 0.45
    max_label_width: int = 200  # pixels; longer labels are cut and end in ".."


def render_confusion(counts: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: Sequence[str],
                     style: ConfusionStyle = ConfusionStyle()) -> np.ndarray:
    """A confusion matrix: rows are true classes, columns predicted ones; each cell shows its count and
    is shaded by its share of the row (so the diagonal reads as recall). To the right of each row: its
    image count and recall; under the matrix: each column's precision; then a colour bar."""
    counts = np.asarray(counts, np.int64)
    n_rows, n_cols = counts.shape
    cell = 56 if max(n_rows, n_cols) <= 8 else 44 if max(n_rows, n_cols) <= 15 else 30 if n_cols <= 30 else 18
    count_scale = 0.55 if cell >= 44 else 0.38
    scale = style.label_scale
    row_names = [shorten(r, style.max_label_width, scale) for r in rows]
    label_w = max(text_width(r, scale) for r in [*row_names, "precision"]) + 16
    col_label_h = min(max(text_width(c, scale) for c in columns), style.max_label_width) + 12
    title_h = 12 + 22 * len(title)
    row_sums = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    stats = [f"n={int(row_sums[i, 0])}  recall {share[i, i] if i < n_cols else 0.0:.0%}" for i in range(n_rows)]
    stats_w = max(text_width(t, scale) for t in stats) + 24
    bar_w = 70
    top = title_h + 22 + col_label_h  # title, "predicted class", column labels
    left = label_w + 24  # "true class" strip, row labels
    grid_w, grid_h = n_cols * cell, n_rows * cell
    height = top + grid_h + 48
    width = max(left + grid_w + stats_w + bar_w, *(text_width(t, 0.55) + 24 for t in title))
    image = np.full((height, width, 3), 255, np.uint8)

    for i, line in enumerate(title):
        put(image, line, 12, 24 + 22 * i, 0.55 if i == 0 else 0.45, INK if i == 0 else MUTED, 1)
    put(image, "predicted class", left + max(0, (grid_w - text_width("predicted class", scale)) // 2),
        title_h + 14, scale, MUTED)
    image[top:top + grid_h, 2:22] = vertical_text("true class", grid_h, 20, scale, MUTED, centre=True)

    for j, name in enumerate(columns):
        strip = vertical_text(name, col_label_h, cell, scale)
        image[top - col_label_h:top, left + j * cell:left + (j + 1) * cell] = strip
    for i, name in enumerate(row_names):
        y = top + i * cell
        put(image, name, left - 8 - text_width(name, scale), y + (cell + 9) // 2, scale)
        for j in range(n_cols):
            _cell(image, left + j * cell, y, cell, int(counts[i, j]), share[i, j], count_scale)
        put(image, stats[i], left + grid_w + 10, y + (cell + 9) // 2, scale, MUTED)
    cv2.rectangle(image, (left, top), (left + grid_w, top + grid_h), FAINT, 1)
    if cell >= 30:  # narrower columns cannot hold "100%"; the numbers are in the text report and metrics.json
        _precision_row(image, counts, left, top + grid_h, cell, min(n_rows, n_cols), scale)
    _colour_bar(image, left + grid_w + stats_w, top, min(max(grid_h, 120), height - top - 10), scale)
    return image


def _cell(image: np.ndarray, x: int, y: int, size: int, count: int, share: float, scale: float) -> None:
    colour = tuple(int(c) for c in BLUES[round(255 * share)])
    cv2.rectangle(image, (x, y), (x + size - 1, y + size - 1), colour, -1)
    cv2.rectangle(image, (x, y), (x + size, y + size), (235, 235, 235), 1)
    if size < 24 and count == 0:
        return
    text = str(count) if size >= 24 or count < 100 else "99+"
    ink = WHITE if share > 0.55 else (FAINT if count == 0 else INK)
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    put(image, text, x + (size - w) // 2, y + (size + h) // 2, scale, ink)


def _precision_row(image: np.ndarray, counts: np.ndarray, left: int, y: int, cell: int, n: int,
                   scale: float) -> None:
    """Each class column's precision under the matrix (the share of its predictions that were right)."""
    put(image, "precision", left - 8 - text_width("precision", scale), y + 20, scale, MUTED)
    for j in range(n):
        predicted = int(counts[:, j].sum())
        text = f"{counts[j, j] / predicted:.0%}" if predicted else "-"
        small = scale if text_width(text, scale) <= cell - 2 else scale * 0.75
        put(image, text, left + j * cell + (cell - text_width(text, small)) // 2, y + 20, small, MUTED)


def _colour_bar(image: np.ndarray, x: int, top: int, height: int, scale: float) -> None:
    """A vertical Blues scale from 0% (bottom) to 100% (top) of the row, with three ticks."""
    ramp = BLUES[np.linspace(255, 0, height).round().astype(int)]
    image[top:top + height, x:x + 14] = ramp[:, None, :]
    cv2.rectangle(image, (x, top), (x + 14, top + height - 1), FAINT, 1)
    for share in (1.0, 0.5, 0.0):
        y = top + round((1 - share) * (height - 1))
        put(image, f"{share:.0%}", x + 20, min(max(y + 5, top + 10), top + height), scale * 0.9, MUTED)
    put(image, "of row", x - 4, top + height + 18, scale * 0.9, MUTED)


@dataclass(frozen=True)
class SheetItem:
    path: Path
    lines: Sequence[tuple[str, tuple[int, int, int]]]  # caption lines under the thumbnail, with their colours


def render_contact_sheet(items: Sequence[SheetItem], header: str, tile: int = 160, columns: int = 6,
                         read=None) -> np.ndarray:
    """Thumbnails of `items` (each whole image, letterboxed into a tile) in a grid, captions under each.

    `read(path)` returns a BGR image or None; None (or a failed read) draws a grey tile.
    """
    read = read or imread
    scale, line_h, pad = 0.42, 17, 8
    cols = max(1, min(columns, len(items)))
    rows = -(-len(items) // cols) if items else 0
    caption_h = line_h * max((len(item.lines) for item in items), default=0) + 4
    cell_w, cell_h = tile + pad, tile + caption_h + pad
    width = max(pad + cols * cell_w, text_width(header, 0.55) + 2 * pad)
    image = np.full((40 + rows * cell_h + pad, width, 3), 255, np.uint8)
    put(image, header, pad, 26, 0.55)
    for k, item in enumerate(items):
        x, y = pad + (k % cols) * cell_w, 40 + (k // cols) * cell_h
        _thumbnail(image, read(item.path), x, y, tile)
        for i, (text, colour) in enumerate(item.lines):
            put(image, shorten(text, tile, scale), x, y + tile + line_h * (i + 1) - 2, scale, colour)
    return image


def _thumbnail(image: np.ndarray, picture: np.ndarray | None, x: int, y: int, tile: int) -> None:
    image[y:y + tile, x:x + tile] = 235
    if picture is None or picture.size == 0:
        put(image, "unreadable", x + 8, y + tile // 2, 0.45, MUTED)
        return
    h, w = picture.shape[:2]
    f = tile / max(h, w)
    th, tw = max(1, round(h * f)), max(1, round(w * f))
    small = cv2.resize(picture, (tw, th), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    oy, ox = y + (tile - th) // 2, x + (tile - tw) // 2
    image[oy:oy + th, ox:ox + tw] = small


# ColorBrewer's "RdYlGn" (red = 0 to green = 1, as BGR), for accuracies; interpolated to 256 steps.
_RDYLGN = np.array([(38, 0, 165), (39, 48, 215), (67, 109, 244), (97, 174, 253), (139, 224, 254), (191, 255, 255),
                    (139, 239, 217), (106, 217, 166), (99, 189, 102), (80, 152, 26), (55, 104, 0)], np.float32)
RDYLGN = np.stack([np.interp(np.linspace(0, len(_RDYLGN) - 1, 256), np.arange(len(_RDYLGN)), _RDYLGN[:, c])
                   for c in range(3)], axis=1).round().astype(np.uint8)


def render_heatmap(values: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: Sequence[str],
                   cell: tuple[int, int] = (64, 30), scale: float = 0.45) -> np.ndarray:
    """A table of shares in [0, 1] (rows x columns), each cell coloured red (0) to green (1) and holding
    its percentage; `title` lines above it. Pure: values in, BGR image out."""
    values = np.asarray(values, np.float64)
    cell_w, cell_h = cell
    label_w = max(text_width(r, scale) for r in rows) + 16
    title_h = 12 + 22 * len(title)
    top = title_h + 24
    width = max(label_w + cell_w * len(columns) + 12, *(text_width(t, 0.55) + 24 for t in title))
    image = np.full((top + cell_h * len(rows) + 12, width, 3), 255, np.uint8)
    for i, line in enumerate(title):
        put(image, line, 12, 24 + 22 * i, 0.55 if i == 0 else 0.45, INK if i == 0 else MUTED)
    for j, name in enumerate(columns):
        name = shorten(name, cell_w - 4, scale)
        put(image, name, label_w + j * cell_w + (cell_w - text_width(name, scale)) // 2, top - 8, scale, MUTED)
    for i, name in enumerate(rows):
        y = top + i * cell_h
        put(image, name, label_w - 8 - text_width(name, scale), y + (cell_h + 9) // 2, scale)
        for j in range(len(columns)):
            _share_cell(image, label_w + j * cell_w, y, cell_w, cell_h, float(values[i, j]), scale)
    return image


def _share_cell(image: np.ndarray, x: int, y: int, w: int, h: int, share: float, scale: float) -> None:
    colour = tuple(int(c) for c in RDYLGN[round(255 * min(max(share, 0.0), 1.0))])
    cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, -1)
    cv2.rectangle(image, (x, y), (x + w, y + h), WHITE, 1)
    text = f"{share:.0%}"
    ink = WHITE if share < 0.2 or share > 0.85 else INK
    put(image, text, x + (w - text_width(text, scale)) // 2, y + (h + 9) // 2, scale, ink)


def side_by_side(panels: Sequence[np.ndarray], gap: int = 16) -> np.ndarray:
    """Images placed left to right on white, top-aligned."""
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in panels]
    return np.hstack(padded)[:, :-gap]
