"""End to end through EMhub 1.0.2's own web pages in headless Chromium (issue 14).

An admin logs in on EMhub's login page, opens the dashboard, clicks the booking's *New
Session*, fills and submits the create-session form; the simulator then writes the EPU
frames folder over time (or the raw folder, when one is given), the emotf worker runs the
tasks the form queued (``transfer`` + ``otf`` or ``monitor`` + ``otf``), and the test reads
the rendered sessions list (OTF, images, size) during and after the session, the details page
(Files, Updated) and the OTF link's live page. Screenshots go to ``$TMPDIR/emotf-pages``, or
to ``$EMOTF_SCREENSHOT_DIR`` (``EMOTF_SCREENSHOT_DIR=docs`` refreshes the ones in docs/).

The create-session form itself is the test facility's (instance extras, see
tests/emhub/web_instance.py): EMhub 1.0.2 ships none that can create a session (its
``create_session_form`` content raises, its stock form body has no name or folder fields, and
its script sends ``[action, host]`` pairs that 1.0.2's ``create_session`` rejects).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdp import Browser, Page, chromium
from harness import EmhubServer
from test_emhub_tasks import SMALL, sha, task_of, worker_settings
from workerproc import NEEDS_RELION, WORKER, WorkerProcess, last_event, wait_for

from emotf.sim import SessionSimulator, simulate_session

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path(os.environ.get("EMOTF_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "emotf-pages")
UNITS = {"bytes": 0, "kB": 1, "MB": 2, "GB": 3, "TB": 4}

pytestmark = [
    pytest.mark.slow,
    NEEDS_RELION,
    pytest.mark.skipif(chromium() is None, reason="chromium is not installed"),
]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmhubServer]:
    venv = Path(os.environ.get("EMOTF_EMHUB_VENV", ROOT / ".venv-emhub"))
    if not (venv / "bin" / "flask").exists():
        pytest.skip("EMhub test server not installed: run tests/emhub/setup_server.sh")
    server = EmhubServer(venv, tmp_path_factory.mktemp("emhubweb"), [WORKER])
    server.start_web()
    (server.raw_root / "frames").mkdir()
    storage = str(server.raw_root / "storage")
    root_frames = str(server.raw_root / "frames")
    server.update_config("sessions", {"raw": {"root_frames": root_frames, "root": storage}})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    browser = Browser(tmp_path)
    try:
        yield browser.page()
    finally:
        browser.close()


@pytest.fixture
def worker(web: EmhubServer, tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(web, tmp_path, idle_timeout=25, settings=worker_settings(web))
    proc.start()
    yield proc
    proc.kill(15)


def login(page: Page, server: EmhubServer) -> None:
    page.goto(f"{server.url}/login")
    page.wait("!!document.querySelector('input[name=username]')", 30, "the login form")
    page.js("document.querySelector('input[name=username]').value = 'admin';"
            "document.querySelector('input[name=password]').value = 'admin';"
            "document.querySelector('#login-form button[type=submit]').click()")  # fmt: skip
    page.wait("location.href.includes('content_id=') && document.readyState === 'complete' && "
              "!!document.body && document.body.innerText.includes('Dashboard')", 60,
              "the dashboard after login")  # fmt: skip


def create_session(page: Page, server: EmhubServer, name: str, raw_folder: str = "") -> int:
    """Dashboard → New Session → fill the form → Create; returns the new session's id."""
    page.goto(f"{server.url}/main?content_id=dashboard")
    page.wait("!!document.querySelector(\"a[href*='createSession']\")", 30, "New Session")
    page.js("document.querySelector(\"a[href*='createSession']\").click()")
    visible = "document.querySelector('#session-name')?.offsetParent != null"
    page.wait(visible, 30, "the create-session form")
    values = {"#session-name": name, "#raw-folder": raw_folder, "#otf-workflow": "emotf"}
    for selector, value in values.items():
        page.js(f"var e = document.querySelector({json.dumps(selector)}); "
                f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event('change'))")  # fmt: skip
    page.screenshot(DOCS / f"emhub-create-session-{'monitor' if raw_folder else 'transfer'}.png")
    page.js("document.querySelector('#session-btn-create').click()")
    href = page.wait("location.href.includes('session_id=') && location.href", 60, "the session")
    page.wait("document.readyState === 'complete'")
    return int(re.search(r"session_id=(\d+)", href).group(1))  # type: ignore[union-attr]


def sessions_row(page: Page, server: EmhubServer, name: str) -> dict[str, str]:
    """The session's row of EMhub's sessions list, as rendered: header → cell text."""
    page.goto(f"{server.url}/main?content_id=sessions_list")
    page.wait("!!document.querySelector('#sessions-table tbody tr')", 30, "the sessions table")
    return page.js(
        "(() => { const heads = [...document.querySelectorAll('#sessions-table thead th')]"
        ".map(h => h.innerText.trim());"
        "for (const tr of document.querySelectorAll('#sessions-table tbody tr')) {"
        "  const cells = [...tr.children].map(c => c.innerText.trim());"
        f"  if (cells.includes({json.dumps(name)}))"
        "    return Object.fromEntries(heads.map((h, i) => [h, cells[i]])); }"
        "return null; })()"
    )


def details(page: Page, server: EmhubServer, sid: int) -> dict[str, str]:
    page.goto(f"{server.url}/main?content_id=session_details&session_id={sid}")
    page.wait("!!document.querySelector('table tr')", 30, "the details table")
    return page.js(
        "Object.fromEntries([...document.querySelectorAll('table tr')]"
        ".filter(tr => tr.children.length === 2)"
        ".map(tr => [tr.children[0].innerText.trim(), tr.children[1].innerText.trim()]))"
    )


def size_bytes(text: str) -> tuple[float, float]:
    """'2.4 MB' → (bytes, tolerance of the shown rounding)."""
    number, unit = text.split()
    scale = 1024 ** UNITS[unit]
    decimals = len(number.split(".")[1]) if "." in number else 0
    return float(number) * scale, 0.5 * 10**-decimals * scale


def files_of(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]


def watch_sessions_list(page: Page, server: EmhubServer, name: str, until: Any,
                        shot: Path) -> list[dict[str, str]]:  # fmt: skip
    """Rows seen while ``until()`` is false; the first one of a running OTF is screenshot."""
    seen: list[dict[str, str]] = []
    while not until():
        row = sessions_row(page, server, name)
        if (
            row["OTF"].startswith("running")
            and int(row["images"]) > 0
            and not any(r["OTF"].startswith("running") and int(r["images"]) > 0 for r in seen)
        ):
            page.screenshot(shot)
        seen.append(row)
        time.sleep(2)
    return seen


def check_after(page: Page, server: EmhubServer, sid: int, name: str, raw: Path,
                n: int, kind: str) -> None:  # fmt: skip
    session = server.get_session(sid)
    extra = session["extra"]
    out = Path(extra["otf"]["path"])
    row = sessions_row(page, server, name)
    page.screenshot(DOCS / f"emhub-sessions-{kind}-finished.png")
    assert row["OTF"] == f"finished: {out.name}", row
    assert row["images"] == str(n)
    total = sum(p.stat().st_size for p in files_of(raw))
    shown, tolerance = size_bytes(row["size"])
    assert abs(shown - total) <= tolerance, (row["size"], total)
    card = details(page, server, sid)
    page.screenshot(DOCS / f"emhub-session-{kind}-details.png")
    assert card["Files"] == str(len(files_of(raw))) and card["Images"] == str(n)
    assert card["Updated"] == extra["updated"] and card["Raw path"] == str(raw)
    page.goto(f"{server.url}/main?content_id=session_live&session_id={sid}")  # the OTF link
    page.wait("document.body.innerText.includes('finished')", 30, "the live page")
    assert not page.js("!!document.querySelector('#error-modal-title')")
    page.screenshot(DOCS / f"emhub-session-{kind}-live.png")


def test_form_session_with_transfer_then_otf(web: EmhubServer, page: Page,
                                             worker: WorkerProcess) -> None:  # fmt: skip
    login(page, web)
    frames = web.raw_root / "frames" / "web1"
    assert not frames.exists()  # EPU has not started yet
    sid = create_session(page, web, "web1")
    transfer_id, otf_id = task_of(web, sid, "transfer"), task_of(web, sid, "otf")
    writer = threading.Thread(target=simulate_session, args=(frames, SMALL, 4),
                              kwargs={"interval": 3.0})  # fmt: skip
    writer.start()
    seen = watch_sessions_list(page, web, "web1", lambda: web.is_done(otf_id),
                               DOCS / "emhub-sessions-transfer-running.png")  # fmt: skip
    writer.join()
    wait_for(lambda: web.is_done(transfer_id), 120, "the transfer task")
    running = [r for r in seen if r["OTF"].startswith("running")]
    assert running and int(running[-1]["images"]) > 0 and running[-1]["size"] != "0 bytes"
    images = [int(r["images"]) for r in seen]
    assert images == sorted(images)  # never goes back
    raw = Path(web.get_session(sid)["extra"]["raw"]["path"])
    assert len(list(raw.rglob("*_fractions.tiff"))) == 4 and not list(frames.rglob("*.tiff"))
    ledger = [json.loads(x) for x in (raw.parent / f".{raw.name}.transfer.jsonl").open()]
    sums = {x["dest"]: x["sha256"] for x in ledger if x["kind"] == "copied"}
    for movie in raw.rglob("*_fractions.tiff"):  # every movie moved with its checksum
        assert sums[str(movie.relative_to(raw))] == sha(movie)
    assert last_event(web, otf_id)["movies_done"] == "4"
    check_after(page, web, sid, "web1", raw, 4, "transfer")


def test_form_session_with_raw_folder_monitor_then_otf(web: EmhubServer, page: Page,
                                                       worker: WorkerProcess) -> None:  # fmt: skip
    login(page, web)
    raw = web.raw_root / "web2"
    microscope = SessionSimulator(raw, SMALL)
    for _ in range(2):  # acquisition has begun when staff create the session
        microscope.movie("good", 1, 0.0)
    sid = create_session(page, web, "web2", raw_folder=str(raw))
    monitor_id, otf_id = task_of(web, sid, "monitor"), task_of(web, sid, "otf")

    def two_more() -> None:  # once the monitor has scanned, so its count is known: 2
        wait_for(lambda: web.is_done(monitor_id), 120, "the monitor task")
        for _ in range(2):
            time.sleep(3)
            microscope.movie("good", 4, 1.0)  # written in 4 chunks over 1 s

    writer = threading.Thread(target=two_more)
    writer.start()
    seen = watch_sessions_list(page, web, "web2", lambda: web.is_done(otf_id),
                               DOCS / "emhub-sessions-monitor-running.png")  # fmt: skip
    writer.join()
    assert web.is_done(monitor_id) and last_event(web, monitor_id)["movies"] == "2"
    assert any(r["OTF"].startswith("running") and int(r["images"]) >= 2 for r in seen)
    check_after(page, web, sid, "web2", raw, 4, "monitor")
