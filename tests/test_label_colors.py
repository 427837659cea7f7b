"""The shared label colours: distinct for every value, background has none."""

from __future__ import annotations

import pytest

from napari_medseg.io.label_colors import label_rgb, napari_color_dict


def test_every_label_value_up_to_255_has_its_own_colour():
    colours = [label_rgb(v) for v in range(1, 256)]
    assert len(set(colours)) == 255
    assert all(0 <= c <= 255 for rgb in colours for c in rgb)


def test_background_has_no_colour_and_is_transparent_in_the_viewer():
    with pytest.raises(ValueError, match="background"):
        label_rgb(0)
    table = napari_color_dict(4)
    assert table[0][3] == 0 and table[3] == tuple(c / 255 for c in label_rgb(3)) + (1.0,)
