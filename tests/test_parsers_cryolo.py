"""crYOLO outputs: CBOX 1.0 (corners, <NA>, below-threshold boxes), STAR, EMAN, DISTR."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emotf.parsers import cryolo
from emotf.records import ParseError, Pick

OUT = Path(__file__).parent / "fixtures" / "cryolo" / "out"
MIC = "FoilHole_8812_Data_8801_fractions"


def test_cbox_all_boxes_and_centres() -> None:
    picks = cryolo.read_cbox(OUT / "CBOX" / f"{MIC}.cbox")
    assert picks == [  # corner + 176/2; the <NA>-coordinate row is skipped
        Pick(1292.0, 476.0, 0.8731),
        Pick(420.5, 2278.0, 0.6120),
        Pick(2899.0, 1592.0, 0.3000),
        Pick(145.0, 3089.0, 0.1840),
        Pick(3410.0, 158.0, 0.0512),
    ]


def test_cbox_threshold_by_caller() -> None:
    picks = cryolo.read_cbox(OUT / "CBOX" / f"{MIC}.cbox", threshold=0.3)
    assert [p.score for p in picks] == [0.8731, 0.6120, 0.3000]  # ≥ threshold kept
    assert cryolo.read_cbox(OUT / "CBOX" / f"{MIC}.cbox", threshold=0.95) == []


def test_cbox_width_falls_back_to_estimate(tmp_path: Path) -> None:
    cbox = tmp_path / "m.cbox"
    cbox.write_text(
        "data_global\n\n_cbox_format_version 1.0\n\ndata_cryolo\n\nloop_\n"
        "_CoordinateX #1\n_CoordinateY #2\n_Width #3\n_Height #4\n_EstWidth #5\n"
        "_EstHeight #6\n_Confidence #7\n_Extra #8\n"
        "100.0 200.0 <NA> <NA> 150.0 140.0 0.7 x\n"
    )
    assert cryolo.read_cbox(cbox) == [Pick(175.0, 270.0, 0.7)]


def test_empty_outputs_give_no_picks() -> None:
    stem = "FoilHole_8900_Data_8801_fractions"
    assert cryolo.read_cbox(OUT / "CBOX" / f"{stem}.cbox", threshold=0.3) == []
    assert cryolo.read_cryolo_star(OUT / "STAR" / f"{stem}.star") == []
    assert cryolo.read_eman_box(OUT / "EMAN" / f"{stem}.box") == []
    assert cryolo.find_cryolo_picks(OUT, stem, 0.3) == []


def test_cbox_wrong_layout_names_file() -> None:
    with pytest.raises(ParseError, match=r"wrong_block\.cbox: no data_cryolo"):
        cryolo.read_cbox(OUT.parent / "wrong_block.cbox")


def test_star_and_eman_centres_agree_with_cbox() -> None:
    star = cryolo.read_cryolo_star(OUT / "STAR" / f"{MIC}.star")
    assert star == [Pick(1292.0, 476.0), Pick(420.5, 2278.0), Pick(2899.0, 1592.0)]
    eman = cryolo.read_eman_box(OUT / "EMAN" / f"{MIC}.box")
    assert eman == [Pick(1292.0, 476.0), Pick(420.0, 2278.0), Pick(2899.0, 1592.0)]


def test_eman_malformed(tmp_path: Path) -> None:
    box = tmp_path / "m.box"
    box.write_text("10\t20\t176\n")
    with pytest.raises(ParseError, match=r"m\.box:1: expected 'x y w h'"):
        cryolo.read_eman_box(box)


def test_distr_summaries() -> None:
    found = cryolo.find_distr_summaries(OUT)
    assert found["size"] == {"MEAN": 155.3, "SD": 9.8, "Q25": 147.9, "Q50": 154.1, "Q75": 160.4}
    assert found["confidence"]["Q50"] == 0.612
    assert cryolo.find_distr_summaries(OUT / "CBOX") == {}


def test_find_outputs_prefers_cbox_then_star_then_eman() -> None:
    assert cryolo.find_cryolo_outputs(OUT, MIC) == OUT / "CBOX" / f"{MIC}.cbox"
    star = "FoilHole_8950_Data_8801_fractions"
    assert cryolo.find_cryolo_outputs(OUT, star) == OUT / "STAR" / f"{star}.star"
    eman = "FoilHole_8990_Data_8801_fractions"
    assert cryolo.find_cryolo_outputs(OUT, eman) == OUT / "EMAN" / f"{eman}.box"
    assert cryolo.find_cryolo_outputs(OUT, "nothing") is None
    assert len(cryolo.find_cryolo_picks(OUT, MIC, 0.3)) == 3
    assert cryolo.find_cryolo_picks(OUT, star, 0.3) == [Pick(1810.0, 955.0)]
    assert cryolo.find_cryolo_picks(OUT, eman, 0.3) == [Pick(728.0, 1320.0), Pick(2132.0, 390.0)]
    with pytest.raises(ParseError, match="no picks for nothing"):
        cryolo.find_cryolo_picks(OUT, "nothing", 0.3)


def test_read_cryolo_picks_by_suffix(tmp_path: Path) -> None:
    other = tmp_path / "m.txt"
    shutil.copy(OUT / "EMAN" / f"{MIC}.box", other)
    with pytest.raises(ParseError, match=r"m\.txt: not a crYOLO pick file"):
        cryolo.read_cryolo_picks(other)
