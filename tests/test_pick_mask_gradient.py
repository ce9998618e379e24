"""The LoG picker's mask on an ice thickness gradient: contamination masked, the particles on
clear ice kept.

Realistic simulated field (``emotf.sim.realism``: 600 Å ice with a 19 % thickness gradient,
one contamination blob, no carbon), counted at 30 e/px. The previous mask (deviation from one
constant ice level) took the thin side of the gradient for vacuum and masked 16 % of the
clear ice (9 % of the particles on it)."""

from __future__ import annotations

import numpy as np

from emotf.sim.physics import place_particles
from emotf.sim.realism import make_specimen
from emotf.steps.pick_clean import clean_micrograph


def test_a_thickness_gradient_is_not_masked_but_contamination_is() -> None:
    rng = np.random.default_rng(4)
    shape, diameter_px = (1024, 1024), 78.0
    spec = make_specimen(shape, 1.0, 300.0, 600.0, False, 1, rng)
    assert spec.truth["ice_gradient"] > 0.15 and spec.truth["contamination"]
    image = rng.poisson(30.0 * spec.transmission).astype(float)
    candidates = place_particles(shape, diameter_px, 200, rng)
    free = np.array([not spec.occupied[int(y), int(x)] for x, y in candidates])
    centres = candidates[free]
    _cleaned, mask = clean_micrograph(image, diameter_px)
    masked = mask[centres[:, 1].astype(int), centres[:, 0].astype(int)]
    assert masked.mean() < 0.05  # particle positions on clear ice (old mask: 0.09)
    assert mask[~spec.occupied].mean() < 0.03
    x, y, _r = spec.truth["contamination"][0]
    assert mask[spec.occupied].mean() > 0.9 and mask[int(y), int(x)]
