"""Photos as `cliphand predict` reads them: orientation, bit depth, transparency, colour modes, and the
files refused (format, damage, size) with one line naming them, before any output."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from cliphand.images import (
    BACKGROUND,
    IMAGE_FORMATS,
    InputError,
    image_files,
    read_image,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _refused(path: Path, message: str) -> str:
    """The InputError for ``path``, from the check and from the read alike; it is one line."""
    with pytest.raises(InputError, match=message) as check:
        image_files([path])
    with pytest.raises(InputError, match=message):
        read_image(path)
    text = str(check.value)
    assert text.startswith(str(path)) and "\n" not in text, text
    return text


def _close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_allowed_formats_read_as_rgb(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"hand.{fmt.lower()}"
    Image.new("RGB", (12, 8), (200, 100, 50)).save(path, format=fmt)
    assert image_files([path]) == [path]
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (12, 8)
    assert _close(image.getpixel((6, 4)), (200, 100, 50))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone's portrait photo: stored landscape, EXIF Orientation 6 (turn 90° clockwise to view)."""
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(Image.new("RGB", (20, 20), BLUE), (20, 0))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    stored.save(path, exif=exif, quality=95)
    image = read_image(path)
    assert image.size == (20, 40)  # upright: the stored left edge is now the top
    assert _close(image.getpixel((10, 5)), RED) and _close(image.getpixel((10, 35)), BLUE)


@pytest.mark.parametrize("name, mode", [("depth.png", "I;16"), ("depth.tif", "I;16B")])
def test_16_bit_greyscale_is_scaled_not_saturated(tmp_path: Path, name: str, mode: str) -> None:
    path = tmp_path / name
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=">u2")
    Image.frombytes("I;16B", (4, 1), values.tobytes()).save(path)
    with Image.open(path) as stored:
        assert stored.mode == mode
    assert np.asarray(read_image(path))[0, :, 0].tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_over_grey(tmp_path: Path, mode: str) -> None:
    pixels = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [255, 255, 255, 128]]], dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA")
    path = tmp_path / "cutout.png"
    (image if mode == "RGBA" else image.convert("LA")).save(path)
    rgb = read_image(path)
    assert rgb.getpixel((0, 0)) == BACKGROUND  # fully transparent: no hidden colour shows
    opaque = (0, 0, 255) if mode == "RGBA" else (image.convert("L").getpixel((1, 0)),) * 3
    assert rgb.getpixel((1, 0)) == opaque
    assert _close(rgb.getpixel((2, 0)), (191, 191, 191), 1)  # half white, half grey


def test_palette_with_a_transparent_entry(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    image.putpalette([*RED, 0, 255, 0])
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    rgb = read_image(path)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == BACKGROUND and rgb.getpixel((1, 0)) == (0, 255, 0)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(path)  # pure cyan
    assert _close(read_image(path).getpixel((4, 4)), (0, 255, 255))


def test_multi_picture_jpeg_is_read_as_its_first_picture(tmp_path: Path) -> None:
    """Phones store depth or gain maps after the photo; PIL names such a JPEG ``MPO``."""
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (8, 8), RED).save(path, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8), BLUE)])
    assert image_files([path]) == [path] and _close(read_image(path).getpixel((4, 4)), RED)


def test_disallowed_formats_are_refused_without_their_readers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript was run"))
    eps = tmp_path / "hand.jpg"  # the suffix does not matter, the contents do
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n%%EOF\n")
    _refused(eps, "not a readable image .*JPEG, PNG, BMP, WEBP, TIFF")
    gif = tmp_path / "hand.gif"
    Image.new("RGB", (4, 4), RED).save(gif)
    _refused(gif, "not a readable image .*JPEG, PNG, BMP, WEBP, TIFF")


def test_floating_point_pixels_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(path)
    _refused(path, r"mode F\) have no known range")


def test_truncated_jpeg_stops_the_check(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good, cut = tmp_path / "a.jpg", tmp_path / "b.jpg"
    Image.fromarray(noise).save(good)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _refused(cut, "b.jpg: not a readable image .*truncated")
    with pytest.raises(InputError, match="b.jpg"):  # in a folder too: the good file does not hide it
        image_files([tmp_path])


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` px (and holds no pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(100_000, 100_000))
    _refused(path, "bomb.png: not a readable image .*exceeds limit")


def test_damaged_and_missing_files(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    _refused(fake, "fake.png: not a readable image")
    with pytest.raises(InputError, match="nowhere.jpg: no such file"):
        read_image(tmp_path / "nowhere.jpg")
