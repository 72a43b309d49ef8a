"""The literature's distances, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from inspector import metrics


def rng_image(seed: int, shape=(32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_identical_images_have_distance_zero_and_ssim_one():
    a = rng_image(0)
    assert metrics.l2(a, a) == 0.0
    assert metrics.tiled_l2(a, a) == 0.0
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_a_constant_offset_c_gives_l2_equal_to_c():
    a = np.full((16, 16, 3), 0.25)
    b = a + 0.1
    assert metrics.l2(a, b) == pytest.approx(0.1)
    assert metrics.tiled_l2(a, b) == pytest.approx(0.1)


def test_a_pair_differing_in_one_tile_has_tiled_l2_of_that_tile_and_above_l2():
    a = np.zeros((32, 32, 3))
    b = a.copy()
    b[8:16, 16:24, :] = 0.4  # tile (1, 2) of a 4 x 4 grid of 8 x 8 tiles
    tile = 0.4  # every pixel of that tile differs by 0.4: its l2 is 0.4
    whole = np.sqrt(0.4**2 / 16)  # one sixteenth of the pixels differ
    assert metrics.tiled_l2(a, b) == pytest.approx(tile)
    assert metrics.l2(a, b) == pytest.approx(whole)
    assert metrics.tiled_l2(a, b) > metrics.l2(a, b)
    grid = metrics.tile_grid_map(a, b)
    assert grid.worst == (1, 2)
    assert grid.values[0, 0] == 0.0


@pytest.mark.parametrize("fn", [metrics.l2, metrics.tiled_l2, metrics.ssim])
def test_distances_are_symmetric(fn):
    a, b = rng_image(1), rng_image(2)
    assert fn(a, b) == pytest.approx(fn(b, a))


@pytest.mark.parametrize("fn", [metrics.l2, metrics.tiled_l2, metrics.ssim])
def test_uint8_and_float_inputs_agree(fn):
    a8 = np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    b8 = np.random.default_rng(4).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    assert fn(a8, b8) == pytest.approx(fn(a8 / 255.0, b8 / 255.0))


def test_uint8_means_value_over_255():
    a = np.zeros((8, 8, 3), dtype=np.uint8)
    b = np.full((8, 8, 3), 51, dtype=np.uint8)  # 51 / 255 = 0.2
    assert metrics.l2(a, b) == pytest.approx(0.2)


@pytest.mark.parametrize("fn", [metrics.l2, metrics.tiled_l2, metrics.ssim])
def test_mismatched_shapes_raise_and_name_both(fn):
    with pytest.raises(ValueError, match=r"\(16, 16, 3\).*\(8, 8, 3\)"):
        fn(np.zeros((16, 16, 3)), np.zeros((8, 8, 3)))


def test_non_rgb_arrays_are_refused():
    with pytest.raises(ValueError, match="H x W x 3"):
        metrics.l2(np.zeros((8, 8)), np.zeros((8, 8)))


def test_calibrated_l2_on_a_constructed_case():
    gen = np.full((8, 8, 3), 0.5)
    nearest = gen + 0.05  # l2 0.05
    others = [gen + 0.2, gen - 0.3, gen + 0.1]  # l2 0.2, 0.3, 0.1: mean 0.2
    # 0.05 / (0.5 * 0.2) = 0.5
    assert metrics.calibrated_l2(gen, nearest, others) == pytest.approx(0.5)
    assert metrics.calibrated_l2(gen, nearest, others, alpha=1.0) == pytest.approx(0.25)


def test_calibrated_l2_needs_a_crowd():
    a = np.zeros((8, 8, 3))
    with pytest.raises(ValueError):
        metrics.calibrated_l2(a, a, [])


def test_heatmaps_have_the_image_shape_and_range():
    a, b = rng_image(5), rng_image(6)
    diff = metrics.pixel_difference_map(a, b)
    assert diff.shape == (32, 32)
    assert diff.min() >= 0 and diff.max() <= 1
    assert np.allclose(diff, np.abs(a - b).mean(axis=2))
    dis = metrics.ssim_dissimilarity_map(a, a)
    assert dis.shape == (32, 32) and np.allclose(dis, 0, atol=1e-6)


def test_plain_words_for_tiled_l2():
    assert metrics.describe_tiled_l2(0.06) == "tiled l2 0.06: near copy (threshold 0.15)"
    assert metrics.describe_tiled_l2(0.2) == "tiled l2 0.20: not a near copy (threshold 0.15)"
