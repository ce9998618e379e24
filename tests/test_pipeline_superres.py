"""A simulated K3 super-resolution session through ``emotf run`` on the CPU.

The movies' frames are super-resolution (0.5 Å); their EPU XML gives the physical pixel size
(1.0 Å) with ``SuperResolutionFactor`` 2, detector K3 and a ``ReadoutArea`` half the frame
size. Real components: the ``emotf`` command, Snakemake, RELION's own motion correction
(binning 2), the numpy CTF estimator, RELION's LoG picker. Needs RELION.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import starfile
import yaml

from emotf.curation import curate
from emotf.demo import demo_config
from emotf.evaluate import evaluate, summarise
from emotf.session.progress import ProgressReader
from emotf.sim import SimParams, simulate_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("relion_run_motioncorr") is None, reason="RELION not installed"
    ),
]
SUPER, PHYSICAL = 0.5, 1.0  # Å per pixel of the frames / of the detector


def as_k3_super_resolution(xml: Path, readout: int) -> None:
    """EPU's K3 fields: physical pixel size, SuperResolutionFactor 2, detector, ReadoutArea."""
    text = xml.read_text()
    text = re.sub(
        r"<numericValue>[^<]+</numericValue>",
        f"<numericValue>{PHYSICAL * 1e-10:.6e}</numericValue>",
        text,
    )
    text = text.replace(
        "<ExposureTime>",
        "<DetectorCommercialName>BioQuantum K3</DetectorCommercialName>"
        '<ReadoutArea xmlns:a="http://schemas.datacontract.org/2004/07/System.Drawing">'
        f"<a:height>{readout}</a:height><a:width>{readout}</a:width><a:x>0</a:x><a:y>0</a:y>"
        "</ReadoutArea><ExposureTime>",
    )
    text = text.replace(
        "</CameraSpecificInput>",
        "<a:KeyValueOfstringanyType><a:Key>SuperResolutionFactor</a:Key>"
        '<a:Value xmlns:b="http://www.w3.org/2001/XMLSchema" i:type="b:int">2</a:Value>'
        "</a:KeyValueOfstringanyType></CameraSpecificInput>",
    )
    xml.write_text(text)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("superres")
    session, out = root / "session", root / "session_OTF"
    params = SimParams(size=1024, n_frames=12, pixel_size=SUPER, particle_diameter=80.0, seed=3)
    truth = simulate_session(session, params, n_movies=3)
    for xml in session.glob("Images-Disc1/GridSquare_*/Data/*.xml"):
        as_k3_super_resolution(xml, 512)
    config = demo_config(truth.particle_diameter)
    config["acquisition"] = {"gain": "gain.mrc", "gain_flip": 1}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "emotf", "run", str(session), "--out", str(out), "--once",
            "--config", str(root / "config.yaml"), "--poll", "1"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return session, out


def test_pixel_size_decided_and_recorded(processed: tuple[Path, Path]) -> None:
    _session, out = processed
    records = ProgressReader(out).results()
    assert len(records) == 3 and all(r["state"] == "done" for r in records)
    for r in records:
        assert r["pixel_size"] == pytest.approx(SUPER) and r["super_resolution_factor"] == 2
        assert r["pixel_size_rule"].startswith("super-resolution: frames 1024x1024")
        assert r["binning"] == 2.0  # RELION --bin_factor 2: micrographs at the physical pixel


def test_step_star_files_have_the_right_pixel_size(processed: tuple[Path, Path]) -> None:
    _session, out = processed
    movies = starfile.read(out / "movies.star", always_dict=True)["optics"]
    assert movies["rlnMicrographOriginalPixelSize"][0] == pytest.approx(SUPER)
    for star in sorted(out.glob("MotionCorr/b*/micrographs.star")):
        optics = starfile.read(star, always_dict=True)["optics"]
        assert optics["rlnMicrographOriginalPixelSize"][0] == pytest.approx(SUPER), star
        assert optics["rlnMicrographPixelSize"][0] == pytest.approx(PHYSICAL), star
    record = ProgressReader(out).results()[0]
    general = starfile.read(out / record["motion_star"], always_dict=True)["general"]
    assert general["rlnMicrographBinning"] == pytest.approx(2.0)
    assert general["rlnMicrographOriginalPixelSize"] == pytest.approx(SUPER)


def test_session_star_files_have_the_right_pixel_size(processed: tuple[Path, Path]) -> None:
    _session, out = processed
    for name in ("micrographs.star", "micrographs_ctf.star", "micrographs_accepted.star"):
        blocks = starfile.read(out / name, always_dict=True)
        if name == "micrographs_accepted.star" and blocks["micrographs"].empty:
            continue  # curation may reject all three (see the CTF test): nothing to check
        optics = blocks["optics"]
        assert optics["rlnMicrographOriginalPixelSize"][0] == pytest.approx(SUPER), name
        assert optics["rlnMicrographPixelSize"][0] == pytest.approx(PHYSICAL), name


def test_ctf_fit_with_the_physical_pixel_size(processed: tuple[Path, Path]) -> None:
    session, out = processed
    records = ProgressReader(out).results()
    scores = evaluate(out, session, records)
    figures = summarise(scores)
    assert figures["movies_scored"] == 3
    assert figures["max_drift_rmse_px"] <= 1.0  # super-resolution px: 0.5 physical px
    # K3 at 1.0 Å/px is the estimator's weak spot (issue 15): a fit may be off by ~200 Å, but
    # then its own uncertainty must say so and curation reject the micrograph
    limits = yaml.safe_load((out / "config.yaml").read_text())["curation"]
    _accepted, rejected = curate(records, limits)
    for score in scores:
        error = max(score.defocus_u_error or 0.0, score.defocus_v_error or 0.0)
        assert error <= 150.0 or score.key in rejected, (score.key, error)
        assert error <= 400.0, (score.key, error)
