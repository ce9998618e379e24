"""Movies the feeder refuses (symlinks out of the raw folder) are counted and explained."""

from __future__ import annotations

import time
from pathlib import Path

from emotf.project import prepare_folder
from emotf.session.otf import OtfOptions, OtfSession


def test_a_symlinked_movie_is_refused_counted_and_explained(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    data = raw / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True)
    outside = tmp_path / "secret_fractions.tiff"
    outside.write_bytes(b"not yours")
    (data / "FoilHole_1_Data_2_fractions.tiff").symlink_to(outside)
    out = tmp_path / "raw_OTF"
    config = prepare_folder(out, raw, {"batches": {"settle_seconds": 0}})
    otf = OtfSession(out, config, OtfOptions(once=True))
    otf.feed(time.time())
    otf.feed(time.time() + 1)
    status = otf.status()
    assert status.counts["movies_refused"] == 1 and status.movies_found == 0
    assert status.as_dict()["movies_refused"] == 1
    [(reason, n)] = status.failures.items()
    assert n == 1 and reason.startswith("feeder: ") and "is a symbolic link" in reason
    assert list(out.glob("batches/b*.json")) == []  # never batched
