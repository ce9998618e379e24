"""Issue 13 items 3 and 5 through the benchmark scripts' own code, with small sizes.

* Backlog (benchmarks/backlog.py): after a restart with a backlog of batches, the first
  result comes from the oldest batch, before the backlog's imports are done, within twice
  the time of one batch alone (measured side by side in the same test).
* Soak (benchmarks/soak.py, short version): a streamed session into the worker against a
  real EMhub 1.0.2 + Redis while the worker is killed (-9), a Snakemake process group is
  killed, EMhub and Redis are restarted; nothing lost, nothing processed twice, EMhub's
  counts equal the folder's.

Both use the benchmark-only ``recorded`` backend (real import and Snakemake jobs; compute
replayed from tests/fixtures, benchmarks/_recording.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import backlog  # noqa: E402
import soak  # noqa: E402

pytestmark = pytest.mark.slow


def test_first_result_after_a_backlog_comes_early(tmp_path: Path) -> None:
    n = 8
    arms = backlog.measure(tmp_path, backlog=n, batch_size=2, old_arm=False)
    alone, first = arms["alone"], arms["backlog"]
    assert alone["first"] == ["b000001"] and first["first"][0] == "b000001"  # oldest first
    # by then only the batches of the runs that can be going at once were imported (2 runs
    # of 1 batch by default), not the backlog's (every import first, before issue 13)
    assert first["imported"] <= 2 < n, first
    assert first["seconds"] <= 2 * alone["seconds"], arms


def test_short_soak_with_faults_loses_nothing(tmp_path: Path) -> None:
    if not soak.emhub_available():
        reason = "EMhub test server not installed: run tests/emhub/setup_server.sh"
        if os.environ.get("EMOTF_REQUIRE_EMHUB"):
            pytest.fail(reason + " but EMOTF_REQUIRE_EMHUB is set")
        pytest.skip(reason)
    params = soak.SoakParams(movies=150, minutes=5.0, faults=4, seed=7)
    result = soak.run_soak(tmp_path, params)
    print(soak.report(result).table())
    fig = result.figures
    assert sorted(f.kind for f in result.schedule) == sorted(soak.KINDS)
    assert fig["faults_applied"] == 4, [(f.kind, f.note) for f in result.schedule]
    assert "nothing killed" not in " ".join(f.note for f in result.schedule)
    assert fig["written"] == result.written == 150
    assert fig["lost"] == 0 and fig["processed_twice"] == 0, fig
    assert fig["done"] + fig["failed"] == 150 and fig["emhub_equals_folder"], fig
    assert fig["emhub"]["status"] == "finished", fig
