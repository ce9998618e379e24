"""Session-wide RELION STAR files, merged from every finished batch's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config
from .curation import curate
from .progress import ProgressReader
from .star import write_coordinate_index, write_micrographs_star, write_movies_star


def write_session_stars(
    out_dir: Path, config: Config, records: list[dict[str, Any]] | None = None
) -> dict[str, int]:
    """(Re)write movies/micrographs/micrographs_ctf/autopick STAR files; return row counts."""
    out_dir = Path(out_dir)
    if records is None:
        records = ProgressReader(out_dir).results()
    acq = config["acquisition"]
    binning = float(config["motioncor"]["bin_factor"])
    with_movie = {r["key"]: r for r in records if "movie" in r}
    with_mic = {k: r for k, r in with_movie.items() if "micrograph" in r}
    with_ctf = {k: r for k, r in with_mic.items() if "defocus_u" in r}
    with_coords = {k: r for k, r in with_mic.items() if "coordinates" in r}
    write_movies_star(out_dir / "movies.star", with_movie, acq)
    write_micrographs_star(out_dir / "micrographs.star", with_mic, acq, binning=binning)
    write_micrographs_star(
        out_dir / "micrographs_ctf.star", with_ctf, acq, with_ctf=True, binning=binning
    )
    write_coordinate_index(out_dir / "autopick.star", with_coords)
    accepted, _rejected = curate(list(with_ctf.values()), config.get("curation", {}))
    write_micrographs_star(
        out_dir / "micrographs_accepted.star",
        {r["key"]: r for r in accepted},
        acq,
        with_ctf=True,
        binning=binning,
    )
    return {
        "movies": len(with_movie),
        "micrographs": len(with_mic),
        "ctf": len(with_ctf),
        "coordinates": len(with_coords),
        "accepted": len(accepted),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m emotf.outputs FOLDER``: rewrite a folder's session STAR files and report."""
    import logging
    import sys

    from .config import read_config
    from .report import write_report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    folder = Path((sys.argv[1:] if argv is None else argv)[0])
    config = read_config(folder / "config.yaml")
    write_session_stars(folder, config)
    try:
        write_report(folder, config)
    except Exception:  # the STAR files are written; a report problem is only logged
        logging.getLogger(__name__).exception("report.html not updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
