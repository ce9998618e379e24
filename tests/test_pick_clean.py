"""Micrographs prepared for LoG picking: contamination and carbon masked, particles kept.

Uses one realistic simulated field (carbon edge and contamination forced on)."""

from __future__ import annotations

import numpy as np
import pytest

from emotf.sim.realism import make_specimen
from emotf.steps.pick_clean import clean_micrograph, outside_mask


def test_contamination_and_carbon_are_masked_and_ice_is_not() -> None:
    rng = np.random.default_rng(5)
    shape, pixel = (768, 768), 1.0
    spec = make_specimen(shape, pixel, 300.0, 400.0, True, 1, rng)
    image = rng.poisson(30.0 * spec.transmission).astype(float)  # counts after the ice
    cleaned, mask = clean_micrograph(image, diameter_px=78.0)
    carbon = spec.truth["carbon"]
    (cx, cy), radius = carbon["hole_centre"], carbon["hole_radius"]
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    on_carbon = np.hypot(xx - cx, yy - cy) > radius + 40
    assert mask[on_carbon].mean() > 0.8  # carbon is ~6.5 % darker; the ice gradient ±1.6 %
    for x, y, r in spec.truth["contamination"]:
        if 0 <= x < shape[1] and 0 <= y < shape[0] and r > 150:
            assert mask[int(y), int(x)]
    clear_ice = ~spec.occupied & (np.hypot(xx - cx, yy - cy) < radius - 100)
    assert mask[clear_ice].mean() < 0.1
    # masked area holds noise like the rest, with the same mean
    assert abs(cleaned[mask].mean() - cleaned[~mask].mean()) < 0.02 * cleaned[~mask].mean()


def test_picks_inside_the_mask_are_dropped() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[:, 150:] = True  # x >= 150 masked (numpy rows = y)
    xy = np.array([[10.0, 20.0], [160.0, 20.0], [149.4, 99.0]])
    assert outside_mask(xy, mask).tolist() == [True, False, True]


def test_the_null_twin_keeps_the_spectrum_and_loses_the_shapes() -> None:
    from emotf.steps.pick_clean import null_threshold, surrogate

    rng = np.random.default_rng(2)
    image = rng.normal(10.0, 1.0, (256, 256))
    image[100:120, 100:120] -= 5.0  # one dark blob
    twin = surrogate(image)
    power = np.abs(np.fft.rfft2(image - image.mean()))
    assert np.allclose(np.abs(np.fft.rfft2(twin - twin.mean()))[1:-1, 1:-1], power[1:-1, 1:-1],
                       rtol=1e-6, atol=1e-6)  # fmt: skip
    assert twin.min() > image.min() + 1.0  # the blob's depth is spread over the field
    assert null_threshold([]) == 0.0
    assert null_threshold([0.1] * 19 + [1.0]) == pytest.approx(0.145)  # 95th percentile
