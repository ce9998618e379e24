"""Simulator and EPU metadata: layout, XML round trip, physics of the movies, bad files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from emotf.epu import MetadataError, grid_square_of, movie_xml_path, parse_movie_xml
from emotf.movies import MovieError, probe_movie
from emotf.sim import SessionSimulator, SimParams, simulate_session


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim") / "s"
    simulate_session(root, SimParams(size=256, n_frames=6, seed=5), 3, n_corrupt=1, n_truncated=1)
    return root


def test_layout_and_ground_truth(session: Path) -> None:
    truth = json.loads((session / "ground_truth.json").read_text())
    movies = sorted(session.glob("Images-Disc1/GridSquare_*/Data/*_fractions.tiff"))
    assert len(movies) == 5 and len(truth["movies"]) == 5
    assert {m.relative_to(session).as_posix() for m in movies} == set(truth["movies"])
    kinds = sorted(v["kind"] for v in truth["movies"].values())
    assert kinds == ["corrupt", "good", "good", "good", "truncated"]
    for key, movie in truth["movies"].items():
        assert movie["defocus_u"] >= movie["defocus_v"] > 0
        assert len(movie["drift"]) == 6 and movie["drift"][0] == [0.0, 0.0]
        assert (session / key).with_name(Path(key).name.replace("_fractions.tiff", ".xml")).exists()
    assert (session / "gain.mrc").is_file() and truth["gain"] == "gain.mrc"


def test_xml_round_trip(session: Path) -> None:
    truth = json.loads((session / "ground_truth.json").read_text())
    key = next(iter(truth["movies"]))
    meta = parse_movie_xml(movie_xml_path(session / key))
    assert meta.pixel_size == pytest.approx(1.0)
    assert meta.voltage == pytest.approx(300.0)
    assert meta.n_fractions == 6
    assert meta.total_dose == pytest.approx(1.5 * 6)
    assert meta.dose_per_frame == pytest.approx(1.5)
    mean = 0.5 * (truth["movies"][key]["defocus_u"] + truth["movies"][key]["defocus_v"])
    assert meta.applied_defocus == pytest.approx(mean, rel=1e-4)
    assert meta.grid_square == grid_square_of(key) == "1000"


def test_movie_physics(session: Path) -> None:
    truth = json.loads((session / "ground_truth.json").read_text())
    key = next(k for k, v in truth["movies"].items() if v["kind"] == "good")
    frames = tifffile.imread(session / key)
    assert frames.shape == (6, 256, 256) and frames.dtype == np.uint8
    gain = mrcfile.read(session / "gain.mrc")
    # Poisson counts: mean = dose·pixel² (1.5 e/px/frame) times the sensitivity (1/gain)
    assert frames.mean() == pytest.approx(1.5, rel=0.05)
    assert np.corrcoef(frames.mean(axis=0).ravel(), 1 / gain.ravel())[0, 1] > 0.2
    info = probe_movie(session / key)
    assert (info.format, info.n_frames, info.ny, info.nx) == ("tiff", 6, 256, 256)


def test_bad_movies_are_detected(session: Path, tmp_path: Path) -> None:
    truth = json.loads((session / "ground_truth.json").read_text())
    corrupt = next(k for k, v in truth["movies"].items() if v["kind"] == "corrupt")
    with pytest.raises(MovieError, match="corrupt"):
        probe_movie(session / corrupt)
    empty = tmp_path / "x_fractions.tiff"
    empty.write_bytes(b"")
    with pytest.raises(MovieError, match="0 bytes"):
        probe_movie(empty)
    with pytest.raises(MovieError, match="extension"):
        probe_movie(tmp_path / "movie.avi")


def test_mrc_movies_and_truncation(tmp_path: Path) -> None:
    sim = SessionSimulator(
        tmp_path / "m", SimParams(size=128, n_frames=4, format="mrc", gain=False)
    )
    good = sim.movie("good")
    short = sim.movie("truncated")
    with mrcfile.open(tmp_path / "m" / good) as mrc:
        assert mrc.header.mode == 0 and mrc.data.shape == (4, 128, 128)
    assert probe_movie(tmp_path / "m" / good).n_frames == 4
    with pytest.raises(MovieError, match="truncated MRC"):
        probe_movie(tmp_path / "m" / short)


def test_streaming_movie_grows_then_completes(tmp_path: Path) -> None:
    sim = SessionSimulator(tmp_path / "g", SimParams(size=256, n_frames=6, gain=False))
    sizes: list[int] = []
    writer = threading.Thread(target=sim.movie, kwargs={"chunks": 4, "seconds": 1.0})
    writer.start()
    deadline = time.time() + 10
    while writer.is_alive() and time.time() < deadline:
        for movie in (tmp_path / "g").glob("Images-Disc1/*/Data/*_fractions.tiff"):
            sizes.append(movie.stat().st_size)
        time.sleep(0.05)
    writer.join()
    final = next((tmp_path / "g").glob("Images-Disc1/*/Data/*_fractions.tiff")).stat().st_size
    assert len(set(sizes)) >= 2 and max(sizes) <= final  # it was seen growing


def test_xml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "a.xml"
    bad.write_text("<MicroscopeImage><unclosed>")
    with pytest.raises(MetadataError, match="a.xml"):
        parse_movie_xml(bad)
    bad.write_text("<MicroscopeImage/>")
    with pytest.raises(MetadataError, match="NumberOffractions"):
        parse_movie_xml(bad)
    assert movie_xml_path(Path("d/FoilHole_1_Data_2_3_4_EER.eer")) == Path(
        "d/FoilHole_1_Data_2_3_4.xml"
    )


def test_realistic_level_records_what_scoring_needs(tmp_path: Path) -> None:
    params = SimParams(size=768, n_frames=4, realism="realistic", detector="Falcon4i",
                       format="mrc", carbon_fraction=1.0, seed=8)  # fmt: skip
    simulate_session(tmp_path / "r", params, 1)
    truth = json.loads((tmp_path / "r" / "ground_truth.json").read_text())
    assert truth["realism"] == "realistic" and truth["detector"] == "Falcon4i"
    assert truth["gain_info"]["dead_pixels"] > 0 and truth["gain_info"]["hot_pixels"] >= 0
    # contrast from the molecular weight: 200 kDa → ~78 Å, ~0.054 rad at 300 kV
    assert truth["particle_diameter"] == pytest.approx(78, abs=2)
    assert truth["particle_phase"] == pytest.approx(0.054, abs=0.004)
    (movie,) = truth["movies"].values()
    for field in ("bfactor", "ice_thickness", "ice_gradient", "contamination", "local_motion"):
        assert field in movie
    assert 0 < movie["carbon"]["fraction"] < 1
    (cx, cy), radius = movie["carbon"]["hole_centre"], movie["carbon"]["hole_radius"]
    assert movie["particles"]
    for x, y in movie["particles"]:  # particles sit in the hole's ice, never on the carbon
        assert np.hypot(x - cx, y - cy) < radius
    gain = mrcfile.read(tmp_path / "r" / "gain.mrc")
    assert (gain == 0).sum() == truth["gain_info"]["dead_pixels"]  # defects marked in the gain
    with mrcfile.open(tmp_path / "r" / next(iter(truth["movies"]))) as mrc:
        frames = mrc.data.view(np.uint8)
    assert np.all(frames[:, gain == 0] == 0)  # dead pixels never count
    # fewer counts than the dose: DQE(0) < 1 and zero-loss attenuation by the ice
    assert 0.5 * 1.5 < frames.mean() < 0.9 * 1.5


def test_dose_damage_follows_the_critical_exposure() -> None:
    from emotf.sim.realism import critical_exposure, damage_filter

    # Grant & Grigorieff 2015: Nₑ(1/4 Å) = 0.245·4^1.665 + 2.81 = 5.27 e/Å² at 300 kV
    assert float(critical_exposure(np.array(0.25), 300.0)) == pytest.approx(5.27, abs=0.01)
    fade = damage_filter((64, 64), 1.0, 20.0, 300.0)
    assert fade[0, 1] > 0.9 > fade[0, 16]  # low resolution survives 20 e/Å², 4 Å does not
