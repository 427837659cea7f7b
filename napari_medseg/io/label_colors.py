"""One colour per label value, shared by the viewer's label layers and DICOM SEG export.

The viewer paints label value ``v`` in :func:`label_rgb` ``(v)`` and a DICOM SEG written by
:mod:`napari_medseg.io.dicom_seg` recommends the same colour for that value's segment
(RecommendedDisplayCIELabValue), so a PACS shows a structure in the colour the annotator saw.

Values 1..12 use a hand-picked set of well-separated colours; larger values step around the hue circle
by the golden angle (so neighbouring values never share a colour) at two brightness levels.
Value 0 (background) has no colour: it is transparent in the viewer and never a segment.
"""

from __future__ import annotations

import colorsys

#: sRGB (0..255) of label values 1, 2, ... 12. The first ones are cool colours, so labels never look like
#: the red-yellow uncertainty heat map drawn over them.
BASE_COLORS: tuple[tuple[int, int, int], ...] = (
    (31, 143, 255),  # blue
    (51, 217, 89),  # green
    (184, 102, 255),  # violet
    (0, 217, 217),  # cyan
    (140, 191, 51),  # olive green
    (89, 89, 242),  # indigo
    (255, 100, 180),  # pink
    (160, 100, 50),  # brown
    (255, 128, 0),  # orange
    (255, 64, 64),  # red
    (255, 200, 0),  # yellow
    (255, 255, 140),  # pale yellow
)
_GOLDEN = 0.618033988749895


def label_rgb(value: int) -> tuple[int, int, int]:
    """sRGB colour (0..255 each) of label ``value`` (>= 1)."""
    value = int(value)
    if value < 1:
        raise ValueError(f"label value {value} has no colour (0 is background)")
    if value <= len(BASE_COLORS):
        return BASE_COLORS[value - 1]
    n = value - len(BASE_COLORS)
    hue = (0.07 + n * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.7, 0.95 if n % 2 else 0.75)
    return round(r * 255), round(g * 255), round(b * 255)


def napari_color_dict(max_value: int = 255) -> dict[int | None, tuple[float, float, float, float]]:
    """``color_dict`` for napari's ``DirectLabelColormap``: values 1..``max_value`` as :func:`label_rgb`
    (RGBA floats), 0 transparent, larger values grey."""
    out: dict[int | None, tuple[float, float, float, float]] = {
        None: (0.6, 0.6, 0.6, 1.0),
        0: (0.0, 0.0, 0.0, 0.0),
    }
    for v in range(1, int(max_value) + 1):
        r, g, b = label_rgb(v)
        out[v] = (r / 255, g / 255, b / 255, 1.0)
    return out
