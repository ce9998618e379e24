"""The ``recorded`` backend — for benchmarks only, never for data.

``benchmarks/scale.py`` runs a 20,000-movie session on a 2-core machine. With
``motioncor/ctffind/cryolo: {backend: recorded}`` and ``recorded: {folder: <processing folder
of a real run>}``, every Snakemake job, step JSON, STAR file and per-movie output file is
real, but the compute of motion correction, CTF estimation and picking is replaced by the
results the real backends produced in that folder, cycled over the movies (movie key →
recorded movie by CRC32, so a movie always replays the same recording).

Per movie, each step writes the files its real CPU backend writes, at the same paths:
``MotionCorr/<batch>/<movie>.mrc``, ``_noDW.mrc`` and ``.star``; ``CtfFind/<batch>/<movie>
.txt``, ``_avrot.txt`` and ``.ctf``; ``AutoPick/<batch>/<micrograph>_autopick.star``.
Images are hard links to the recorded files (copies across filesystems); text outputs are
copies. The step records are then read back from those files by the real backends'
collectors (RELION motion STAR, CTFFIND text, RELION coordinate STAR parsers).
"""

from __future__ import annotations

import os
import shutil
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..fsutil import read_json
from ..views.star import write_micrographs_star, write_movies_star
from . import ctf, motioncor, picking
from .base import Record, StepContext, StepError, StepOutput

Recording = tuple[Path, tuple[dict[str, Any], ...]]


@lru_cache(maxsize=4)
def _load(folder: str) -> Recording:
    root = Path(folder)
    records: list[dict[str, Any]] = []
    for path in sorted((root / "Results").glob("b*.json")):
        records.extend(m for m in read_json(path)["movies"] if m.get("state") == "done")
    if not records:
        raise StepError(f"recorded backend: no finished movie in {root}/Results")
    return root, tuple(sorted(records, key=lambda m: str(m["key"])))


def recording(config: dict[str, Any]) -> Recording:
    """The recorded run named by ``config['recorded']['folder']`` (its finished movies)."""
    folder = (config.get("recorded") or {}).get("folder")
    if not folder:
        raise StepError("backend 'recorded' needs recorded.folder (a real run's processing folder)")
    return _load(os.path.abspath(folder))


def recorded_movie(config: dict[str, Any], key: str) -> tuple[Path, dict[str, Any]]:
    """The recorded movie replayed for ``key`` (stable: the same key, the same recording)."""
    root, records = recording(config)
    return root, records[zlib.crc32(key.encode()) % len(records)]


def place(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``: a hard link when possible, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def run_motioncor(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    folder = motioncor.step_dir(ctx.batch)
    write_movies_star(folder / "movies_g0.star", rows, ctx.config["acquisition"])
    for key, row in rows.items():
        root, rec = recorded_movie(ctx.config, key)
        stem = folder / Path(row["movie"]).with_suffix("")
        place(root / rec["micrograph"], Path(f"{stem}.mrc"))
        place(root / rec["micrograph_nodw"], Path(f"{stem}_noDW.mrc"))
        place(root / rec["motion_star"], Path(f"{stem}.star"))
        if not motioncor._collect_relion(ctx, out, key, row):
            out.fail(key, "recorded motion correction output missing")


def run_ctffind(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    for key, row in rows.items():
        root, rec = recorded_movie(ctx.config, key)
        source = root / str(rec["ctf_txt"])[: -len(".txt")]
        stem = ctf.out_stem(ctx.batch, row)
        for suffix in (".txt", "_avrot.txt", ".ctf"):
            place(Path(f"{source}{suffix}"), Path(f"{stem}{suffix}"))
        ctf.collect_ctffind(out, key, stem)


def run_picking(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    folder = picking.step_dir(ctx.batch)
    write_micrographs_star(
        folder / "micrographs_all.star",
        rows,
        ctx.config["acquisition"],
        binning=float(ctx.config["motioncor"]["bin_factor"]),
    )
    for key, row in rows.items():
        root, rec = recorded_movie(ctx.config, key)
        coords = picking.coordinates_path(ctx.batch, row["micrograph"])
        place(root / rec["coordinates"], coords)
        if not picking._collect(out, key, coords):
            out.fail(key, "recorded picking output missing")


def _recorded_particles(root: Path, rec: dict[str, Any]) -> Any:
    """The recorded run's particle rows of one micrograph (and its optics block)."""
    from ..parsers.relion import read_star

    blocks = read_star(root / str(rec["particles_star"]))
    table = blocks["particles"]
    return table[table["rlnMicrographName"] == rec["micrograph"]], blocks.get("optics")


def run_extract(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    """Replay extraction: each movie gets the recorded movie's particle stack and rows."""
    import pandas as pd

    from ..fsutil import atomic_write_star
    from . import extract

    parts, optics = [], None
    for key, row in rows.items():
        root, rec = recorded_movie(ctx.config, key)
        if not rec.get("particles_star"):
            out.fail(key, "recorded extraction output missing")
            continue
        table, optics = _recorded_particles(root, rec)
        stack = extract.step_dir(ctx.batch) / Path(row["micrograph"]).with_suffix(".mrcs")
        place(root / str(rec["particle_stack"]), stack)
        table = table.assign(
            rlnMicrographName=row["micrograph"],
            rlnImageName=[f"{n.split('@')[0]}@{stack.as_posix()}" for n in table["rlnImageName"]],
        )
        parts.append(table)
        out.succeed(
            key,
            particles_extracted=len(table),
            particles_star=ctx.outputs["star"].as_posix(),
            particle_stack=stack.as_posix(),
            extract_box=rec["extract_box"],
            extract_pixel_size=rec["extract_pixel_size"],
        )
    blocks = {"optics": optics} if optics is not None else {}
    blocks["particles"] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    atomic_write_star(ctx.outputs["star"], blocks)
