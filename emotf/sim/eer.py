"""Write Falcon 4/4i EER movies and EER gain references (public format, as EPU writes them).

An EER movie is a TIFF with one page per raw detector frame (4096×4096, the size RELION 3.1
requires), each page one strip compressed with TIFF compression 65001 ("EER v1"): a bit
stream, least significant bit first, of 7-bit run lengths each followed by a 4-bit sub-pixel
symbol. A run ``p`` < 127 skips ``p`` empty pixels and places an electron on the next pixel,
whose symbol follows; ``p`` = 127 skips 127 pixels with no electron and no symbol. The runs of
a frame add up to exactly width × height pixels. The symbol is ``(ysub << 2 | xsub) ^ 0x0A``
(2 horizontal and 2 vertical sub-pixel bits). Compression 65000 uses 8-bit runs, 65002 takes
the depths from tags 65007–65009; this writer uses 65001, which RELION 3.1, MotionCor2/3 and
``tifffile``/``imagecodecs`` all read.

EER gain references (``*.gain``) are TIFF float32 images of the detector size holding a
*multiplicative* gain (RELION: "is_multiplicative" for the ``.gain`` extension).

Electrons of a simulated movie: each rendered fraction's count image is split at random into
``group`` raw frames (each electron lands in one raw frame), so summing ``group`` raw frames
(``--eer_grouping`` / ``-FmIntFile``) gives the fraction back.
"""

from __future__ import annotations

import datetime as dt
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from .epu_writer import XmlFields, corrupt, movie_xml, truncate, write_growing
from .session import SessionSimulator, SessionTruth, SimParams

EER_SIZE = 4096
COMPRESSION_EER_V1 = 65001
RUN_BITS = 7
SYMBOL_BITS = 4
MAX_RUN = (1 << RUN_BITS) - 1  # 127: "skip 127, no electron"
SYMBOL_XOR = 0x0A


def _put(bits: NDArray[np.uint8], offsets: NDArray[np.int64], values: NDArray[np.int64],
         width: int) -> None:  # fmt: skip
    for k in range(width):
        bits[offsets + k] = (values >> k) & 1


def encode_frame(positions: NDArray[np.int64], n_pixels: int,
                 symbols: NDArray[np.int64] | None = None) -> bytes:  # fmt: skip
    """One EER v1 frame: electrons at sorted, distinct flat pixel ``positions``."""
    pos = np.asarray(positions, dtype=np.int64)
    if pos.size and (pos[0] < 0 or pos[-1] >= n_pixels or np.any(np.diff(pos) <= 0)):
        raise ValueError("electron positions must be sorted, distinct and inside the frame")
    sym = np.zeros(pos.size, np.int64) if symbols is None else np.asarray(symbols, np.int64)
    ends = np.concatenate(([0], pos + 1))  # pixel after the previous electron
    gaps = pos - ends[:-1]
    tail = n_pixels - int(ends[-1])  # pixels after the last electron
    n_skip = gaps // MAX_RUN
    tail_skip = max(0, -(-tail // MAX_RUN) - 1)  # 127-runs before the last (1..127 or 0) run
    # stream: per electron n_skip×7 bits, 7 + 4 bits; then tail_skip×7, 7 bits
    per_electron = n_skip * RUN_BITS + RUN_BITS + SYMBOL_BITS
    starts = np.concatenate(([0], np.cumsum(per_electron)))
    total_bits = int(starts[-1]) + (tail_skip + 1) * RUN_BITS
    padded = -(-(total_bits + 16) // 16) * 16  # even byte count, 2+ spare bytes: readers
    bits = np.zeros(padded, np.uint8)  # fetch 32-bit words and imagecodecs needs even sizes
    run_at = starts[:-1] + n_skip * RUN_BITS
    _put(bits, run_at, gaps - n_skip * MAX_RUN, RUN_BITS)
    _put(bits, run_at + RUN_BITS, sym ^ SYMBOL_XOR, SYMBOL_BITS)
    owner = np.repeat(np.arange(pos.size), n_skip)  # the electron each 127-run precedes
    if owner.size:
        first = np.repeat(np.cumsum(n_skip) - n_skip, n_skip)
        offsets = starts[:-1][owner] + (np.arange(owner.size) - first) * RUN_BITS
        _put(bits, offsets, np.full(offsets.size, MAX_RUN, np.int64), RUN_BITS)
    tail_at = int(starts[-1])
    for k in range(tail_skip):
        _put(bits, np.array([tail_at + k * RUN_BITS]), np.array([MAX_RUN]), RUN_BITS)
    last = tail - tail_skip * MAX_RUN
    _put(bits, np.array([tail_at + tail_skip * RUN_BITS]), np.array([last]), RUN_BITS)
    return np.packbits(bits, bitorder="little").tobytes()


def split_fraction(counts: NDArray[np.integer], group: int,
                   rng: np.random.Generator) -> list[NDArray[np.int64]]:  # fmt: skip
    """Flat electron positions of ``group`` raw frames whose sum is ``counts`` (at most one
    electron per pixel per raw frame: a counting detector; rare extra hits are dropped)."""
    flat = np.asarray(counts, dtype=np.int64).ravel()
    where = np.repeat(np.arange(flat.size, dtype=np.int64), np.maximum(flat, 0))
    frame = rng.integers(0, group, where.size)
    return [np.unique(where[frame == g]) for g in range(group)]


def eer_metadata(n_frames: int, size: int, exposure_time: float, dose_per_frame: float) -> bytes:
    """The acquisition metadata XML EER files carry in tag 65001 of the first page."""
    items = [
        ("numberOfFrames", "", str(n_frames)),
        ("sensorImageWidth", ' unit="pixel"', str(size)),
        ("sensorImageHeight", ' unit="pixel"', str(size)),
        ("exposureTime", ' unit="s"', f"{exposure_time:.6g}"),
        ("meanDosePerFrame", ' unit="e/A^2"', f"{dose_per_frame:.6g}"),
    ]
    body = "".join(f'<item name="{k}"{u}>{v}</item>' for k, u, v in items)
    return f"<metadata>{body}</metadata>".encode()


_SHORT, _LONG8, _UNDEFINED = 3, 16, 7


def _ifd(size: int, offset: int, nbytes: int, extra: list[tuple[int, int, int, int]],
         next_ifd: int) -> bytes:  # fmt: skip
    """A little-endian BigTIFF IFD for one EER page (one strip)."""
    tags = [
        (256, _LONG8, 1, size),  # ImageWidth
        (257, _LONG8, 1, size),  # ImageLength
        (258, _SHORT, 1, 8),  # BitsPerSample (of the decoded image)
        (259, _SHORT, 1, COMPRESSION_EER_V1),  # Compression
        (262, _SHORT, 1, 1),  # PhotometricInterpretation: min-is-black
        (273, _LONG8, 1, offset),  # StripOffsets
        (277, _SHORT, 1, 1),  # SamplesPerPixel
        (278, _LONG8, 1, size),  # RowsPerStrip
        (279, _LONG8, 1, nbytes),  # StripByteCounts
        *extra,
    ]
    body = b"".join(struct.pack("<HHQQ", *tag) for tag in sorted(tags))
    return struct.pack("<Q", len(tags)) + body + struct.pack("<Q", next_ifd)


def write_eer(path: Path, frames: Iterable[NDArray[np.int64]], size: int = EER_SIZE,
              metadata: bytes | None = None) -> int:  # fmt: skip
    """Write raw frames (flat electron positions each) as an EER movie; return the count.

    A BigTIFF, as EPU writes EER; the first page carries ``metadata`` (XML, tag 65001).
    Layout per page: the strip, then its IFD; each IFD points to the next (0 ends).
    tifffile cannot write compression 65001, so the TIFF structure is written here.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as out:
        out.write(b"II+\x00" + struct.pack("<HHQ", 8, 0, 0))  # first IFD offset patched below
        link_at = 8  # where the offset of the next IFD must be written
        extra: list[tuple[int, int, int, int]] = []
        if metadata:
            extra = [(65001, _UNDEFINED, len(metadata), out.tell())]
            out.write(metadata + b"\x00" * (len(metadata) % 2))
        for positions in frames:
            strip = encode_frame(positions, size * size)
            offset = out.tell()
            out.write(strip)  # even length: IFDs start on a word boundary
            ifd_at = out.tell()
            out.write(_ifd(size, offset, len(strip), extra if n == 0 else [], 0))
            end = out.tell()
            out.seek(link_at)
            out.write(struct.pack("<Q", ifd_at))
            out.seek(end)
            link_at = end - 8
            n += 1
    if n == 0:
        raise ValueError(f"{path}: an EER movie needs at least one frame")
    return n


def write_eer_gain(path: Path, gain: NDArray[np.floating]) -> None:
    """A Falcon ``.gain`` reference: TIFF float32, multiplicative."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(gain, dtype=np.float32), photometric="minisblack")


def read_eer_frames(path: Path) -> NDArray[np.uint8]:
    """All raw frames decoded (tifffile + imagecodecs' EER decoder): for tests and checks."""
    return np.asarray(tifffile.imread(path))


def fraction_electrons(counts: NDArray[np.integer], upsample: int, group: int,
                       rng: np.random.Generator) -> list[NDArray[np.int64]]:  # fmt: skip
    """Raw EER frames (flat positions on the ``upsample``× finer detector grid) of one fraction.

    Every electron counted in a simulated pixel lands on one of its ``upsample``² detector
    pixels and in one of ``group`` raw frames, at random; a second electron on the same
    detector pixel of the same raw frame is lost, as on a counting detector.
    """
    h, w = counts.shape
    fine_w = w * upsample
    n_fine = h * upsample * fine_w
    coarse = np.repeat(np.arange(h * w, dtype=np.int64), np.maximum(counts.ravel(), 0))
    sub = rng.integers(0, upsample * upsample, coarse.size)
    y = (coarse // w) * upsample + sub // upsample
    x = (coarse % w) * upsample + sub % upsample
    key = rng.integers(0, group, coarse.size) * n_fine + y * fine_w + x
    key.sort()
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    bounds = np.searchsorted(key, np.arange(group + 1, dtype=np.int64) * n_fine)
    return [key[a:b] - g * n_fine for g, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]


def encode_eer_movie(fractions: NDArray[np.integer], upsample: int, group: int,
                     rng: np.random.Generator, dose_per_raw_frame: float = 0.0,
                     frame_time: float = 0.004) -> bytes:  # fmt: skip
    """The bytes of an EER movie whose ``group``-frame sums are the simulated ``fractions``."""
    size = fractions.shape[-1] * upsample
    if fractions.shape[-2] * upsample != size:
        raise ValueError(f"EER frames are square; fractions are {fractions.shape[-2:]}")
    n_raw = len(fractions) * group
    raws = (raw for frac in fractions for raw in fraction_electrons(frac, upsample, group, rng))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.eer"
        meta = eer_metadata(n_raw, size, n_raw * frame_time, dose_per_raw_frame)
        write_eer(path, raws, size, meta)
        return path.read_bytes()


class EerTruth(SessionTruth):
    """Ground truth of an EER session: pixel size, frames, drift and gain of the detector."""

    upsample: int = 4
    group: int = 8

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        p, u = self.params, self.upsample
        data.update(
            format="eer",
            pixel_size=p.pixel_size / u,
            n_frames=p.n_frames * self.group,
            dose_per_frame=p.dose_per_frame / self.group,
            shape=[p.shape[0] * u, p.shape[1] * u],
            gain="gain.gain" if p.gain else None,
            eer={"upsample": u, "grouping": self.group, "fractions": p.n_frames},
        )
        return data


class EerSessionSimulator(SessionSimulator):
    """A Falcon 4i EER session from the ideal simulator, on a detector ``upsample``× finer.

    ``params`` describe the rendered fractions (``n_frames`` of ``pixel_size``): each is split
    into ``group`` raw EER frames on a ``size × upsample`` detector (4096 for size 1024 and
    upsample 4), pixel ``pixel_size / upsample``. Truth drift and particles are in detector
    pixels, the movie's (micrographs binned by ``upsample`` are in simulation pixels).
    """

    def __init__(self, root: Path, params: SimParams, group: int = 8, upsample: int = 4) -> None:
        if params.realistic or params.shape != (EER_SIZE // upsample, EER_SIZE // upsample):
            raise ValueError(f"EER simulation needs the ideal level and size×upsample {EER_SIZE}")
        super().__init__(root, replace(params, format="eer"))
        self.group, self.upsample = group, upsample
        self.truth = EerTruth(self.root, self.params, {})
        self.truth.upsample, self.truth.group = upsample, group
        (self.root / "EpuSession.dm").write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n<EpuSessionXml><DoseFractionsOutputFormat>'
            "EER</DoseFractionsOutputFormat></EpuSessionXml>\n"
        )
        (self.root / "gain.mrc").unlink(missing_ok=True)  # written by the base class
        if self.sensitivity is not None:
            fine = np.kron(1.0 / self.sensitivity, np.ones((upsample, upsample)))
            write_eer_gain(self.root / "gain.gain", fine)
        self.truth.write()

    def _names(self) -> tuple[str, str]:
        xml, movie = super()._names()
        return xml, movie.replace("_Fractions.mrc", "_EER.eer")

    def movie(self, kind: str = "good", chunks: int = 1, seconds: float = 0.0) -> str:
        p, u = self.params, self.upsample
        defocus = self._draw_defocus()
        frames, centres, extra = self._ideal(defocus)
        dose_raw = p.dose_per_frame / self.group
        data = encode_eer_movie(frames, u, self.group, self.rng, dose_raw)
        data = (
            corrupt(data) if kind == "corrupt" else truncate(data) if kind == "truncated" else data
        )
        xml_key, key = self._names()
        n_raw = p.n_frames * self.group
        fields = XmlFields(
            p.pixel_size / u,
            p.voltage,
            p.dose_per_frame * p.n_frames,
            n_raw,
            0.5 * (defocus.defocus_u + defocus.defocus_v),
            n_raw * 0.004,
            dt.datetime.now(dt.UTC).isoformat(),
        )
        (self.root / xml_key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / xml_key).write_text(movie_xml(fields))
        extra["drift"] = (np.asarray(extra["drift"]) * u).round(4).tolist()
        self.truth.movies[key] = {
            "kind": kind,
            "defocus_u": defocus.defocus_u,
            "defocus_v": defocus.defocus_v,
            "angle": defocus.angle,
            "particles": (centres * u).round(2).tolist(),
            **extra,
        }
        self.truth.write()
        write_growing(self.root / key, data, chunks, seconds)
        self.count += 1
        return key


def simulate_eer_session(root: Path, params: SimParams, n_movies: int, n_corrupt: int = 0,
                         n_truncated: int = 0, group: int = 8) -> SessionTruth:  # fmt: skip
    """Write an EER session: ``n_movies`` good movies, then corrupt and truncated ones."""
    sim = EerSessionSimulator(root, params, group)
    for kind in ["good"] * n_movies + ["corrupt"] * n_corrupt + ["truncated"] * n_truncated:
        sim.movie(kind)
    return sim.truth
