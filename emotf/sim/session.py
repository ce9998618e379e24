"""Simulate an EPU session: movies + XML + gain + ``ground_truth.json``.

Ground truth (numpy orientation: x = column, y = row):
``movies[<path relative to the session>] = {kind: good|corrupt|truncated, defocus_u,
defocus_v, angle (deg, CTFFIND convention), drift: [[dx, dy], ...] (px, content displacement
of frame i relative to frame 0), particles: [[x, y], ...] (px)}``.

``realism="realistic"`` (``emotf.sim.realism``, ``render``, ``detector``) adds per movie:
``bfactor``, ``ice_thickness`` (Å, mean), ``ice_gradient``, ``carbon`` (hole centre and radius
px, carbon area fraction; absent without carbon), ``contamination`` ([[x, y, r px]]),
``local_motion`` (polynomial coefficients and per-frame scale), and per session the
``detector``, the gain's defects and the particle's molecular weight and mean phase.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .detector import DETECTORS, GainModel, structured_gain
from .epu_writer import (
    XmlFields,
    corrupt,
    encode_movie,
    movie_xml,
    truncate,
    write_gain,
    write_growing,
)
from .optics import Aberrations
from .physics import (
    clean_image_ft,
    count_frames,
    drift_trajectory,
    make_protein,
    particle_phase,
    place_particles,
)
from .realism import (
    LocalMotion,
    make_specimen,
    particle_mean_phase,
)
from .realism import (
    particle_diameter as diameter_of_mw,
)
from .render import render_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimParams:
    size: int = 1024
    n_frames: int = 20
    pixel_size: float = 1.0  # Å
    dose_per_frame: float = 1.5  # e/Å²
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.07
    format: str = "tiff"  # tiff | mrc
    gain: bool = True
    defocus_range: tuple[float, float] = (10000.0, 25000.0)
    astigmatism_range: tuple[float, float] = (0.0, 1200.0)
    particle_diameter: float = 150.0  # Å
    particle_phase: float = 0.12  # rad, mean over a particle
    particles_per_mpx: float = 24.0  # per 1024² pixels
    ice_phase_std: float = 0.06
    bfactor: float = 60.0
    drift_total: float = 15.0  # px
    movies_per_square: int = 4
    seed: int = 0
    size_y: int | None = None  # rows when the detector is not square (default: size)
    realism: str = "ideal"  # ideal | realistic
    detector: str = "K3"  # K3 | Falcon4i (realistic level)
    molecular_weight: float = 200.0  # kDa (realistic level: contrast and diameter)
    ice_thickness_range: tuple[float, float] = (250.0, 600.0)  # Å, per grid square
    bfactor_range: tuple[float, float] = (50.0, 120.0)  # Å² (realistic level)
    carbon_fraction: float = 0.25  # share of movies with a carbon hole edge
    contamination_mean: float = 0.7  # blobs per movie (Poisson mean)
    local_motion: float = 1.5  # px, largest local deviation at the end of a movie

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size_y or self.size, self.size)

    @property
    def realistic(self) -> bool:
        if self.realism not in ("ideal", "realistic"):
            raise ValueError(f"unknown realism level {self.realism!r}")
        return self.realism == "realistic"

    @property
    def diameter(self) -> float:
        """Particle diameter (Å): derived from the molecular weight on the realistic level."""
        return diameter_of_mw(self.molecular_weight) if self.realistic else self.particle_diameter


@dataclass
class SessionTruth:
    root: Path
    params: SimParams
    movies: dict[str, dict[str, Any]]

    gain_info: dict[str, Any] | None = None

    @property
    def particle_diameter(self) -> float:
        return self.params.diameter

    def to_dict(self) -> dict[str, Any]:
        p = self.params
        return {
            "optics": {
                "voltage": p.voltage,
                "cs": p.cs,
                "amplitude_contrast": p.amplitude_contrast,
            },
            "pixel_size": p.pixel_size,
            "dose_per_frame": p.dose_per_frame,
            "n_frames": p.n_frames,
            "shape": list(p.shape),
            "format": p.format,
            "gain": "gain.mrc" if p.gain else None,
            "gain_info": self.gain_info,
            "realism": p.realism,
            "detector": p.detector if p.realistic else None,
            "particle_diameter": p.diameter,
            "particle_phase": particle_mean_phase(p.molecular_weight, p.voltage)
            if p.realistic
            else p.particle_phase,
            "params": asdict(p),
            "movies": self.movies,
        }

    def write(self) -> None:
        path = self.root / "ground_truth.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)


class SessionSimulator:
    """Produces one movie at a time; used directly for streaming tests."""

    def __init__(self, root: Path, params: SimParams) -> None:
        self.root = Path(root)
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.protein = make_protein(params.diameter, self.rng)
        self.truth = SessionTruth(self.root, params, {})
        self.count = 0
        shape = params.shape
        self.gain_model: GainModel | None = None
        self.square_ice: dict[int, float] = {}
        if params.realistic:
            detector = DETECTORS[params.detector]
            self.gain_model = structured_gain(shape, detector, self.rng) if params.gain else None
            self.sensitivity = None if self.gain_model is None else self.gain_model.sensitivity
            self.truth.gain_info = None if self.gain_model is None else self.gain_model.summary()
        else:
            self.sensitivity = self.rng.uniform(0.85, 1.15, shape) if params.gain else None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "EpuSession.dm").write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n<EpuSessionXml><DoseFractionsOutputFormat>'
            + ("Tiff Lzw Non-Gain normalized" if params.format == "tiff" else "Mrc")
            + "</DoseFractionsOutputFormat></EpuSessionXml>\n"
        )
        if self.gain_model is not None:
            write_gain(self.root / "gain.mrc", self.gain_model.reference())
        elif self.sensitivity is not None:
            write_gain(self.root / "gain.mrc", (1.0 / self.sensitivity).astype(np.float32))
        self.truth.write()

    def _names(self) -> tuple[str, str]:
        n = self.count
        square = 1000 + n // self.params.movies_per_square
        stamp = dt.datetime(2026, 1, 1, 9, 0, 0) + dt.timedelta(seconds=30 * n)
        base = (
            f"Images-Disc1/GridSquare_{square}/Data/FoilHole_{20000 + n}_Data_{30000 + n}_"
            f"{n % 7}_{stamp:%Y%m%d_%H%M%S}"
        )
        suffix = "_fractions.tiff" if self.params.format == "tiff" else "_Fractions.mrc"
        return base + ".xml", base + suffix

    def _draw_defocus(self) -> Aberrations:
        p, rng = self.params, self.rng
        mean = rng.uniform(*p.defocus_range)
        astig = rng.uniform(*p.astigmatism_range)
        return Aberrations.astigmatic(
            mean,
            astig,
            rng.uniform(-90, 90),
            voltage_kv=p.voltage,
            cs_mm=p.cs,
            amplitude_contrast=p.amplitude_contrast,
        )

    def _n_particles(self) -> int:
        p = self.params
        return max(1, round(p.particles_per_mpx * p.shape[0] * p.shape[1] / 1024**2))

    def _ideal(self, defocus: Aberrations) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        p, rng = self.params, self.rng
        shape = p.shape
        centres = place_particles(
            shape, p.particle_diameter / p.pixel_size, self._n_particles(), rng
        )
        phase = particle_phase(shape, self.protein, centres, p.pixel_size, p.particle_phase, rng)
        phase += rng.normal(0.0, p.ice_phase_std, shape)
        spectrum = clean_image_ft(phase, p.pixel_size, defocus, p.bfactor)
        drift = drift_trajectory(p.n_frames, rng, p.drift_total)
        counts = p.dose_per_frame * p.pixel_size**2
        frames = count_frames(spectrum, shape, drift, counts, self.sensitivity, rng)
        return frames, centres, {"drift": drift.round(4).tolist()}

    def _realistic(self, defocus: Aberrations) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        p, rng = self.params, self.rng
        shape = p.shape
        square = self.count // p.movies_per_square
        if square not in self.square_ice:
            self.square_ice[square] = float(rng.uniform(*p.ice_thickness_range))
        specimen = make_specimen(
            shape,
            p.pixel_size,
            p.voltage,
            self.square_ice[square],
            bool(rng.random() < p.carbon_fraction),
            int(rng.poisson(p.contamination_mean)),
            rng,
        )
        diameter_px = p.diameter / p.pixel_size
        candidates = place_particles(shape, diameter_px, 2 * self._n_particles(), rng)
        free = [not specimen.occupied[int(y), int(x)] for x, y in candidates]
        centres = candidates[np.asarray(free, dtype=bool)][: self._n_particles()]
        mean_phase = particle_mean_phase(p.molecular_weight, p.voltage)
        protein = particle_phase(shape, self.protein, centres, p.pixel_size, mean_phase, rng)
        bfactor = float(rng.uniform(*p.bfactor_range))
        drift = drift_trajectory(p.n_frames, rng, p.drift_total)
        local = LocalMotion.draw(p.n_frames, p.local_motion, rng) if p.local_motion else None
        frames = render_frames(
            specimen.phase,
            protein,
            specimen.transmission,
            p.pixel_size,
            defocus,
            bfactor,
            drift,
            local,
            p.dose_per_frame,
            DETECTORS[p.detector],
            self.gain_model,
            rng,
        )
        extra = {
            "drift": drift.round(4).tolist(),
            "bfactor": round(bfactor, 1),
            **specimen.truth,
            "local_motion": None if local is None else local.to_truth(),
        }
        return frames, centres, extra

    def movie(self, kind: str = "good", chunks: int = 1, seconds: float = 0.0) -> str:
        """Write the next movie (and its XML); return its key. ``kind``: good/corrupt/truncated."""
        p = self.params
        defocus = self._draw_defocus()
        make = self._realistic if p.realistic else self._ideal
        frames, centres, extra = make(defocus)
        data = encode_movie(frames, p.format)
        data = (
            corrupt(data) if kind == "corrupt" else truncate(data) if kind == "truncated" else data
        )
        xml_key, key = self._names()
        fields = XmlFields(
            p.pixel_size,
            p.voltage,
            p.dose_per_frame * p.n_frames,
            p.n_frames,
            0.5 * (defocus.defocus_u + defocus.defocus_v),
            p.n_frames * 0.05,
            dt.datetime.now(dt.UTC).isoformat(),
        )
        (self.root / xml_key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / xml_key).write_text(movie_xml(fields))
        self.truth.movies[key] = {
            "kind": kind,
            "defocus_u": defocus.defocus_u,
            "defocus_v": defocus.defocus_v,
            "angle": defocus.angle,
            "particles": centres.round(2).tolist(),
            **extra,
        }
        self.truth.write()  # before the movie appears: truth is complete for any visible movie
        write_growing(self.root / key, data, chunks, seconds)
        self.count += 1
        return key


def simulate_session(
    root: Path,
    params: SimParams,
    n_movies: int,
    n_corrupt: int = 0,
    n_truncated: int = 0,
    interval: float = 0.0,
    stop: threading.Event | None = None,
) -> SessionTruth:
    """Write ``n_movies`` good movies then the bad ones; one every ``interval`` seconds."""
    sim = SessionSimulator(root, params)
    kinds = ["good"] * n_movies + ["corrupt"] * n_corrupt + ["truncated"] * n_truncated
    for i, kind in enumerate(kinds):
        if stop is not None and stop.is_set():
            break
        growing = (4, 1.0) if interval > 0 else (1, 0.0)
        sim.movie(kind, *growing)
        log.info("wrote movie %d/%d (%s)", i + 1, len(kinds), kind)
        if interval > 0 and i + 1 < len(kinds):
            time.sleep(interval)
    return sim.truth
