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
    super_resolution_factor: int | None = None  # CameraSpecificInput SuperResolutionFactor
    detector: str | None = None  # DetectorCommercialName, e.g. "BioQuantum K3"
    readout_area: tuple[int, int] | None = None  # camera ReadoutArea (width, height)

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


def _text_of(root: ET.Element, name: str) -> str | None:
    for elem in root.iter():
        if _local(elem.tag) == name and elem.text and elem.text.strip():
            return elem.text.strip()
    return None


def _readout_area(root: ET.Element) -> tuple[int, int] | None:
    area = next((e for e in root.iter() if _local(e.tag) == "ReadoutArea"), None)
    if area is None:
        return None
    width, height = _find(area, "width"), _find(area, "height")
    try:
        return int(width.text or ""), int(height.text or "")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return None


def _int_or_none(text: str | None, path: Path, field: str) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(float(text))
    except ValueError:
        raise MetadataError(f"{path.name}: bad {field} {text!r}") from None


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
        super_resolution_factor=_int_or_none(
            custom.get("SuperResolutionFactor") or _text_of(root, "SuperResolutionFactor"),
            path,
            "SuperResolutionFactor",
        ),
        detector=custom.get("DetectorCommercialName") or _text_of(root, "DetectorCommercialName"),
        readout_area=_readout_area(root),
    )


# Frames as saved in counting mode (width, height); super-resolution frames are twice as
# large along each axis. Falcon 3/4/4i have no super-resolution frames (EER sub-pixels are
# rendered on request, see ``--eer_upsampling``).
COUNTING_SIZES = {"K3": (5760, 4092), "K2": (3838, 3710)}


@dataclass(frozen=True)
class FramePixelSize:
    """Pixel size of a movie's saved frames and how it was decided."""

    pixel_size: float  # Å, of the frames as saved
    super_resolution_factor: int  # frames per physical pixel along an axis (1: counting)
    rule: str
    warning: str | None = None


def detector_family(name: str | None) -> str | None:
    text = (name or "").upper()
    return next((family for family in COUNTING_SIZES if family in text), None)


def _ratio(frame: tuple[int, int], reference: tuple[int, int]) -> float | None:
    """Linear size ratio frame/reference when both axes agree (either orientation)."""
    for ref in (reference, reference[::-1]):
        if ref[0] > 0 and ref[1] > 0 and frame[0] * ref[1] == frame[1] * ref[0]:
            return frame[0] / ref[0]
    return None


def frame_pixel_size(meta: EpuMetadata, nx: int, ny: int) -> FramePixelSize:
    """Pixel size of the saved frames from the XML *and* the frame size.

    The XML pixel size is the physical (counting) pixel; ``SuperResolutionFactor`` there says
    what the camera can do, not what was saved. The frame size settles it: compared with the
    detector's counting size (K3 5760×4092, K2 3838×3710) or else with the XML
    ``ReadoutArea``, a ratio of 1 means counting frames (XML pixel size), a ratio equal to
    the super-resolution factor (2 if the XML gives none) means super-resolution frames
    (XML pixel size / factor). Without either reference the XML pixel size is kept.
    """
    xml_factor = meta.super_resolution_factor or 1
    family = detector_family(meta.detector)
    refs: list[tuple[str, tuple[int, int]]] = []
    if family is not None:
        refs.append((f"{family} counting size", COUNTING_SIZES[family]))
    if meta.readout_area is not None:
        refs.append(("XML ReadoutArea", meta.readout_area))
    sr = xml_factor if xml_factor > 1 else 2
    for source, ref in refs:
        ratio = _ratio((nx, ny), ref)
        where = f"frames {nx}x{ny} vs {source} {ref[0]}x{ref[1]}"
        if ratio == 1:
            warning = None
            if xml_factor > 1:
                warning = (
                    f"XML SuperResolutionFactor {xml_factor} but counting-size frames "
                    f"({where}): frames taken as counting, {meta.pixel_size:.4f} Å"
                )
            return FramePixelSize(meta.pixel_size, 1, f"counting: {where}", warning)
        if ratio == sr:
            warning = None
            if xml_factor == 1:
                warning = (
                    f"XML has no SuperResolutionFactor but super-resolution frames ({where}):"
                    f" pixel size {meta.pixel_size:.4f} / {sr} Å"
                )
            return FramePixelSize(meta.pixel_size / sr, sr, f"super-resolution: {where}", warning)
    warning = None
    if xml_factor > 1:
        warning = (
            f"XML SuperResolutionFactor {xml_factor} but frames {nx}x{ny} match no known "
            f"size of {meta.detector or 'this detector'}: XML pixel size kept"
        )
    return FramePixelSize(meta.pixel_size, 1, "XML pixel size (frame size not decisive)", warning)
