"""EPU session layout and per-movie XML metadata.

EPU writes, next to each movie ``..._fractions.tiff`` / ``..._Fractions.mrc`` / ``..._EER.eer``,
an XML file (root ``MicroscopeImage``) named like the movie without that suffix. Units in
the XML: metres (pixel size, defocus), volts, e/m² (dose). Parsing ignores namespaces.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MOVIE_SUFFIXES = (
    "_fractions.tiff",
    "_Fractions.tiff",
    "_fractions.mrc",
    "_Fractions.mrc",
    "_EER.eer",
)
MOVIE_GLOBS = [
    "Images-Disc*/GridSquare_*/Data/*_fractions.tiff",
    "Images-Disc*/GridSquare_*/Data/*_fractions.mrc",
    "Images-Disc*/GridSquare_*/Data/*_Fractions.mrc",
    "Images-Disc*/GridSquare_*/Data/*_EER.eer",
]
_GRID_RE = re.compile(r"GridSquare_(\d+)")


class MetadataError(ValueError):
    """Movie metadata is missing or unreadable; the message names the file and the field."""


@dataclass(frozen=True)
class EpuMetadata:
    pixel_size: float  # Å
    voltage: float  # kV
    total_dose: float  # e/Å²
    n_fractions: int
    dose_per_frame: float  # e/Å² per fraction
    applied_defocus: float | None = None  # Å, positive = underfocus
    exposure_time: float | None = None  # s
    timestamp: str | None = None  # ISO 8601
    grid_square: str | None = None
    foil_hole: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def movie_xml_path(movie: Path) -> Path:
    """The EPU XML of a movie (``X_fractions.tiff`` → ``X.xml``)."""
    name = movie.name
    for suffix in MOVIE_SUFFIXES:
        if name.endswith(suffix):
            return movie.with_name(name[: -len(suffix)] + ".xml")
    return movie.with_suffix(".xml")


def grid_square_of(movie_key: str) -> str | None:
    match = _GRID_RE.search(movie_key)
    return match.group(1) if match else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, *path: str) -> ET.Element | None:
    """Follow ``path`` of local (namespace-free) element names from ``root``."""
    node: ET.Element | None = root
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if _local(c.tag) == name), None)
    return node


def _custom_values(root: ET.Element) -> dict[str, str]:
    """Key/value pairs of every ``KeyValueOfstringanyType`` entry (CustomData and others)."""
    values: dict[str, str] = {}
    for elem in root.iter():
        if _local(elem.tag).startswith("KeyValueOf"):
            key = _find(elem, "Key")
            value = _find(elem, "Value")
            if key is not None and key.text and value is not None:
                values.setdefault(key.text.strip(), (value.text or "").strip())
    return values


def _fractions(root: ET.Element) -> int | None:
    for elem in root.iter():
        if _local(elem.tag) == "NumberOffractions" and elem.text:
            return int(elem.text)
    return None


def _number(text: str | None, path: Path, field: str) -> float:
    if text is None or not text.strip():
        raise MetadataError(f"{path.name}: missing {field}")
    try:
        return float(text)
    except ValueError:
        raise MetadataError(f"{path.name}: bad {field} {text!r}") from None


def parse_movie_xml(path: Path) -> EpuMetadata:
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise MetadataError(f"{path.name}: unreadable EPU XML ({exc})") from exc
    pix = _find(root, "SpatialScale", "pixelSize", "x", "numericValue")
    volt = _find(root, "microscopeData", "gun", "AccelerationVoltage")
    custom = _custom_values(root)
    n_frac = _fractions(root)
    if n_frac is None or n_frac <= 0:
        raise MetadataError(f"{path.name}: missing NumberOffractions")
    pixel_size = _number(pix.text if pix is not None else None, path, "pixel size") * 1e10
    voltage = _number(volt.text if volt is not None else None, path, "voltage") / 1000.0
    dose = _number(custom.get("Dose"), path, "Dose") * 1e-20
    applied = custom.get("AppliedDefocus")
    exposure = _find(root, "microscopeData", "acquisition", "camera", "ExposureTime")
    when = _find(root, "microscopeData", "acquisition", "acquisitionDateTime")
    foil = re.search(r"FoilHole_(\d+)", path.name)
    return EpuMetadata(
        pixel_size=pixel_size,
        voltage=voltage,
        total_dose=dose,
        n_fractions=n_frac,
        dose_per_frame=dose / n_frac,
        applied_defocus=-_number(applied, path, "AppliedDefocus") * 1e10 if applied else None,
        exposure_time=float(exposure.text) if exposure is not None and exposure.text else None,
        timestamp=when.text.strip() if when is not None and when.text else None,
        grid_square=grid_square_of(path.as_posix()),
        foil_hole=foil.group(1) if foil else None,
    )
