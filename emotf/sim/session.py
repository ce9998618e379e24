"""Simulate an EPU session: movies + XML + gain + ``ground_truth.json``.

Ground truth (numpy orientation: x = column, y = row):
``movies[<path relative to the session>] = {kind: good|corrupt|truncated, defocus_u,
defocus_v, angle (deg, CTFFIND convention), drift: [[dx, dy], ...] (px, content displacement
of frame i relative to frame 0), particles: [[x, y], ...] (px)}``.
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

from ..ctf.model import Defocus, Optics
from .epu_writer import (
    XmlFields,
    corrupt,
    encode_movie,
    movie_xml,
    truncate,
    write_gain,
    write_growing,
)
from .physics import (
    clean_image_ft,
    count_frames,
    drift_trajectory,
    make_protein,
    particle_phase,
    place_particles,
)

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


@dataclass
class SessionTruth:
    root: Path
    params: SimParams
    movies: dict[str, dict[str, Any]]

    @property
    def particle_diameter(self) -> float:
        return self.params.particle_diameter

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
            "shape": [p.size, p.size],
            "format": p.format,
            "gain": "gain.mrc" if p.gain else None,
            "particle_diameter": p.particle_diameter,
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
        self.protein = make_protein(params.particle_diameter, self.rng)
        self.truth = SessionTruth(self.root, params, {})
        self.count = 0
        shape = (params.size, params.size)
        self.sensitivity = self.rng.uniform(0.85, 1.15, shape) if params.gain else None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "EpuSession.dm").write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n<EpuSessionXml><DoseFractionsOutputFormat>'
            + ("Tiff Lzw Non-Gain normalized" if params.format == "tiff" else "Mrc")
            + "</DoseFractionsOutputFormat></EpuSessionXml>\n"
        )
        if self.sensitivity is not None:
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

    def _draw_defocus(self) -> Defocus:
        p, rng = self.params, self.rng
        mean = rng.uniform(*p.defocus_range)
        astig = rng.uniform(*p.astigmatism_range)
        return Defocus(mean + astig / 2, mean - astig / 2, rng.uniform(-90, 90)).normalised()

    def movie(self, kind: str = "good", chunks: int = 1, seconds: float = 0.0) -> str:
        """Write the next movie (and its XML); return its key. ``kind``: good/corrupt/truncated."""
        p, rng = self.params, self.rng
        shape = (p.size, p.size)
        defocus = self._draw_defocus()
        n_particles = max(1, round(p.particles_per_mpx * p.size * p.size / 1024**2))
        centres = place_particles(shape, p.particle_diameter / p.pixel_size, n_particles, rng)
        phase = particle_phase(shape, self.protein, centres, p.pixel_size, p.particle_phase, rng)
        phase += rng.normal(0.0, p.ice_phase_std, shape)
        optics = Optics(p.voltage, p.cs, p.amplitude_contrast)
        spectrum = clean_image_ft(phase, p.pixel_size, defocus, optics, p.bfactor)
        drift = drift_trajectory(p.n_frames, rng, p.drift_total)
        counts = p.dose_per_frame * p.pixel_size**2
        frames = count_frames(spectrum, shape, drift, counts, self.sensitivity, rng)
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
            defocus.mean,
            p.n_frames * 0.05,
            dt.datetime.now(dt.UTC).isoformat(),
        )
        (self.root / xml_key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / xml_key).write_text(movie_xml(fields))
        self.truth.movies[key] = {
            "kind": kind,
            "defocus_u": defocus.u,
            "defocus_v": defocus.v,
            "angle": defocus.angle,
            "drift": drift.round(4).tolist(),
            "particles": centres.round(2).tolist(),
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
