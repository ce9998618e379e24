"""The extraction step: box sizes from the particle diameter, no-pick movies as reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emotf.config import build_config
from emotf.fsutil import atomic_write_json
from emotf.parsers.relion import read_star
from emotf.steps import extract
from emotf.steps.base import StepContext


def test_default_boxes_follow_the_particle_diameter() -> None:
    config = build_config({"session_dir": "/x", "cryolo": {"diameter_max": 180}})
    assert extract.boxes(config, 1.0) == (270, 96)  # 1.5 × 180 px, particle → 64 px
    assert extract.boxes(config, 4.0) == (68, None)  # 45 px particle: no rescaling
    config["extract"].update(box_size=300, rescaled_box=100)
    assert extract.boxes(config, 1.0) == (300, 100)


@pytest.mark.parametrize("picks", [0])
def test_movies_without_picks_fail_extraction_with_a_reason(
    tmp_path: Path, picks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ok = {"ok": True, "time": 1.0}
    inputs = {}
    for name, fields in (
        ("import_json", {"pixel_size": 1.0, "voltage": 300}),
        ("motioncor_json", {"micrograph": "m.mrc"}),
        ("ctffind_json", {"defocus_u": 1e4}),
        ("picking_json", {"particles": picks}),
    ):
        path = tmp_path / f"{name}.json"
        atomic_write_json(
            path,
            {
                "batch": "b000001",
                "step": name,
                "backend": "x",
                "started": 0,
                "finished": 0,
                "movies": {"a": {**ok, **fields}},
            },
        )
        inputs[name] = path
    ctx = StepContext(
        batch="b000001",
        config=build_config({"session_dir": "/x"}),
        inputs=inputs,
        workdir=tmp_path,
        outputs={
            "json": tmp_path / "Extract/b000001/extract.json",
            "star": tmp_path / "Extract/b000001/particles.star",
        },
    )
    extract.run(ctx)  # relion_preprocess is never started for a batch without picks
    movie = json.loads(ctx.outputs["json"].read_text())["movies"]["a"]
    assert movie == {**movie, "ok": False, "reason": "no particles picked: nothing to extract"}
    assert not (tmp_path / "Extract/b000001/relion_preprocess.log").exists()
    assert "particles" in read_star(ctx.outputs["star"])  # a valid, empty particles STAR
