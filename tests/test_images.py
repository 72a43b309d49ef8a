"""Any image a user has becomes the same canonical comparison form."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inspector.images import ImageLoadError, canonical, load_image


def test_canonical_is_a_float_square_in_unit_range(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (60, 30), (255, 0, 0)).save(path)
    out = canonical(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    assert np.allclose(out[..., 0], 1.0) and np.allclose(out[..., 1:], 0.0)


def test_centre_crop_keeps_the_middle(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, 10:30] = 255  # the centred 20 x 20 square is all white
    out = canonical(Image.fromarray(arr), 20)
    assert np.allclose(out, 1.0)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_every_pil_mode_becomes_rgb(mode):
    im = Image.new("RGB", (12, 12), (10, 200, 30)).convert(mode) if mode != "I;16" else Image.new("I;16", (12, 12), 40000)
    out = canonical(im, 8)
    assert out.shape == (8, 8, 3)


def test_transparent_pixels_are_shown_on_white():
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.allclose(canonical(im, 8), 1.0)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)
    shown = load_image(path)
    assert shown.size == (10, 20)
    top = np.asarray(shown)[:5].mean()
    bottom = np.asarray(shown)[-5:].mean()
    assert top > 200 and bottom < 50  # the white half is now on top


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"not an image at all", "not an image"), (b"\x89PNG\r\n\x1a\n\x00\x00", "not an image|damaged")],
)
def test_bad_files_give_a_plain_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason):
        load_image(path)


def test_a_truncated_png_is_reported_as_damaged(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageLoadError, match="damaged|truncated"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path / "dir.png")
