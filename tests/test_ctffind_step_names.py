"""A movie whose file name CTFFIND's answers cannot carry fails alone, with the name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emotf.config import build_config
from emotf.steps import ctffind_exe
from emotf.steps.base import StepContext, start_output


def test_a_newline_in_a_micrograph_name_fails_that_movie_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started: list[list[str]] = []

    def no_program(argv: list[str], *_a: Any, **_k: Any) -> Any:
        started.append(argv)
        raise AssertionError("CTFFIND must not start for a name it cannot be given")

    monkeypatch.setattr(ctffind_exe, "run_tool", no_program)
    config = build_config({"session_dir": "/x", "ctffind": {"backend": "ctffind4"}})
    ctx = StepContext(batch="b000001", config=config, inputs={}, outputs={}, workdir=tmp_path)
    out = start_output(ctx, "ctffind", "ctffind4")
    row = {
        "movie": "Movies/a.tiff",
        "micrograph_nodw": "MotionCorr/b000001/a\nb_noDW.mrc",
        "pixel_size": 1.0,
        "voltage": 300.0,
    }
    ctffind_exe.run_ctffind(ctx, out, {"a": row})
    reason = out.movies["a"]["reason"]
    assert out.movies["a"]["ok"] is False and "a\\nb_noDW.mrc" in reason and "rename" in reason
    assert started == []
