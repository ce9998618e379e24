"""Every motion backend records RELION's accumulated motion in pixels next to our Å values."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotf.parsers import relion
from emotf.steps.motioncor import motion_fields

RUN = Path(__file__).parent / "fixtures" / "relion" / "run_motioncorr_own"


def test_motion_fields_pixels_match_relion_and_angstrom_scale() -> None:
    result, general = relion.read_motion_star(RUN / "Movies" / "mov1_fractions.star")
    row = {"pixel_size": 0.8, "dose_per_frame": 1.5, "pre_exposure": 1.0}
    fields = motion_fields(result, row)
    table = relion.read_star(RUN / "corrected_micrographs.star")["micrographs"].iloc[0]
    for part in ("Total", "Early", "Late"):
        px = fields[f"accum_motion_{part.lower()}_px"]
        assert px == pytest.approx(table[f"rlnAccumMotion{part}"], abs=2e-6)
        assert fields[f"motion_{part.lower()}"] == pytest.approx(px * 0.8, abs=1e-4)  # Å
