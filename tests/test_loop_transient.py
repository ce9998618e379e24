"""The session loop rides out a transient file error (bounded), and gives up on a lasting one."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from emotf.project import prepare_folder
from emotf.session import otf as otf_module
from emotf.session.otf import OtfOptions, OtfSession


def _session(tmp_path: Path) -> OtfSession:
    raw = tmp_path / "raw"
    (raw / "Images-Disc1").mkdir(parents=True)
    out = tmp_path / "raw_OTF"
    config = prepare_folder(out, raw, {"batches": {"settle_seconds": 0}})
    return OtfSession(out, config, OtfOptions(once=True, poll_interval=0.01))


def _failing(otf: OtfSession, times: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the first ``times`` writes of the outputs fail as a vanished file does."""
    calls: list[int] = []
    real = otf.write_outputs

    def write_outputs(wait: bool = False) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise FileNotFoundError(errno.ENOENT, "No such file", "Results/.b000001.json.tmp")
        real(wait)

    monkeypatch.setattr(otf, "write_outputs", write_outputs)
    return calls


def test_a_transient_error_is_tried_again(tmp_path: Path, monkeypatch) -> None:
    otf = _session(tmp_path)
    calls = _failing(otf, otf_module.TRANSIENT_TICKS - 1, monkeypatch)
    start = time.monotonic()
    status = otf.run_loop()
    assert status.state == "finished"
    assert len(calls) == otf_module.TRANSIENT_TICKS
    assert time.monotonic() - start < 30


def test_a_lasting_error_ends_the_loop(tmp_path: Path, monkeypatch) -> None:
    otf = _session(tmp_path)
    calls = _failing(otf, 1000, monkeypatch)
    with pytest.raises(FileNotFoundError):
        otf.run_loop()
    assert len(calls) == otf_module.TRANSIENT_TICKS
