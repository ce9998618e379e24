"""Picks without a score: RELION's -999 figure of merit and crYOLO's <NA> confidence."""

from __future__ import annotations

from pathlib import Path

from emotf.parsers import cryolo, relion
from emotf.records import Pick

FIX = Path(__file__).parent / "fixtures"


def test_relion_manual_pick_fom_minus_999_is_no_score(tmp_path: Path) -> None:
    picks = relion.read_coordinates_star(FIX / "relion" / "FoilHole_2_manualpick.star")
    assert picks == [
        Pick(1024.0, 768.0, None),
        Pick(310.0, 1502.0, None),
        Pick(2210.0, 404.0, 1.7345),
    ]
    out = tmp_path / "round.star"
    relion.write_coordinates_star(out, picks)
    assert "-999" in out.read_text()  # written back as RELION's "no figure of merit"
    assert relion.read_coordinates_star(out) == picks


def test_cbox_na_confidence_kept_without_threshold() -> None:
    cbox = FIX / "cryolo" / "boxmanager_manual.cbox"
    assert cryolo.read_cbox(cbox) == [
        Pick(492.0, 1060.0, None), Pick(1780.0, 300.0, None), Pick(2380.0, 1480.0, 0.64)
    ]  # fmt: skip
    assert cryolo.read_cbox(cbox, threshold=0.3) == [Pick(2380.0, 1480.0, 0.64)]
