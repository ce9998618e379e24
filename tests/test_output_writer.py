"""The worker's output child: STAR files at every change of Results/, the report at most every
REPORT_SECONDS, and always in the last update of a session."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from emotf.views import output_writer
from emotf.views.output_writer import OutputWriter


class Child:
    """Stands in for the child process (what matters here is which argv it was given)."""

    started: list[list[str]] = []

    def __init__(self, argv: list[str], **_: Any) -> None:
        Child.started.append(argv)

    def poll(self) -> int:
        return 0

    def wait(self) -> int:
        return 0


def test_report_at_most_every_interval_and_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "Popen", Child)
    Child.started = []
    clock = [1000.0]
    monkeypatch.setattr(output_writer.time, "monotonic", lambda: clock[0])
    results = tmp_path / "Results"
    results.mkdir()
    writer = OutputWriter(tmp_path)

    def batch(n: int) -> None:
        (results / f"b{n:06d}.json").write_text("{}")
        writer.update()

    batch(1)  # first update: STARs and report
    batch(2)  # 1 s later: STARs only
    clock[0] += 1
    batch(3)
    writer.update()  # nothing changed: no child
    clock[0] += output_writer.REPORT_SECONDS
    writer.update()  # nothing new, but the report is stale and due
    (results / "b000004.json").write_text("{}")
    writer.update(wait=True)  # the last update of a session has the report
    reports = ["--no-report" not in argv for argv in Child.started]
    assert reports == [True, False, False, True, True]


def test_results_signature_ignores_temp_files_and_vanished_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's temporary result file is renamed away at any moment, and a result removed
    before a rerun can vanish between the listing and its stat: neither may stop the loop
    (a 100,000-movie run died on ``.b000194.json.<random>.tmp``)."""
    import os

    results = tmp_path / "Results"
    results.mkdir()
    (results / "b000001.json").write_text("{}")
    (results / ".b000002.json.x1y2.tmp").write_text("{")
    (results / "b000003.json").write_text("{}")
    real = os.scandir

    class Vanishing:
        """b000003.json is listed, then removed before it is stat'ed."""

        def __init__(self, path: Any) -> None:
            self._it = real(path)

        def __enter__(self) -> Any:
            entries = list(self._it)
            (results / "b000003.json").unlink()
            return iter(entries)

        def __exit__(self, *exc: object) -> None:
            self._it.close()

    monkeypatch.setattr(output_writer.os, "scandir", Vanishing)
    count, newest = output_writer.results_signature(tmp_path)
    assert count == 1
    assert newest == (results / "b000001.json").stat().st_mtime_ns
    monkeypatch.setattr(output_writer.os, "scandir", real)
    assert output_writer.results_signature(tmp_path / "nowhere") == (0, 0)
