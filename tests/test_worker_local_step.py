"""A step added as the README says reaches EMhub: the worker against a real EMhub 1.0.2 +
redis-server runs it, counts it in the task events and the session's ``extra``, and shows it
in ``emotf status``, the report and ``Results/``; the movie it fails keeps its reason.

The README's rule file is dropped into the processing folder the worker made, before any
movie is written; a second session gets the same step from a facility rule folder named in
the worker configuration (``otf.rule_dirs``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from harness import EmhubServer
from runs import emotf_status
from test_local_step import FAILING, add_readme_step, readme_blocks
from workerproc import NEEDS_RELION, Factory, last_event, new_session, wait_for

pytestmark = [pytest.mark.slow, NEEDS_RELION]


def test_a_local_step_is_counted_in_emhub(
    emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    sid, task_id, _raw, writer = new_session(emhub_server, "localstep", 4, 1.0, seed=51)
    worker_factory()
    out = emhub_server.otf_root / "localstep_OTF"
    wait_for(
        lambda: (out / "workflow" / "rules" / "local").is_dir(),
        120,
        "the worker to make the processing folder",
    )
    add_readme_step(out, tmp_path / "facility")
    writer.start()  # movies arrive after the step was added
    wait_for(lambda: emhub_server.is_done(task_id), 400, "the otf task to finish")
    writer.join()
    final = last_event(emhub_server, task_id)
    assert final["status"] == "finished" and int(final["movies_done"]) == 4, final
    assert int(final["sized"]) == 3, final  # one movie failed the optional step
    history = emhub_server.task_history(task_id)
    assert any(int(e.get("sized", 0)) >= 1 and e.get("status") == "running" for e in history)
    emotf = emhub_server.get_session(sid)["extra"]["emotf"]
    assert emotf["sized"] == 3 and emotf["movies_done"] == 4
    records = {
        m["key"]: m
        for p in (out / "Results").glob("b*.json")
        for m in json.loads(p.read_text())["movies"]
    }
    failing = [m for k, m in records.items() if FAILING in k]
    assert len(failing) == 1
    assert failing[0]["notes"]["micsize"] == "exit code 4: facility check: bad micrograph"
    assert all(m["steps"]["micsize"] for k, m in records.items() if FAILING not in k)
    status = emotf_status(out, "--html")
    assert re.search(r"sized\s+\[[#.]+\]\s+3 / 4 \(optional\)", status), status
    assert "<th>sized</th>" in (out / "report.html").read_text()


def test_a_facility_rule_folder_applies_to_every_session(
    emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    facility = tmp_path / "rules"
    facility.mkdir()
    script_text, rule_text = readme_blocks()
    script = tmp_path / "micsize.sh"
    script.write_text(script_text)
    (facility / "micsize.smk").write_text(
        rule_text.replace("/opt/facility/micsize.sh", f"sh {script}")
    )
    sid, task_id, _raw, writer = new_session(emhub_server, "facilitystep", 2, 0.5, seed=52)
    writer.start()
    worker_factory(settings={"otf": {"rule_dirs": [str(facility)]}})
    wait_for(lambda: emhub_server.is_done(task_id), 400, "the otf task to finish")
    writer.join()
    final = last_event(emhub_server, task_id)
    assert int(final["sized"]) == 2 and int(final["movies_done"]) == 2, final
    out = emhub_server.otf_root / "facilitystep_OTF"
    config = (out / "config.yaml").read_text()
    assert str(facility) in config  # recorded, so a manual snakemake runs the same steps
    assert emhub_server.get_session(sid)["extra"]["emotf"]["sized"] == 2
