"""Write movies, gain references and EPU-style XML the way a microscope PC does.

Movies appear at their final name and grow in chunks until complete (EPU's behaviour
that a streaming pipeline must cope with). XML uses EPU's element names and units.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import tifffile
from numpy.typing import NDArray

NS = "http://schemas.datacontract.org/2004/07/Fei.SharedObjects"
NS_ARR = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
NS_TYPES = "http://schemas.datacontract.org/2004/07/Fei.Types"


@dataclass(frozen=True)
class XmlFields:
    pixel_size: float  # Å
    voltage: float  # kV
    total_dose: float  # e/Å²
    n_fractions: int
    applied_defocus: float  # Å, positive underfocus
    exposure_time: float  # s
    timestamp: str  # ISO 8601


def movie_xml(f: XmlFields) -> str:
    """EPU ``MicroscopeImage`` XML for one movie (SI units, as EPU writes them)."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<MicroscopeImage xmlns="{NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <microscopeData>
    <acquisition>
      <acquisitionDateTime>{f.timestamp}</acquisitionDateTime>
      <camera>
        <CameraSpecificInput xmlns:a="{NS_ARR}">
          <a:KeyValueOfstringanyType>
            <a:Key>FractionationSettings</a:Key>
            <a:Value xmlns:b="{NS_TYPES}" i:type="b:FractionationSettings">
              <b:NumberOffractions>{f.n_fractions}</b:NumberOffractions>
            </a:Value>
          </a:KeyValueOfstringanyType>
        </CameraSpecificInput>
        <ExposureTime>{f.exposure_time}</ExposureTime>
      </camera>
    </acquisition>
    <gun>
      <AccelerationVoltage>{f.voltage * 1000.0:.1f}</AccelerationVoltage>
    </gun>
  </microscopeData>
  <SpatialScale>
    <pixelSize>
      <x><numericValue>{f.pixel_size * 1e-10:.6e}</numericValue></x>
      <y><numericValue>{f.pixel_size * 1e-10:.6e}</numericValue></y>
    </pixelSize>
  </SpatialScale>
  <CustomData xmlns:a="{NS_ARR}">
    <a:KeyValueOfstringanyType>
      <a:Key>AppliedDefocus</a:Key>
      <a:Value i:type="b:double" xmlns:b="http://www.w3.org/2001/XMLSchema">{-f.applied_defocus * 1e-10:.6e}</a:Value>
    </a:KeyValueOfstringanyType>
    <a:KeyValueOfstringanyType>
      <a:Key>Dose</a:Key>
      <a:Value i:type="b:double" xmlns:b="http://www.w3.org/2001/XMLSchema">{f.total_dose * 1e20:.6e}</a:Value>
    </a:KeyValueOfstringanyType>
  </CustomData>
</MicroscopeImage>
"""  # noqa: E501


def encode_movie(frames: NDArray[np.uint8], fmt: str) -> bytes:
    """The bytes of a movie file: LZW TIFF (uint8 pages) or MRC mode 0 (int8)."""
    buffer = io.BytesIO()
    if fmt == "tiff":
        tifffile.imwrite(buffer, frames, compression="lzw", photometric="minisblack")
        return buffer.getvalue()
    if fmt != "mrc":
        raise ValueError(f"unknown movie format {fmt!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(frames.view(np.int8))  # mode 0; uint8 would become mode 6
        return path.read_bytes()


def write_growing(path: Path, data: bytes, chunks: int = 1, seconds: float = 0.0) -> None:
    """Write ``data`` at ``path`` in ``chunks`` pieces over ``seconds`` (growing file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-len(data) // max(1, chunks)))
    pause = seconds / max(1, chunks)
    with open(path, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            if pause and start + step < len(data):
                time.sleep(pause)


def corrupt(data: bytes) -> bytes:
    """Same size, garbage header: no reader can identify the format."""
    return b"\xde\xad\xbe\xef" * 64 + data[256:]


def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def write_gain(path: Path, gain: NDArray[np.float32]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(gain.astype(np.float32))
