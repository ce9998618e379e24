"""``extra.raw`` from emotf.emhub.raw_stats against what EMhub's own stock worker computes
(emtools' ``MovieFiles``, run in the EMhub server venv) on the same simulated EPU folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from runs import scandir_calls

from emotf.emhub.raw_stats import pretty_size, raw_info
from emotf.sim import SimParams, simulate_session

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("EMOTF_EMHUB_VENV", ROOT / ".venv-emhub"))
STOCK = (
    "import json, sys\n"
    "from emtools.metadata import MovieFiles\n"
    "from emtools.utils import Pretty\n"
    "mf = MovieFiles()\n"
    "mf.scan(sys.argv[1])\n"
    "info = mf.info()\n"
    "info['pretty'] = [Pretty.size(n) for n in json.loads(sys.argv[2])]\n"
    "print(json.dumps(info, default=str))\n"
)
SIZES = [0, 1, 2, 1023, 1024, 1536, 10**6, 5 * 1024**2, 3 * 1024**3 + 7, 2 * 1024**4]


@pytest.mark.skipif(not (VENV / "bin" / "python").exists(), reason="EMhub venv not installed")
def test_raw_info_matches_the_stock_monitor(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    simulate_session(raw, SimParams(size=256, n_frames=4, gain=False), 5)
    (raw / "Images-Disc1" / "GridSquare_1000" / "GridSquare_1000.jpg").write_bytes(b"x" * 300)
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", STOCK, str(raw), json.dumps(SIZES)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    stock = json.loads(out)
    ours = raw_info(raw)
    assert [pretty_size(n) for n in SIZES] == stock.pop("pretty")
    assert set(ours) == set(stock)
    for key in ("files", "files_total", "size", "sizeH", "movies", "duration"):
        assert ours[key] == stock[key], key
    for key in ("first_file", "last_file", "first_movie", "last_movie"):
        assert ours[key] == stock[key], key  # relative to the raw folder, as the stock one
        assert ours[f"{key}_creation"] == stock[f"{key}_creation"], key


def test_missing_folder_counts_nothing_without_none(tmp_path: Path) -> None:
    info = raw_info(tmp_path / "not-yet")
    assert info["files"] == {} and info["movies"] == 0 and info["size"] == 0
    assert None not in info.values()  # EMhub stores events in Redis, which refuses None


def _file(path: Path, size: int, mtime: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _age_dirs(root: Path, mtime: float) -> None:
    """Folders last modified long ago, as in a long session (so only real changes re-list)."""
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (mtime, mtime))


def _epu(raw: Path, squares: int, movies: int, old: float) -> None:
    for g in range(squares):
        data = raw / "Images-Disc1" / f"GridSquare_{g}" / "Data"
        for m in range(movies):
            stem = data / f"FoilHole_{g}_Data_{m}"
            _file(Path(f"{stem}_fractions.tiff"), 100 + m, old + g * 60 + m)
            _file(Path(f"{stem}.xml"), 10, old + g * 60 + m)
        _file(data.parent / f"GridSquare_{g}.jpg", 7, old)  # ties on the time: path decides
    _file(raw / ".transfer-ledger", 5, old)  # hidden: not counted


def test_incremental_walk_equals_the_full_walk(tmp_path: Path) -> None:
    from emotf.emhub.raw_walker import RawWalker

    raw, old = tmp_path / "raw", time.time() - 7200
    _epu(raw, 3, 4, old)
    _age_dirs(raw, old)
    walker = RawWalker()
    assert walker.info(raw) == raw_info(raw)
    data0 = raw / "Images-Disc1" / "GridSquare_0" / "Data"
    _file(data0 / "FoilHole_0_Data_9_fractions.tiff", 55, old + 5)  # an old folder (rsync -t)
    _file(raw / "Images-Disc1" / "GridSquare_7" / "Data" / "FoilHole_7_Data_0.eer", 9, None)
    assert walker.info(raw) == raw_info(raw)
    growing = raw / "Images-Disc1" / "GridSquare_1" / "Data" / "FoilHole_1_Data_8.eer"
    _file(growing, 3, None)
    _age_dirs(raw, old + 100)  # listed once more; from now its folder's mtime is unchanged
    assert walker.info(raw) == raw_info(raw)
    with growing.open("ab") as handle:
        handle.write(b"y" * 1000)
    assert walker.info(raw)["size"] == raw_info(raw)["size"]
    assert walker.info(raw) == raw_info(raw)
    (data0 / "FoilHole_0_Data_0.xml").unlink()
    assert walker.info(raw) == raw_info(raw)
    shutil.rmtree(raw / "Images-Disc1" / "GridSquare_2")
    info = walker.info(raw)
    assert info == raw_info(raw) and info["movies"] == 4 + 5 + 4 + 1 + 1 - 4


def test_unchanged_folders_are_not_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emotf.emhub import raw_walker

    raw, old = tmp_path / "raw", time.time() - 7200
    _epu(raw, 4, 3, old)
    _age_dirs(raw, old)
    walker = raw_walker.RawWalker()
    walker.info(raw)
    listed = scandir_calls(monkeypatch)
    walker.info(raw)
    assert listed == []  # nothing changed: no folder listed
    data = raw / "Images-Disc1" / "GridSquare_3" / "Data"
    _file(data / "FoilHole_3_Data_7_fractions.tiff", 4, None)
    info = walker.info(raw)
    assert listed == [str(data)]  # only the folder that changed
    assert info == raw_info(raw)
