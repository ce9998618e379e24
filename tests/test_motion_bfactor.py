"""RELION's own motion correction with the B-factor chosen on realistic simulations.

The accuracy test simulates two realistic Falcon 4i movies (1.6 Å/px, 1024² × 20 frames,
1.5 e/Å² per frame, structured gain, local motion; ``emotf.sim`` seed 23, one of the tuning
seeds) and runs the real import and motion correction steps (Debian RELION). With the
previous B-factor (150 pixel²) the global drift of the two movies was 0.53 and 0.59 px RMSE
from the truth; with the default ``relion_bfactor`` (50) 0.20 and 0.17 px."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from emotf.config import build_config
from emotf.evaluate import drift_rmse
from emotf.fsutil import read_json
from emotf.session.batches import MovieEntry, write_manifest
from emotf.steps import importer, motioncor
from emotf.steps.base import StepContext
from emotf.steps.motioncor import _relion_argv

ROW = {"pixel_size": 1.6, "voltage": 300.0, "dose_per_frame": 1.5, "format": "mrc"}


def _bfactor(config: dict[str, object], tmp_path: Path) -> str:
    ctx = StepContext("b000001", build_config({"session_dir": str(tmp_path), **config}), {}, {})
    argv = _relion_argv(ctx, tmp_path / "m.star", ROW, None)
    return argv[argv.index("--bfactor") + 1]


def test_relion_gets_relion_bfactor_and_falls_back_to_bfactor(tmp_path: Path) -> None:
    assert _bfactor({}, tmp_path) == "50.0"
    assert _bfactor({"motioncor": {"relion_bfactor": 80}}, tmp_path) == "80.0"
    assert _bfactor({"motioncor": {"relion_bfactor": None, "bfactor": 150}}, tmp_path) == "150.0"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("relion_run_motioncorr") is None, reason="needs RELION")
def test_default_bfactor_tracks_realistic_drift_within_a_third_of_a_pixel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emotf.sim import SimParams, simulate_session

    session, out = tmp_path / "session", tmp_path / "out"
    params = SimParams(size=1024, n_frames=20, pixel_size=1.6, format="mrc", realism="realistic",
                       detector="Falcon4i", seed=23, defocus_range=(5000.0, 35000.0))  # fmt: skip
    truth = simulate_session(session, params, 2)
    out.mkdir()
    monkeypatch.chdir(out)
    now = time.time()
    entries = [MovieEntry(k, str(session / k), (session / k).stat().st_size, now, now, now)
               for k in truth.movies]  # fmt: skip
    manifest = write_manifest(out, entries, 1)
    config = build_config({"session_dir": str(session), "acquisition": {"gain": "gain.mrc"}})
    b = manifest.batch
    importer.run(StepContext(b, config, {"manifest": Path(f"batches/{b}.json")},
                             {"star": Path(f"Import/{b}/movies.star"),
                              "json": Path(f"Import/{b}/import.json")}))  # fmt: skip
    result = motioncor.run(
        StepContext(
            b,
            config,
            {"import_json": Path(f"Import/{b}/import.json")},
            {
                "star": Path(f"MotionCorr/{b}/micrographs.star"),
                "json": Path(f"MotionCorr/{b}/motioncor.json"),
            },
            threads=2,
        )  # fmt: skip
    )
    gt = read_json(session / "ground_truth.json")
    errors = [drift_rmse(rec["shifts"], gt["movies"][key]["drift"], flip_y=False)
              for key, rec in result.ok().items()]  # fmt: skip
    assert len(errors) == 2
    assert max(errors) < 0.35, errors  # B-factor 150: 0.53 and 0.59 px
    assert np.all(np.isfinite(errors))
