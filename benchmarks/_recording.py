"""A small "recording" for the ``recorded`` backend, made from the test fixtures.

``benchmarks/scale.py`` records a real run first; the backlog and soak benchmarks only need
the Snakemake/worker machinery to be real, so their recording is one finished movie whose
files are the real tool outputs kept in ``tests/fixtures`` (a RELION motion STAR, a
CTFFIND text and its rotational average, a RELION coordinate STAR; see
tests/fixtures/README.md). The images are placeholders: nothing downstream decodes them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
STEM = "MotionCorr/b000001/Movies/GridSquare_3/Data/FoilHole_8812_Data_8801_fractions"


def make_recording(root: Path) -> Path:
    """A finished processing folder with one done movie and every file its record names."""
    ctf_stem = "CtfFind/" + STEM.split("/", 1)[1]
    coords = "AutoPick/b000001/" + STEM.split("/", 2)[2] + "_autopick.star"
    files = {
        f"{STEM}.mrc": b"micrograph",
        f"{STEM}_noDW.mrc": b"micrograph nodw",
        f"{STEM}.star": (FIX / "relion" / "FoilHole_8812_Data_8801_fractions.star").read_bytes(),
        f"{ctf_stem}.txt": (FIX / "ctffind" / "FoilHole_8812_single.txt").read_bytes(),
        f"{ctf_stem}_avrot.txt": (FIX / "ctffind" / "FoilHole_8812_single_avrot.txt").read_bytes(),
        f"{ctf_stem}.ctf": b"diagnostic",
        coords: (FIX / "relion" / "FoilHole_8812_Data_8801_fractions_autopick.star").read_bytes(),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    record = {
        "key": "GridSquare_3/Data/FoilHole_8812_Data_8801_fractions.tiff",
        "state": "done",
        "micrograph": f"{STEM}.mrc",
        "micrograph_nodw": f"{STEM}_noDW.mrc",
        "motion_star": f"{STEM}.star",
        "ctf_txt": f"{ctf_stem}.txt",
        "coordinates": coords,
    }
    (root / "Results").mkdir(parents=True, exist_ok=True)
    (root / "Results" / "b000001.json").write_text(json.dumps({"movies": [record]}))
    return root


def recorded_config(recording: Path, batch_size: int, settle: float = 0.0,
                    tail: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Processing configuration: real import, recorded motioncor/ctffind/cryolo."""
    return {
        "batches": {"size": batch_size, "settle_seconds": settle, "tail_seconds": tail},
        "acquisition": {"pixel_size": 1.0, "dose_per_frame": 1.5},
        "motioncor": {"backend": "recorded"},
        "ctffind": {"backend": "recorded"},
        "cryolo": {"backend": "recorded"},
        "recorded": {"folder": str(recording)},
    }


def tiny_movie(frames: int = 20, seed: int = 0) -> bytes:
    """One tiny (32×32×frames) TIFF movie."""
    import numpy as np

    from emotf.sim.epu_writer import encode_movie

    rng = np.random.default_rng(seed)
    return encode_movie(rng.poisson(1.5, (frames, 32, 32)).astype("uint8"), "tiff")


def write_tiny_movie(session: Path, n: int, movie: bytes, per_square: int = 50,
                     frames: int = 20) -> Path:  # fmt: skip
    """Movie number ``n`` of an EPU layout (XML first, then the movie renamed into place,
    as a transfer does); returns the movie's path."""
    from emotf.sim.epu_writer import XmlFields, movie_xml

    stamp = dt.datetime(2026, 1, 1, 9, 0, 0) + dt.timedelta(seconds=8 * n)
    base = (f"Images-Disc1/GridSquare_{1000 + n // per_square}/Data/"
            f"FoilHole_{20000 + n}_Data_{30000 + n}_{n % 7}_{stamp:%Y%m%d_%H%M%S}")  # fmt: skip
    folder = session / base.rsplit("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    fields = XmlFields(1.0, 300.0, 1.5 * frames, frames, 15000.0, 1.0, stamp.isoformat())
    (session / f"{base}.xml").write_text(movie_xml(fields))
    target = session / f"{base}_fractions.tiff"
    part = target.with_name(target.name + ".part")
    part.write_bytes(movie)
    part.replace(target)
    return target


def write_tiny_session(session: Path, n_movies: int, per_square: int = 50) -> None:
    session.mkdir(parents=True, exist_ok=True)
    (session / "EpuSession.dm").write_text("<EpuSessionXml/>\n")
    movie = tiny_movie()
    for n in range(n_movies):
        write_tiny_movie(session, n, movie, per_square)
