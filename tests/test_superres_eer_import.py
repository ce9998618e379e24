"""K3 super-resolution pixel size and EER import: decided from the XML *and* the frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from emotf.config import build_config
from emotf.epu import EpuMetadata, frame_pixel_size, parse_movie_xml
from emotf.movies import MovieError, aligned_frame_row, motion_binning, probe_movie
from emotf.sim.eer import eer_metadata, write_eer
from emotf.sim.epu_writer import XmlFields, movie_xml
from emotf.steps.base import StepContext, start_output
from emotf.steps.importer import import_movie
from emotf.steps.motioncor import _relion_argv


def k3_xml(n_frames: int, factor: int | None, readout: tuple[int, int] | None) -> str:
    """EPU movie XML (the simulator's) plus the K3 fields EPU writes next to the pixel size."""
    xml = movie_xml(XmlFields(1.06, 300.0, 50.0, n_frames, 12000.0, 2.0, "2026-01-01T09:00:00"))
    extra = "<DetectorCommercialName>BioQuantum K3</DetectorCommercialName>"
    if readout is not None:
        extra += (
            '<ReadoutArea xmlns:a="http://schemas.datacontract.org/2004/07/System.Drawing">'
            f"<a:height>{readout[1]}</a:height><a:width>{readout[0]}</a:width>"
            "<a:x>0</a:x><a:y>0</a:y></ReadoutArea>"
        )
    xml = xml.replace("<ExposureTime>", extra + "<ExposureTime>")
    if factor is not None:
        entry = (
            "<a:KeyValueOfstringanyType><a:Key>SuperResolutionFactor</a:Key>"
            '<a:Value xmlns:b="http://www.w3.org/2001/XMLSchema" i:type="b:int">'
            f"{factor}</a:Value></a:KeyValueOfstringanyType>"
        )
        xml = xml.replace("</CameraSpecificInput>", entry + "</CameraSpecificInput>")
    return xml


def meta(factor: int | None, readout: tuple[int, int] | None = None) -> EpuMetadata:
    return EpuMetadata(1.06, 300.0, 50.0, 50, 1.0, super_resolution_factor=factor,
                       detector="BioQuantum K3", readout_area=readout)  # fmt: skip


def test_k3_frame_sizes_decide_counting_or_super_resolution() -> None:
    sr = frame_pixel_size(meta(2), 11520, 8184)
    assert (sr.pixel_size, sr.super_resolution_factor, sr.warning) == (0.53, 2, None)
    assert sr.rule.startswith("super-resolution: frames 11520x8184 vs K3 counting size")
    counting = frame_pixel_size(meta(2), 5760, 4092)
    assert (counting.pixel_size, counting.super_resolution_factor) == (1.06, 1)
    assert counting.rule.startswith("counting") and "SuperResolutionFactor 2" in counting.warning
    rotated = frame_pixel_size(meta(None), 8184, 11520)  # no factor in the XML: warn, size wins
    assert rotated.pixel_size == 0.53 and "no SuperResolutionFactor" in rotated.warning
    unknown = frame_pixel_size(meta(2), 4000, 4000)
    assert unknown.pixel_size == 1.06 and unknown.rule.startswith("XML pixel size")
    assert unknown.warning is not None
    plain = frame_pixel_size(EpuMetadata(0.83, 300.0, 40.0, 40, 1.0), 4096, 4096)
    assert (plain.pixel_size, plain.warning) == (0.83, None)  # Falcon: nothing to decide


def test_xml_fields_read(tmp_path: Path) -> None:
    xml = tmp_path / "m.xml"
    xml.write_text(k3_xml(50, 2, (5760, 4092)))
    parsed = parse_movie_xml(xml)
    assert parsed.super_resolution_factor == 2 and parsed.detector == "BioQuantum K3"
    assert parsed.readout_area == (5760, 4092) and parsed.pixel_size == pytest.approx(1.06)


def context(config: dict[str, Any], workdir: Path) -> StepContext:
    values = {"session_dir": str(workdir), **config}
    return StepContext(batch="b000001", config=build_config(values), inputs={}, outputs={},
                       threads=1, workdir=workdir)  # fmt: skip


def imported(tmp_path: Path, name: str, frames: np.ndarray, xml: str) -> dict[str, Any]:
    movie = tmp_path / "Data" / f"{name}_fractions.tiff"
    movie.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(movie, frames, photometric="minisblack")
    movie.with_name(f"{name}.xml").write_text(xml)
    ctx = context({}, tmp_path / "otf")
    out = start_output(ctx, "import", "emotf")
    import_movie(ctx, out, name, movie)
    record: dict[str, Any] = out.movies[name]
    return record


def test_import_records_pixel_size_rule_for_a_tiny_super_resolution_movie(
    tmp_path: Path,
) -> None:
    """A 64×64 K3 'super-resolution' movie: its XML ReadoutArea is 32×32 (ratio 2)."""
    frames = np.zeros((4, 64, 64), np.uint8)
    row = imported(tmp_path, "FoilHole_1_Data_2_3_4", frames, k3_xml(4, 2, (32, 32)))
    assert row["ok"], row
    assert row["pixel_size"] == pytest.approx(0.53) and row["pixel_size_xml"] == pytest.approx(1.06)
    assert row["super_resolution_factor"] == 2 and row["pixel_size_warning"] is None
    assert row["pixel_size_rule"] == "super-resolution: frames 64x64 vs XML ReadoutArea 32x32"
    counting = imported(tmp_path, "FoilHole_5_Data_6_7_8", frames, k3_xml(4, 2, (64, 64)))
    assert counting["pixel_size"] == pytest.approx(1.06) and counting["pixel_size_warning"]
    assert motion_binning(row, 1) == 2.0 and motion_binning(counting, 1) == 1.0


def test_relion_argv_bins_super_resolution_and_groups_eer(tmp_path: Path) -> None:
    ctx = context({"motioncor": {"eer_grouping": 20}}, tmp_path)
    sr = {"pixel_size": 0.53, "voltage": 300.0, "dose_per_frame": 1.0, "format": "tiff",
          "super_resolution_factor": 2}  # fmt: skip
    argv = _relion_argv(ctx, tmp_path / "m.star", sr, None)
    assert argv[argv.index("--bin_factor") + 1] == "2.0"
    assert argv[argv.index("--angpix") + 1] == "0.53" and "--eer_grouping" not in argv
    eer = {"pixel_size": 0.72, "voltage": 300.0, "dose_per_frame": 0.05, "format": "eer"}
    argv = _relion_argv(ctx, tmp_path / "m.star", eer, None)
    assert argv[argv.index("--eer_grouping") + 1] == "20"
    assert argv[argv.index("--eer_upsampling") + 1] == "1" and "--bin_factor" not in argv
    assert float(argv[argv.index("--dose_per_frame") + 1]) == pytest.approx(1.0)  # 20 × 0.05
    assert aligned_frame_row(eer, {"eer_grouping": 20})["dose_per_frame"] == pytest.approx(1.0)


def test_eer_frames_counted_and_truncated_eer_detected(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = [np.unique(rng.integers(0, 256 * 256, 400)) for _ in range(12)]
    good = tmp_path / "m_EER.eer"
    write_eer(good, frames, 256, eer_metadata(12, 256, 0.05, 0.03))
    info = probe_movie(good)
    assert (info.format, info.n_frames, info.nx, info.ny) == ("eer", 12, 256, 256)
    cut = tmp_path / "cut_EER.eer"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])  # a partial copy
    with pytest.raises(MovieError, match="truncated EER"):
        probe_movie(cut)
