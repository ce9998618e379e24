"""The step graph is declared once (emotf_step in the rule files) and everything iterates it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from runs import write_step

from emotf.pipeline import builtin_pipeline, load_pipeline
from emotf.pipeline.declare import declarations
from emotf.pipeline.legacy import LEGACY_1
from emotf.resources import workflow_dir
from emotf.session.batches import MovieEntry, write_manifest
from emotf.session.progress import ProgressReader
from emotf.steps import results
from emotf.steps.base import StepContext

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ("import", "motioncor", "ctffind", "picking", "extract")


def test_builtin_pipeline_comes_from_the_rule_files() -> None:
    pipeline = builtin_pipeline()
    assert pipeline.names == BUILTIN and pipeline.errors == []
    assert [s.count for s in pipeline] == [
        "imported",
        "motioncor",
        "ctffind",
        "picked",
        "extracted",
    ]
    assert pipeline.step("picking").rule == "cryolo" and not pipeline.step("extract").required
    for step in pipeline:  # the declaration's output is the rule's json output
        text = Path(step.source.rsplit(":", 1)[0]).read_text()
        assert f'json="{step.output}"' in text, step.name
    assert pipeline.field("defocus_u").star == "rlnDefocusU"  # type: ignore[union-attr]
    assert "particles" in pipeline.summary_fields() and "shifts" not in pipeline.summary_fields()


def write_rule(folder: Path, name: str, text: str) -> Path:
    path = folder / "workflow" / "rules" / "local" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def copy_workflow(folder: Path) -> None:
    import shutil

    shutil.copytree(workflow_dir(), folder / "workflow")


GOOD = """emotf_step(
    name="icecheck",
    output="IceCheck/{batch}/icecheck.json",
    needs=["motioncor"],
    count="ice_checked",
    required=False,
    fields={"ice_score": {"summary": True, "stat": True}},
)
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('emotf_step(name="x", output="X/{batch}/x.json", needs=["nope"])\n', "unknown step"),
        ('emotf_step(name="x", output="X/{batch}/x.json", count="done")\n', "reserved"),
        ('emotf_step(name="x", output="/abs/{batch}.json")\n', "relative"),
        ('emotf_step(name="x", output="X/{batch}/x.json", colour="red")\n', "unknown argument"),
        ('emotf_step(name="x", output="X/{batch}/x.json", needs=[open("f")])\n', "literal"),
        ('\n\nemotf_step(name="Bad Name", output="X/{batch}/x.json")\n', "identifier"),
        ('emotf_step(name="imported", output="X/{batch}/x.json"\n', "unclosed"),
    ],
)
def test_bad_declarations_are_left_out_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    copy_workflow(tmp_path)
    bad = write_rule(tmp_path, "bad.smk", text)
    write_rule(tmp_path, "good.smk", GOOD)
    pipeline = load_pipeline(tmp_path, {})
    assert "icecheck" in pipeline.names and "x" not in pipeline.names
    assert set(BUILTIN) <= set(pipeline.names)
    assert len(pipeline.errors) == 1 and message in pipeline.errors[0], pipeline.errors
    line = text[: text.index("emotf_step")].count("\n") + 1
    assert pipeline.errors[0].startswith(f"{bad}:{line}"), pipeline.errors[0]
    assert str(bad) not in pipeline.rule_files


def test_a_cycle_and_a_duplicate_name_are_errors(tmp_path: Path) -> None:
    copy_workflow(tmp_path)
    write_rule(tmp_path, "a.smk", 'emotf_step(name="a", output="A/{batch}/a.json", needs=["b"])\n')
    write_rule(tmp_path, "b.smk", 'emotf_step(name="b", output="B/{batch}/b.json", needs=["a"])\n')
    write_rule(tmp_path, "c.smk", 'emotf_step(name="ctffind", output="C/{batch}/c.json")\n')
    pipeline = load_pipeline(tmp_path, {})
    assert pipeline.names == BUILTIN
    assert sum("part of a dependency cycle" in e for e in pipeline.errors) == 2
    assert any("already declared" in e and "c.smk" in e for e in pipeline.errors)


def test_a_facility_rule_folder_from_the_config(tmp_path: Path) -> None:
    copy_workflow(tmp_path / "f")
    facility = tmp_path / "facility"
    facility.mkdir()
    (facility / "ice.smk").write_text(GOOD)
    assert "icecheck" not in load_pipeline(tmp_path / "f", {}).names
    pipeline = load_pipeline(tmp_path / "f", {"pipeline": {"rule_dirs": [str(facility)]}})
    assert pipeline.names[-1] == "extract" and "icecheck" in pipeline.names
    assert pipeline.step("icecheck").count == "ice_checked"


def test_a_folder_without_declarations_is_legacy(tmp_path: Path) -> None:
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    (tmp_path / "workflow" / "rules" / "ctffind.smk").write_text("rule ctffind:\n    run: pass\n")
    pipeline = load_pipeline(tmp_path, {})
    assert pipeline.version == "legacy-1" and pipeline.names == LEGACY_1


# -- counts follow the graph -----------------------------------------------------------


def entry(key: str) -> MovieEntry:
    return MovieEntry(key=key, path=f"/raw/{key}", size=10, mtime=1.0, found=5.0, stable=6.0)


def step_json(out: Path, step: str, movies: dict[str, dict[str, object]]) -> Path:
    return write_step(out / builtin_pipeline().step(step).output_of("b000001"), step, movies)


def test_a_movie_that_fails_ctf_but_is_picked_counts_as_picked_before_and_after(
    tmp_path: Path,
) -> None:
    copy_workflow(tmp_path)
    write_manifest(tmp_path, [entry("a"), entry("b")], 1)
    ok = {"ok": True, "time": 3.0}
    paths = {
        "import": step_json(tmp_path, "import", {"a": ok, "b": ok}),
        "motioncor": step_json(tmp_path, "motioncor", {"a": ok, "b": ok}),
        "ctffind": step_json(
            tmp_path,
            "ctffind",
            {
                "a": {**ok, "defocus_u": 1e4, "defocus_v": 1e4},
                "b": {"ok": False, "time": 3.0, "reason": "no CTF fit"},
            },
        ),
        "picking": step_json(
            tmp_path, "picking", {"a": {**ok, "particles": 4}, "b": {**ok, "particles": 40}}
        ),
        "extract": step_json(tmp_path, "extract", {"a": {**ok, "particles_extracted": 3}}),
    }
    reader = ProgressReader(tmp_path)
    running = reader.snapshot().counts
    assert running.steps == {
        "imported": 2,
        "motioncor": 2,
        "ctffind": 1,
        "picked": 2,
        "extracted": 1,
    }
    assert running.totals == {"gain_suspect": 0, "particles": 44, "particles_extracted": 3}
    ctx = StepContext(
        batch="b000001",
        config={},
        workdir=tmp_path,
        inputs={"manifest": tmp_path / "batches/b000001.json", **paths},
        outputs={
            "json": tmp_path / "Results/b000001.json",
            "summary": tmp_path / "Summary/b000001.json",
        },
    )
    results.run(ctx)
    after = reader.snapshot().counts
    assert after.steps == running.steps and after.totals == running.totals  # never goes down
    assert (after.done, after.failed) == (1, 1)
    assert after.failures == {"ctffind: no CTF fit": 1}
    summary = json.loads((tmp_path / "Summary/b000001.json").read_text())
    b = next(m for m in summary["movies"] if m["key"] == "b")
    assert b["steps"] == {"import": True, "motioncor": True, "ctffind": False, "picking": True}
    assert b["state"] == "failed" and b["particles"] == 40
    assert b["reason"] == "no CTF fit" and b["failed_step"] == "ctffind"


def test_an_optional_step_failure_is_a_note_and_the_movie_stays_done(tmp_path: Path) -> None:
    copy_workflow(tmp_path)
    write_manifest(tmp_path, [entry("a")], 1)
    ok = {"ok": True, "time": 3.0}
    paths = {
        s: step_json(tmp_path, s, {"a": {**ok, "particles": 0}})
        for s in ("import", "motioncor", "ctffind", "picking")
    }
    paths["extract"] = step_json(
        tmp_path, "extract", {"a": {"ok": False, "time": 4.0, "reason": "no particles picked"}}
    )
    ctx = StepContext(
        batch="b000001",
        config={},
        workdir=tmp_path,
        inputs={"manifest": tmp_path / "batches/b000001.json", **paths},
        outputs={"json": tmp_path / "Results/b000001.json"},
    )
    record = results.run(ctx)["movies"][0]
    assert record["state"] == "done" and record["notes"] == {"extract": "no particles picked"}
    assert record["steps"]["extract"] is False


# -- one source: no other module lists the steps ----------------------------------------

ALLOWED = {"pipeline", "steps"}  # the declaration's reader and the step modules themselves


def _step_lists(path: Path, names: set[str]) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
            elts = node.keys if isinstance(node, ast.Dict) else node.elts
            found = {e.value for e in elts if isinstance(e, ast.Constant)} & names
            if len(found) >= 2:
                lines.append(node.lineno)
    return lines


def test_no_module_outside_the_declaration_lists_step_names() -> None:
    pipeline = builtin_pipeline()
    names = {*pipeline.names, *(s.count for s in pipeline)}
    offenders = {}
    for path in sorted((ROOT / "emotf").rglob("*.py")):
        part = path.relative_to(ROOT / "emotf").parts
        if part[0] in ALLOWED:
            continue
        lines = _step_lists(path, names)
        if lines:
            offenders[str(path.relative_to(ROOT))] = lines
    assert offenders == {}
    # and the test does find such a list where one is
    sample = ROOT / "tests" / "test_pipeline_declaration.py"
    assert _step_lists(sample, names)


def test_declarations_parse_from_each_builtin_rule_file() -> None:
    found = [
        s.name for p in sorted((workflow_dir() / "rules").glob("*.smk")) for s in declarations(p)
    ]
    assert sorted(found) == sorted(BUILTIN)
