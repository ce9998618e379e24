"""A simulated Falcon EER session with a .gain reference through ``emotf run`` on the CPU.

Real components: the EER files (emotf.sim.eer, the public EER format), the ``emotf`` command,
Snakemake and RELION's own motion correction (``--eer_grouping``/``--eer_upsampling``, which
decodes the EER and applies the gain), the numpy CTF estimator and RELION's LoG picker.
Needs RELION (Debian package ``relion``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import starfile
import yaml

from emotf.demo import demo_config
from emotf.evaluate import evaluate, summarise
from emotf.session.progress import ProgressReader
from emotf.sim import SimParams
from emotf.sim.eer import simulate_eer_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("relion_run_motioncorr") is None, reason="RELION not installed"
    ),
]
GROUP = 8  # raw EER frames per aligned frame
BIN = 4  # 4096 detector pixels of 0.5 Å → 1024 micrograph pixels of 2 Å


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eer")
    session, out = root / "session", root / "session_OTF"
    params = SimParams(size=1024, n_frames=10, pixel_size=2.0, dose_per_frame=1.0, seed=11)
    truth = simulate_eer_session(session, params, n_movies=3, n_truncated=1, group=GROUP)
    config = demo_config(truth.particle_diameter)
    config["acquisition"] = {"gain": "gain.gain"}  # EER: not flipped (RELION reads it as is)
    config["motioncor"] = {"eer_grouping": GROUP, "bin_factor": BIN}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "emotf", "run", str(session), "--out", str(out), "--once",
            "--config", str(root / "config.yaml"), "--poll", "1"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return session, out


def test_eer_session_accuracy(processed: tuple[Path, Path]) -> None:
    session, out = processed
    records = ProgressReader(out).results()
    done = [r for r in records if r["state"] == "done"]
    failed = [r for r in records if r["state"] == "failed"]
    assert len(done) == 3 and len(failed) == 1
    assert failed[0]["failed_step"] == "import" and "truncated EER" in failed[0]["reason"]
    figures = summarise(evaluate(out, session, records))
    assert figures["movies_scored"] == 3
    assert figures["max_drift_rmse_px"] <= 0.5  # detector (movie) pixels
    assert figures["max_defocus_error_A"] <= 200.0
    for r in done:
        assert r["format"] == "eer" and r["n_frames"] == 10 * GROUP  # raw EER frames
        assert r["dose_per_frame"] == pytest.approx(0.125)  # per raw frame
        assert len(r["shifts"]) == 10 and r["binning"] == BIN
        assert r["accum_motion_total_px"] * 0.5 == pytest.approx(r["motion_total"], abs=1e-3)


def test_eer_motion_star_and_session_stars(processed: tuple[Path, Path]) -> None:
    session, out = processed
    gt = json.loads((session / "ground_truth.json").read_text())
    assert gt["format"] == "eer" and gt["gain"] == "gain.gain"
    record = next(r for r in ProgressReader(out).results() if r["state"] == "done")
    general = starfile.read(out / record["motion_star"], always_dict=True)["general"]
    assert general["rlnEERGrouping"] == GROUP and general["rlnEERUpsampling"] == 1
    assert general["rlnMicrographDoseRate"] == pytest.approx(1.0)  # 8 raw frames × 0.125
    assert general["rlnMicrographOriginalPixelSize"] == pytest.approx(0.5)
    assert general["rlnMicrographGainName"].endswith("gain.gain")
    optics = starfile.read(out / "micrographs.star", always_dict=True)["optics"]
    assert optics["rlnMicrographOriginalPixelSize"][0] == pytest.approx(0.5)
    assert optics["rlnMicrographPixelSize"][0] == pytest.approx(2.0)
