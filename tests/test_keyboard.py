import numpy as np
import pytest

from avfusion.keyboard import (
    BLACK_KEY_LENGTH_MM,
    KEYBOARD_WIDTH_MM,
    WHITE_KEY_WIDTH_MM,
    is_black,
    key_polygon_mm,
    key_x_span_mm,
    keyboard_corners_mm,
    keyboard_geometry,
)


def test_88_keys_52_white_36_black():
    g = keyboard_geometry()
    assert g.left_mm.shape == (88,)
    assert int(g.is_black.sum()) == 36
    assert int((~g.is_black).sum()) == 52


def test_black_keys_are_the_sharps():
    names_black = {1, 3, 6, 8, 10}  # C#, D#, F#, G#, A#
    for p in range(21, 109):
        assert is_black(p) == (p % 12 in names_black)
    assert not is_black(21) and is_black(22) and not is_black(108)  # A0, A#0, C8


def test_white_keys_tile_the_keyboard():
    g = keyboard_geometry()
    white_left = np.sort(g.left_mm[~g.is_black])
    np.testing.assert_allclose(white_left, np.arange(52) * WHITE_KEY_WIDTH_MM)
    np.testing.assert_allclose(g.right_mm[~g.is_black] - g.left_mm[~g.is_black], WHITE_KEY_WIDTH_MM)
    assert key_x_span_mm(21) == (0.0, WHITE_KEY_WIDTH_MM)
    assert key_x_span_mm(108)[1] == pytest.approx(KEYBOARD_WIDTH_MM)


def test_black_keys_sit_between_their_white_neighbours_with_real_widths():
    g = keyboard_geometry()
    widths = g.right_mm[g.is_black] - g.left_mm[g.is_black]
    assert widths.min() > 13.0 and widths.max() < 14.5  # equal key-top layout: 14.1 / 13.43 mm
    for p in range(22, 108):
        if is_black(p):
            lo, hi = key_x_span_mm(p)
            assert key_x_span_mm(p - 1)[0] < lo < key_x_span_mm(p - 1)[1]
            assert key_x_span_mm(p + 1)[0] < hi < key_x_span_mm(p + 1)[1]
    # C# leans left of the C/D gap, D# right of the D/E gap (not centred, as on a real piano)
    c_sharp = np.mean(key_x_span_mm(61))
    assert c_sharp < key_x_span_mm(60)[1]
    assert np.mean(key_x_span_mm(63)) > key_x_span_mm(62)[1]


def test_octave_is_periodic():
    for p in range(21, 97):
        a, b = key_x_span_mm(p), key_x_span_mm(p + 12)
        assert b[0] - a[0] == pytest.approx(7 * WHITE_KEY_WIDTH_MM)


def test_polygons_white_keys_notched_black_keys_short():
    poly_c = key_polygon_mm(60)  # C: notch on the right for C#
    assert len(poly_c) == 6
    poly_d = key_polygon_mm(62)  # D: notches on both sides
    assert len(poly_d) == 8
    poly_cs = key_polygon_mm(61)
    assert poly_cs[:, 1].max() == BLACK_KEY_LENGTH_MM
    assert len(key_polygon_mm(108)) == 4  # C8: a plain rectangle
    corners = keyboard_corners_mm()
    assert corners.shape == (4, 2) and corners[2, 0] == pytest.approx(KEYBOARD_WIDTH_MM)


def test_out_of_range_pitch_is_an_error():
    with pytest.raises(ValueError, match="not a piano key"):
        key_x_span_mm(20)
    with pytest.raises(ValueError):
        key_polygon_mm(109)
