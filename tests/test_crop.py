"""Boxes and intrinsics from the command line and from code: bad numbers are one-line errors naming the
option, never an overflow, a NaN in the output or a crop too large to make."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliphand.crop import (
    MAX_BOX_SIDE,
    Box,
    check_bbox,
    check_intrinsics,
    crop_box,
    parse_bbox,
    parse_intrinsics,
)


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("text, message", [
    ("1,2,3", "expected four numbers x,y,w,h"),
    ("1,2,inf,4", "must be finite"),
    ("1,2,3,1e400", "must be finite"),  # overflows to inf
    ("nan,2,3,4", "must be finite"),
    ("1,2,3,nan", "must be finite"),
    ("1,2,0,4", "must be positive"),
    ("1,2,3,-4", "must be positive"),
    ("0,0,20000,10", f"at most {MAX_BOX_SIDE} px"),
])
def test_bad_bbox_option(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_bbox(text)
    assert _one_line(error).startswith("--bbox ")


@pytest.mark.parametrize("bbox, message", [
    ((0, 0, float("inf"), 10), "must be finite"),
    ((float("nan"), 0, 10, 10), "must be finite"),
    ((0, 0, 14_000, 14_000), "at most"),  # would be a decompression bomb when cropped
    ((250, 10, 20, 20), "outside the 200x100 image"),
    ((-30, 10, 20, 20), "outside the 200x100 image"),
])
def test_bad_box_given_to_crop_box(bbox: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        crop_box(200, 100, bbox)
    assert _one_line(error).startswith("bbox ")


def test_good_boxes() -> None:
    assert parse_bbox(" 10, 20.5,40,20") == (10.0, 20.5, 40.0, 20.0)
    assert crop_box(200, 100, (190, 90, 40, 20)) == Box(190, 80, 40)  # reaching past the border
    assert crop_box(200, 100, (0, 0, MAX_BOX_SIDE, 1)).side == MAX_BOX_SIDE
    assert check_bbox(np.array([1, 2, 3, 4])) == (1.0, 2.0, 3.0, 4.0)


def test_largest_crop_is_not_a_decompression_bomb() -> None:
    assert MAX_BOX_SIDE**2 <= Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("text, message", [
    ("500,500,112", "expected four numbers fx,fy,cx,cy"),
    ("nan,500,112,112", "must be finite"),
    ("500,500,112,nan", "must be finite"),
    ("500,inf,112,112", "must be finite"),
    ("0,500,112,112", "focal lengths must be positive"),
    ("500,-500,112,112", "focal lengths must be positive"),
    ("2e6,500,112,112", "at most 1000000 px"),
    ("500,500,-2e6,112", "at most 1000000 px"),
])
def test_bad_intrinsics_option(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_intrinsics(text)
    assert _one_line(error).startswith("--intrinsics ")


def test_good_intrinsics() -> None:
    K = parse_intrinsics("500,510,100.5,-90")
    np.testing.assert_array_equal(K, [[500, 0, 100.5], [0, 510, -90], [0, 0, 1]])
    assert check_intrinsics(K.tolist()).dtype == np.float64


@pytest.mark.parametrize("K, message", [
    (np.eye(2), "expected a 3x3 matrix"),
    ([[500, 0, np.nan], [0, 500, 10], [0, 0, 1]], "must be finite"),
    ([[0, 0, 10], [0, 500, 10], [0, 0, 1]], "must be positive"),
    ([[500, 0, 10], [0, 500, 10], [0, 0, 0]], "last row of K must be 0, 0, 1"),
])
def test_bad_intrinsics_matrix(K: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        check_intrinsics(K)
    assert _one_line(error).startswith("intrinsics")
