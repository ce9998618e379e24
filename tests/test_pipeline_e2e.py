"""The whole pipeline on simulated sessions, with the real CPU backends and real Snakemake.

Needs RELION's CPU programs (Debian package ``relion``); the test suite is run through
``make test``, which installs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import starfile

from emotf.cli import run_session
from emotf.demo import demo_config
from emotf.evaluate import evaluate
from emotf.pipeline import builtin_pipeline
from emotf.session.otf import OtfOptions, Status
from emotf.session.progress import ProgressReader
from emotf.sim import SimParams, simulate_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("relion_run_motioncorr") is None, reason="RELION not installed"
    ),
]


def snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Status]:
    root = tmp_path_factory.mktemp("e2e")
    session, out = root / "session", root / "session_OTF"
    params = SimParams(size=1024, n_frames=20, format="tiff", gain=True, seed=7)
    truth = simulate_session(session, params, n_movies=8, n_corrupt=1, n_truncated=1)
    config = demo_config(truth.particle_diameter)
    config["acquisition"] = {"gain": "gain.mrc", "gain_flip": 1}  # TIFF read flipped by RELION
    status = run_session(session, out, config, OtfOptions(once=True, poll_interval=1), quiet=True)
    return session, out, status


def test_every_movie_accounted_for(processed: tuple[Path, Path, Status]) -> None:
    _session, out, status = processed
    counts = status.counts
    assert status.movies_found == 10
    assert counts["done"] == 8 and counts["failed"] == 2
    assert counts["done"] + counts["failed"] == status.movies_found
    records = ProgressReader(out).results()
    assert len(records) == len({r["key"] for r in records}) == 10
    failed = {r["key"]: r for r in records if r["state"] == "failed"}
    reasons = sorted(r["reason"] for r in failed.values())
    assert all(r["failed_step"] == "import" for r in failed.values())
    assert "corrupt" in reasons[0] or "corrupt" in reasons[1]
    assert any("truncated" in r for r in reasons)
    for record in records:
        if record["state"] == "done":
            assert set(record["times"]) == set(builtin_pipeline().names)
    # the worker's view: every finished batch has its summary, the same records, slimmed
    assert sorted(p.name for p in (out / "Summary").glob("b*.json")) == sorted(
        p.name for p in (out / "Results").glob("b*.json")
    )
    slim = {r["key"]: r for r in ProgressReader(out).summaries()}
    assert slim.keys() == {r["key"] for r in records}
    for record in records:
        assert slim[record["key"]].items() <= record.items()
        assert "shifts" not in slim[record["key"]]


def test_accuracy_against_ground_truth(processed: tuple[Path, Path, Status]) -> None:
    session, out, _status = processed
    scores = evaluate(out, session, ProgressReader(out).results())
    assert len(scores) == 8
    for s in scores:
        assert s.drift_rmse is not None and s.drift_rmse <= 0.5, s
        assert s.defocus_u_error is not None and s.defocus_u_error <= 200, s
        assert s.defocus_v_error is not None and s.defocus_v_error <= 200, s
        if (s.astigmatism or 0) >= 300:
            assert s.angle_error is not None and s.angle_error <= 10, s
        assert s.recall is not None and s.recall >= 0.8, s
        assert s.precision is not None and s.precision >= 0.8, s


def test_relion_compatible_star_files(processed: tuple[Path, Path, Status]) -> None:
    _session, out, _status = processed
    mics = starfile.read(out / "micrographs.star", always_dict=True)
    assert len(mics["micrographs"]) == 8
    for column in ("rlnAccumMotionTotal", "rlnAccumMotionEarly", "rlnAccumMotionLate"):
        assert (mics["micrographs"][column] >= 0).all()
    assert (mics["micrographs"]["rlnAccumMotionTotal"] > 0).all()
    ctf = starfile.read(out / "micrographs_ctf.star", always_dict=True)["micrographs"]
    assert len(ctf) == 8
    assert ctf["rlnDefocusU"].between(5000, 30000).all()
    assert (ctf["rlnCtfFigureOfMerit"] > 0).all() and (ctf["rlnCtfMaxResolution"] < 10).all()
    assert ctf["rlnMicrographName"].is_unique
    coords = starfile.read(out / "autopick.star", always_dict=True)["coordinate_files"]
    assert len(coords) == 8
    for path in coords["rlnMicrographCoordinates"]:
        picks = starfile.read(out / path)
        assert len(picks) > 5 and {"rlnCoordinateX", "rlnCoordinateY"} <= set(picks.columns)
    movies = starfile.read(out / "movies.star", always_dict=True)
    assert len(movies["movies"]) == 8
    assert movies["optics"]["rlnSphericalAberration"].iloc[0] == pytest.approx(2.7)


def test_manual_rerun_with_plain_snakemake(processed: tuple[Path, Path, Status]) -> None:
    _session, out, _status = processed
    dry = snakemake(out, "-n")
    assert dry.returncode == 0, dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr
    batch = json.loads((out / "Results" / "b000001.json").read_text())
    (out / "Results" / "b000001.json").unlink()
    (out / "Summary" / "b000001.json").unlink()
    (out / "CtfFind" / "b000001" / "ctffind.json").unlink()
    rerun = snakemake(out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    again = json.loads((out / "Results" / "b000001.json").read_text())
    assert [m["key"] for m in again["movies"]] == [m["key"] for m in batch["movies"]]
    assert [m["state"] for m in again["movies"]] == [m["state"] for m in batch["movies"]]
    summary = json.loads((out / "Summary" / "b000001.json").read_text())
    assert [m["key"] for m in summary["movies"]] == [m["key"] for m in batch["movies"]]


def test_workflow_lint_has_no_errors(processed: tuple[Path, Path, Status]) -> None:
    _session, out, _status = processed
    lint = snakemake(out, "--lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_streaming_session_with_growing_movies(tmp_path: Path) -> None:
    session, out = tmp_path / "live", tmp_path / "live_OTF"
    params = SimParams(size=768, n_frames=16, format="mrc", gain=False, seed=3)
    stop = threading.Event()
    writer = threading.Thread(
        target=simulate_session,
        args=(session, params, 5),
        kwargs={"interval": 2.0, "stop": stop},
        daemon=True,
    )
    session.mkdir()
    writer.start()
    config = demo_config(params.particle_diameter)
    config["batches"] = {"size": 2, "tail_seconds": 3, "settle_seconds": 2}
    try:
        status = run_session(
            session, out, config, OtfOptions(idle_timeout=12, poll_interval=1), quiet=True
        )
    finally:
        stop.set()
        writer.join(60)
    assert status.state == "finished"
    assert status.movies_found == 5
    assert status.counts["done"] == 5 and status.counts["failed"] == 0
    manifests = sorted((out / "batches").glob("b*.json"))
    sizes = [len(json.loads(p.read_text())["movies"]) for p in manifests]
    assert sum(sizes) == 5 and max(sizes) <= 2


def test_statistics_and_curation_on_the_session(processed: tuple[Path, Path, Status]) -> None:
    from emotf.curation import curate
    from emotf.records import MotionResult
    from emotf.session.ledger import figures, ledger
    from emotf.views.stats import session_stats

    session, out, _status = processed
    truth = json.loads((session / "ground_truth.json").read_text())
    records = ProgressReader(out).results()
    done = [r for r in records if r["state"] == "done"]
    stats = session_stats(records)
    true_means = [
        0.5 * (truth["movies"][r["key"]]["defocus_u"] + truth["movies"][r["key"]]["defocus_v"])
        for r in done
    ]
    assert abs(stats["defocus_A"]["mean"] - sum(true_means) / len(true_means)) < 200
    for r in done:  # drift statistics against the simulated trajectory (RELION convention)
        drift = truth["movies"][r["key"]]["drift"]
        expected = MotionResult([(-x, y) for x, y in drift]).accumulated_motion(1.0, 1.5)
        assert abs(r["motion_total"] - expected[0]) < 1.5
        assert abs(r["motion_early"] - expected[1]) < 1.0
    resolutions = sorted(r["ctf_resolution"] for r in done)
    cut = 0.5 * (resolutions[2] + resolutions[3])
    limits = {"max_ctf_resolution": cut, "min_particles": 1}
    accepted, rejected = curate(records, limits)
    assert set(rejected) == {r["key"] for r in done if r["ctf_resolution"] > cut}
    assert {r["key"] for r in accepted} == {r["key"] for r in done if r["ctf_resolution"] <= cut}
    assert all(reason.startswith("max_ctf_resolution:") for v in rejected.values() for reason in v)
    hist = stats["histograms"]["defocus_A"]
    assert sum(hist["counts"]) == 8 and len(hist["edges"]) == len(hist["counts"]) + 1
    fig = figures(ledger(out))
    assert fig["states"] == {"done": 8, "failed": 2}
    assert fig["latency_found_to_ctffind_s"]["p50"] > 0
    assert stats["particles"] == sum(r["particles"] for r in done)
    accepted_star = starfile.read(out / "micrographs_accepted.star", always_dict=True)
    assert len(accepted_star["micrographs"]) == 8  # default thresholds keep every good movie


def test_extraction_writes_a_session_particles_star(processed: tuple[Path, Path, Status]) -> None:
    _session, out, status = processed
    records = [r for r in ProgressReader(out).results() if r["state"] == "done"]
    assert status.counts["extracted"] == 8 == len(records)
    extracted = {r["micrograph"]: r["particles_extracted"] for r in records}
    assert all(0 < extracted[r["micrograph"]] <= r["particles"] for r in records)
    stars = starfile.read(out / "particles.star", always_dict=True)
    particles, optics = stars["particles"], stars["optics"]
    assert len(particles) == sum(extracted.values()) == status.counts["particles_extracted"]
    assert particles["rlnMicrographName"].value_counts().to_dict() == extracted
    assert list(optics["rlnOpticsGroup"]) == [1] and set(particles["rlnOpticsGroup"]) == {1}
    box = int(optics["rlnImageSize"][0])
    assert box == records[0]["extract_box"]
    assert abs(float(optics["rlnImagePixelSize"][0]) - records[0]["extract_pixel_size"]) < 1e-3
    for name in particles["rlnImageName"].head(3):  # stacks RELION can read back
        index, stack = name.split("@")
        import mrcfile

        with mrcfile.mmap(out / stack, permissive=True) as mrc:
            assert mrc.data.shape[-2:] == (box, box) and int(index) <= mrc.data.shape[0]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(
    processed: tuple[Path, Path, Status], tmp_path: Path
) -> None:
    from emotf.config import read_config
    from emotf.views.report import write_report

    _session, out, _status = processed
    page = write_report(out, read_config(out / "config.yaml"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for text in (
        "emotf report",
        "Statistics",
        "Grid squares",
        "Recent micrographs",
        "Failures",
        "truncated",
    ):
        assert text in dom, text
    assert dom.count('alt="micrograph"') == 6 and dom.count('alt="power spectrum"') == 6
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    image = Image.open(shot)
    assert image.size == (1200, 1600)
    colours = image.convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 50  # plots and thumbnails, not a blank page


def test_retry_failed_requeues_and_counts_each_movie_once(tmp_path: Path) -> None:
    from emotf.session.ledger import ledger
    from emotf.session.retry import retry_failed

    session, out = tmp_path / "s", tmp_path / "s_OTF"
    params = SimParams(size=384, n_frames=8, gain=False, seed=9)
    truth = simulate_session(session, params, n_movies=2, n_corrupt=1)
    config = demo_config(truth.particle_diameter)
    config["batches"] = {"size": 3, "settle_seconds": 0}
    options = OtfOptions(once=True, poll_interval=1)
    first = run_session(session, out, config, options, quiet=True)
    assert (first.counts["done"], first.counts["failed"]) == (2, 1)
    bad = next(k for k, v in truth.movies.items() if v["kind"] == "corrupt")
    good = next(k for k, v in truth.movies.items() if v["kind"] == "good")
    shutil.copyfile(session / good, session / bad)  # the facility re-copies the damaged movie
    manifest = retry_failed(out)
    assert manifest is not None and [m.key for m in manifest.movies] == [bad]
    assert retry_failed(out) is None  # already queued: a second call adds nothing
    second = run_session(session, out, config, options, quiet=True)
    assert (second.counts["done"], second.counts["failed"]) == (3, 0)
    assert second.counts["movies_batched"] == 3
    rows = ledger(out)
    assert {r.key: r.attempts for r in rows} == {k: 2 if k == bad else 1 for k in truth.movies}
    assert sorted(r.key for r in rows) == sorted(truth.movies) and all(
        r.state == "done" for r in rows
    )
