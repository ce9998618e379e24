"""Adding a step exactly as the README's "Adding a step" says, on a real Snakemake + RELION run.

The rule file and the facility script are taken from README.md's code blocks; the only
change is the script's path (the README's /opt/facility/micsize.sh is written to a temporary
folder). A second local rule file is broken: it is left out with its file and line, and
the rest of the pipeline, the added step included, keeps running.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from runs import emotf_run, emotf_status, finished_line

from emotf.demo import demo_config
from emotf.project import prepare_folder
from emotf.sim import SimParams, simulate_session

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("relion_run_motioncorr") is None, reason="RELION missing"),
]
FAILING = "Data_30001_"  # the movie the wrapper script fails (stderr reason)


def readme_blocks() -> tuple[str, str]:
    """(the shell script, the rule file) of README's worked example."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Adding a step") :]
    shell = re.search(r"```sh\n(.*?)```", section, re.S)
    rule = re.search(r"```python\n(emotf_step\(.*?)```", section, re.S)
    assert shell and rule, "README lost its worked example"
    return shell.group(1), rule.group(1)


def add_readme_step(out: Path, tools: Path) -> Path:
    """Install the README's script and rule file; returns the script's path."""
    script_text, rule_text = readme_blocks()
    tools.mkdir(exist_ok=True)
    real = tools / "micsize.sh"
    real.write_text(script_text)
    wrapper = tools / "micsize-test.sh"  # fails one known movie, else the README's script
    wrapper.write_text(
        f'#!/bin/sh\ncase "$1" in *{FAILING}*) echo "facility check: '
        f'bad micrograph" >&2; exit 4;; esac\nexec sh {real} "$1"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    rule_text = rule_text.replace("/opt/facility/micsize.sh", str(wrapper))
    local = out / "workflow" / "rules" / "local"
    assert local.is_dir(), "a new processing folder has workflow/rules/local/"
    (local / "micsize.smk").write_text(rule_text)
    return wrapper


BROKEN = 'rule broken:\n    output: "x.txt"\n    shell "touch {output}"\n'  # line 3: no colon


def test_a_local_shell_step_runs_counts_and_reports(tmp_path: Path) -> None:
    session, out = tmp_path / "session", tmp_path / "session_OTF"
    params = SimParams(size=512, n_frames=12, format="tiff", gain=False, seed=21)
    truth = simulate_session(session, params, n_movies=4)
    config = demo_config(truth.particle_diameter)
    prepare_folder(out, session, config)
    add_readme_step(out, tmp_path / "facility")
    broken = out / "workflow" / "rules" / "local" / "broken.smk"
    broken.write_text(BROKEN)
    proc = emotf_run(session, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = finished_line(proc.stdout)
    assert "sized 3" in last and "done 4" in last, last
    assert f"pipeline error: {broken}:3: rule file left out" in proc.stderr, proc.stderr
    records = {
        m["key"]: m
        for p in sorted((out / "Results").glob("b*.json"))
        for m in json.loads(p.read_text())["movies"]
    }
    assert len(records) == 4
    for key, movie in records.items():
        assert movie["state"] == "done"  # the added step is optional
        if FAILING in key:
            assert movie["steps"]["micsize"] is False
            assert movie["notes"]["micsize"] == "exit code 4: facility check: bad micrograph"
        else:
            size = (out / movie["micrograph"]).stat().st_size
            assert movie["steps"]["micsize"] is True and movie["mic_bytes"] == size
    summary = json.loads(next((out / "Summary").glob("b*.json")).read_text())
    assert all("micsize" in m["steps"] for m in summary["movies"])
    status = emotf_status(out, "--html")
    assert re.search(r"sized\s+\[[#.]+\]\s+3 / 4 \(optional\)", status), status
    assert "note x1: micsize: exit code 4: facility check: bad micrograph" in status
    assert f"pipeline error: {broken}:3" in status
    report = (out / "report.html").read_text()
    assert "<th>sized</th>" in report and "facility check: bad micrograph" in report
    state = json.loads((out / ".emotf" / "pipeline.json").read_text())
    assert state["rejected"] == [str(broken)] and "micsize" in state["steps"]
    # a manual snakemake in the folder sees the same pipeline and has nothing to do
    again = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
