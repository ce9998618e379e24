"""``extra.raw`` from emotf.emhub.raw_stats against what EMhub's own stock worker computes
(emtools' ``MovieFiles``, run in the EMhub server venv) on the same simulated EPU folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

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
