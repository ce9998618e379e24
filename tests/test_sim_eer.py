"""The EER writer: real EER files (TIFF compression 65001) that tifffile/imagecodecs decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from emotf.sim.eer import (
    COMPRESSION_EER_V1,
    eer_metadata,
    encode_frame,
    fraction_electrons,
    read_eer_frames,
    write_eer,
    write_eer_gain,
)


@pytest.mark.parametrize(
    "positions",
    [[], [0], [4095], [126], [127], [128], [5, 10, 11], [126, 253, 254], [0, 4094, 4095]],
)
def test_frame_runs_decode_to_the_same_electrons(positions: list[int]) -> None:
    """Edge cases of the run-length code: first/last pixel, runs of exactly 127, neighbours."""
    import imagecodecs

    data = encode_frame(np.array(positions, dtype=np.int64), 64 * 64)
    assert len(data) % 2 == 0  # imagecodecs refuses odd strip sizes
    decoded = imagecodecs.eer_decode(data, (64, 64), 7, 2, 2)
    assert np.flatnonzero(decoded.ravel()).tolist() == positions


def test_movie_is_an_eer_tiff_that_tifffile_decodes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    size = 256
    frames = [np.unique(rng.integers(0, size * size, k)) for k in (3, 900, 5000)]
    path = tmp_path / "m_EER.eer"
    assert write_eer(path, frames, size, eer_metadata(3, size, 0.012, 0.05)) == 3
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and len(tif.pages) == 3
        assert tif.pages[0].compression == COMPRESSION_EER_V1
        assert tif.pages[0].eer_tags["numberOfFrames"] == 3
    decoded = read_eer_frames(path)
    assert decoded.shape == (3, size, size)
    for frame, positions in zip(decoded, frames, strict=True):
        assert np.array_equal(np.flatnonzero(frame.ravel()), positions)


def test_fraction_split_into_raw_frames_sums_back() -> None:
    rng = np.random.default_rng(2)
    counts = rng.poisson(0.5, (32, 32))
    raws = fraction_electrons(counts, upsample=4, group=5, rng=rng)
    assert len(raws) == 5
    fine = np.zeros(128 * 128, np.int64)
    for positions in raws:
        assert np.all(np.diff(positions) > 0)  # one electron per detector pixel and raw frame
        fine[positions] += 1
    binned = fine.reshape(32, 4, 32, 4).sum(axis=(1, 3))
    assert np.all(binned <= counts)  # electrons only where simulated
    assert counts.sum() - binned.sum() <= 0.01 * counts.sum()  # rare double hits are lost


def test_gain_reference_is_a_float_tiff(tmp_path: Path) -> None:
    gain = np.linspace(0.9, 1.1, 64 * 64, dtype=np.float32).reshape(64, 64)
    write_eer_gain(tmp_path / "gain.gain", gain)
    assert np.array_equal(tifffile.imread(tmp_path / "gain.gain"), gain)
