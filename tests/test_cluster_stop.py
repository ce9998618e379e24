"""Stopping sessions that run on a cluster, and a worker killed while its cluster jobs run.

SLURM is the real single-node SLURM of ``tests/cluster/slurm_up.sh`` (skipped with the
reason, or failed where SLURM is required, as in test_cluster_profiles.py). LSF cannot run
here: ``tests/cluster/fakelsf.py`` stands in for bsub/bjobs/bkill (a mock at the process
boundary; it runs the jobs locally, records every bsub and bkill, and holds new jobs while
``$FAKELSF_STATE/hold`` exists). EMhub is the real EMhub 1.0.2 + redis (conftest.py).

To keep a job in the queue for as long as a test needs (instead of racing a job that ends
in seconds), the tests hold pending SLURM jobs (``scontrol hold``) and suspend running ones
(``scontrol suspend``): they stay listed by ``squeue`` until someone cancels them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from harness import EmhubServer
from test_cluster_profiles import slurm_ready, slurm_required
from workerproc import (
    NEEDS_RELION,
    PARAMS,
    WORKER,
    Factory,
    last_event,
    manifest_keys,
    new_session,
    result_records,
    wait_for,
)

from emotf.session.runner import SnakemakeRun, live_snakemake
from emotf.sim import SimParams

ROOT = Path(__file__).resolve().parent.parent
SMALL = SimParams(**{**PARAMS.__dict__, "size": 384, "n_frames": 8})
RULES = ("import_movies", "motioncor", "ctffind", "cryolo")
pytestmark = [pytest.mark.slow, NEEDS_RELION]


@pytest.fixture
def slurm() -> Iterator[list[Path]]:
    """Folders whose SLURM jobs are cancelled at teardown (a failed test leaves none)."""
    reason = slurm_ready()
    if reason:
        if slurm_required():
            pytest.fail(f"{reason} (SLURM is required here: root with EMOTF_REQUIRE_SLURM or CI)")
        pytest.skip(reason)
    folders: list[Path] = []
    yield folders
    for folder in folders:
        ids = [job["id"] for job in squeue(folder)]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, check=False)


def machine_profile(folder: Path, name: str) -> str:
    """The shipped profile ``name`` with this machine's resources, as a folder path (every
    other setting as shipped). SLURM job logs are kept, to see what each job ran."""
    profile = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
    if name == "slurm":
        res = {"runtime": 10, "mem_mb": 1000}
        profile["default-resources"] = {**profile["default-resources"], **res,
                                        "slurm_partition": "cpu"}  # fmt: skip
        for rule, values in profile["set-resources"].items():
            kind = "cpu" if values.get("slurm_partition") in (None, "cpu") else "gpu"
            profile["set-resources"][rule] = {**values, **res, "slurm_partition": kind}
        profile["slurm-keep-successful-logs"] = True
    else:
        profile["seconds-between-status-checks"] = 2
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return str(folder)


# -- SLURM as the tests see it ---------------------------------------------------------------
def squeue(out: Path, all_states: bool = False) -> list[dict[str, str]]:
    """The SLURM jobs whose working directory is ``out`` (unfinished ones, or every job
    SLURM still lists with ``all_states``: MinJobAge=600 keeps finished ones 10 minutes)."""
    argv = ["squeue", "-h", "-o", "%i|%T|%k|%Z|%V|%e"] + (["--states=all"] if all_states else [])
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in text.splitlines():
        jobid, state, comment, workdir, submitted, ended = line.split("|", 5)
        if os.path.realpath(workdir) == os.path.realpath(out):
            jobs.append({"id": jobid, "state": state, "comment": comment,
                         "submitted": submitted, "ended": ended})  # fmt: skip
    return jobs


def freeze_slurm_jobs(out: Path) -> list[str]:
    """Hold the pending and suspend the running jobs of ``out``; the ids frozen."""
    frozen = []
    for job in squeue(out):
        command = {"PENDING": "hold", "RUNNING": "suspend"}.get(job["state"])
        if not command:
            continue
        done = subprocess.run(["scontrol", command, job["id"]], capture_output=True, check=False)
        if done.returncode == 0:
            frozen.append(job["id"])
    return frozen


def snakemake_children(pid: int) -> list[int]:
    """The Snakemake runs a worker process started (each leads its own process group)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "snakemake" in child.cmdline()[:3]:
                found.append(child.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # e.g. a finished helper not reaped yet
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def froze_some(out: Path, frozen: list[str]) -> bool:
    """Freeze the jobs of ``out`` listed now (adding their ids to ``frozen``); True once any
    job was frozen."""
    frozen.extend(freeze_slurm_jobs(out))
    return bool(frozen)


STEP_RE = re.compile(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: batch=(b\d{6})", re.M)


def steps_run(out: Path, jobs: list[dict[str, str]]) -> Counter[tuple[str, str]]:
    """(rule, batch) of every step the given SLURM jobs ran, counted once per job (read
    from the job logs, which the test profile keeps)."""
    logs = {p.stem: p for p in (out / ".snakemake" / "slurm_logs").rglob("*.log")}
    counted: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        counted.update(set(STEP_RE.findall(logs[job["id"]].read_text(errors="replace"))))
    return counted


# -- LSF stand-in ------------------------------------------------------------------------------
@pytest.fixture
def fakelsf(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """The stand-in's environment and state folder; held jobs are let go at teardown."""
    env, state = fakelsf_env(tmp_path)
    yield env, state
    (state / "hold").unlink(missing_ok=True)


def fakelsf_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment (PATH with the stand-in first, FAKELSF_STATE) and the state folder."""
    bin_dir, state = tmp_path / "lsfbin", tmp_path / "lsfstate"
    bin_dir.mkdir()
    state.mkdir()
    for name in ("bsub", "bjobs", "bkill", "badmin", "lsclusters", "bhist"):
        tool = bin_dir / name
        tool.write_text(
            f"#!{sys.executable}\nimport importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('fakelsf', "
            f"{str(ROOT / 'tests' / 'cluster' / 'fakelsf.py')!r})\n"
            "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n"
            f"sys.exit(module.COMMANDS[{name!r}](sys.argv[1:]))\n"
        )
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKELSF_STATE": str(state)}, state


def fake_jobs(state: Path) -> dict[str, str]:
    """Job id -> RUN / DONE / EXIT, as the stand-in's bjobs reports them."""
    sys.path.insert(0, str(ROOT / "tests" / "cluster"))
    import fakelsf

    jobs = json.loads((state / "jobs.json").read_text()) if (state / "jobs.json").exists() else {}
    old = fakelsf.STATE
    fakelsf.STATE = state
    try:
        return {jobid: fakelsf._state(jobid, job) for jobid, job in jobs.items()}
    finally:
        fakelsf.STATE = old


def bkilled(state: Path) -> set[str]:
    path = state / "bkills.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {jobid for line in lines for jobid in json.loads(line)}


# -- the tests ---------------------------------------------------------------------------------
def assert_finished_exactly(server: EmhubServer, task_id: str, out: Path, n: int) -> None:
    final = last_event(server, task_id)
    assert final.get("status") == "finished", final
    assert int(final["movies_done"]) == n and int(final["movies_failed"]) == 0, final
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == n
    records = result_records(out)
    assert sorted(records) == sorted(keys) and all(r["state"] == "done" for r in records.values())


def test_stop_task_leaves_no_slurm_job(
    slurm: list[Path], emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    sid, task_id, _raw, writer = new_session(emhub_server, "slurmstop", 12, 1.0, 31, SMALL)
    out = emhub_server.otf_root / "slurmstop_OTF"
    slurm.append(out)
    profile = machine_profile(tmp_path / "slurm-test", "slurm")
    writer.start()
    worker_factory(idle_timeout=120, settings={"otf": {"profile": profile}})
    wait_for(lambda: len(squeue(out)) >= 1, 300, "SLURM jobs of the session", step=0.2)
    stop_id = emhub_server.create_task(WORKER, "session", {"action": "stop", "session_id": sid})
    wait_for(lambda: not squeue(out), 60, "no job of the stopped session in squeue", step=0.5)
    wait_for(lambda: emhub_server.is_done(task_id), 180, "the otf task to stop")
    wait_for(lambda: emhub_server.is_done(stop_id), 60, "the stop task")
    assert last_event(emhub_server, task_id)["status"] == "stopped"
    assert live_snakemake(out) == []
    states = {job["state"] for job in squeue(out, all_states=True)}
    assert states <= {"COMPLETED", "CANCELLED"}, states


def test_stop_task_bkills_every_lsf_job(
    emhub_server: EmhubServer,
    worker_factory: Factory,
    fakelsf: tuple[dict[str, str], Path],
    tmp_path: Path,
) -> None:
    env, state = fakelsf
    (state / "hold").touch()  # the jobs wait, so they are all unfinished at the stop
    sid, task_id, _raw, writer = new_session(emhub_server, "lsfstop", 4, 0.5, 32, SMALL)
    profile = machine_profile(tmp_path / "lsf-test", "lsf")
    writer.start()
    worker_factory(idle_timeout=120, settings={"otf": {"profile": profile}},
                   env={"EMHUB_PASSWORD": "admin", **env})  # fmt: skip
    # one job per batch (the profile groups a batch's steps)
    wait_for(lambda: len(fake_jobs(state)) >= 1, 300, "an LSF job of the session", step=0.2)
    stop_id = emhub_server.create_task(WORKER, "session", {"action": "stop", "session_id": sid})
    wait_for(lambda: emhub_server.is_done(task_id), 120, "the otf task to stop")
    wait_for(lambda: emhub_server.is_done(stop_id), 60, "the stop task")
    jobs = fake_jobs(state)
    assert jobs and set(jobs) <= bkilled(state), (jobs, bkilled(state))
    wait_for(lambda: "RUN" not in fake_jobs(state).values(), 60, "the bkilled jobs to end")
    assert last_event(emhub_server, task_id)["status"] == "stopped"


def test_worker_kill9_orphan_snakemake_finishes_each_slurm_job_once(
    slurm: list[Path], emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    """kill -9 of the worker alone: its Snakemake (own session) survives and keeps its jobs;
    the new worker waits for it instead of submitting them again."""
    n = 6
    sid, task_id, _raw, writer = new_session(emhub_server, "slurmkill", n, 1.0, 33, SMALL)
    out = emhub_server.otf_root / "slurmkill_OTF"
    slurm.append(out)
    settings = {"otf": {"profile": machine_profile(tmp_path / "slurm-test", "slurm")}}
    writer.start()
    first = worker_factory(idle_timeout=20, settings=settings)
    wait_for(lambda: any(j["state"] == "RUNNING" for j in squeue(out)), 300,
             "a running SLURM job of the session", step=0.2)  # fmt: skip
    first.kill(signal.SIGKILL)
    assert live_snakemake(out), "the killed worker's Snakemake should still run"
    worker_factory(idle_timeout=20, settings=settings)
    wait_for(lambda: emhub_server.is_done(task_id), 600, "the task after the kill")
    writer.join()
    assert_finished_exactly(emhub_server, task_id, out, n)
    jobs = squeue(out, all_states=True)
    assert jobs and all(job["state"] == "COMPLETED" for job in jobs), jobs  # none cancelled
    ran = steps_run(out, jobs)
    batches = sorted(p.stem for p in (out / "batches").glob("b*.json"))
    assert {(rule, b) for rule in RULES for b in batches} <= set(ran), ran  # none lost
    assert all(n == 1 for n in ran.values()), ran  # none submitted again


def test_worker_and_snakemake_kill9_orphaned_slurm_jobs_not_run_twice(
    slurm: list[Path], emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    """kill -9 of the worker and its Snakemake (what systemd does to the unit's processes
    when the main one dies): the SLURM jobs they leave must not run beside their resubmitted
    copies. The restarted worker cancels them first; every step ends COMPLETED exactly once,
    and nothing of the session stays in the queue."""
    n = 6
    sid, task_id, _raw, writer = new_session(emhub_server, "slurmkill2", n, 1.0, 34, SMALL)
    out = emhub_server.otf_root / "slurmkill2_OTF"
    slurm.append(out)
    settings = {"otf": {"profile": machine_profile(tmp_path / "slurm-test", "slurm")}}
    writer.start()
    first = worker_factory(idle_timeout=20, settings=settings)
    frozen: list[str] = []
    wait_for(lambda: froze_some(out, frozen), 300,
             "a SLURM job of the session to hold or suspend", step=0.2)  # fmt: skip
    assert first.proc is not None
    controllers = snakemake_children(first.proc.pid)
    assert controllers
    first.kill(signal.SIGKILL)
    for pid in controllers:  # each in its own process group (session)
        os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not any(map(alive, controllers)), 30, "the killed Snakemake to be gone")
    assert {j["id"] for j in squeue(out)} >= set(frozen)  # orphaned, still queued
    before = {j["id"] for j in squeue(out, all_states=True)}
    second = worker_factory(idle_timeout=20, settings=settings)
    wait_for(lambda: emhub_server.is_done(task_id), 600, "the task after the kill")
    writer.join()
    assert_finished_exactly(emhub_server, task_id, out, n)
    assert squeue(out) == []
    jobs = squeue(out, all_states=True)
    done = [job for job in jobs if job["state"] == "COMPLETED"]
    orphans = [job for job in jobs if job["state"] != "COMPLETED"]
    assert {job["id"] for job in orphans} == set(frozen), jobs
    assert all(job["state"] == "CANCELLED" for job in orphans), jobs
    ran = steps_run(out, done)  # (steps an orphan finished before it was frozen may not rerun)
    assert ran and all(n == 1 for n in ran.values()), ran  # no step completed twice
    resubmitted = [job for job in jobs if job["id"] not in before]
    assert resubmitted and min(j["submitted"] for j in resubmitted) >= max(
        j["ended"] for j in orphans
    ), jobs  # the copies were submitted only once the orphans were gone
    assert "cluster job(s)" in second.log_text()


# -- a Snakemake that does not react to signals ------------------------------------------------
def stuck_run(out: Path, profile: str) -> SnakemakeRun:
    """A SnakemakeRun on two batches of ``out``, started."""
    from emotf.demo import demo_config
    from emotf.project import prepare_folder
    from emotf.session.batches import write_manifest
    from emotf.session.feeder import MovieScanner
    from emotf.sim import simulate_session

    session = out.parent / "session"
    simulate_session(session, SMALL, n_movies=4)
    config = demo_config(SMALL.particle_diameter)
    config["batches"] = {"size": 2, "tail_seconds": 0, "settle_seconds": 0}
    conf = prepare_folder(out, session, config)
    movies = MovieScanner(session, conf["movie_globs"], 0, set()).scan()
    write_manifest(out, movies[:2], 1)
    write_manifest(out, movies[2:], 2)
    run = SnakemakeRun(out, ["Results/b000001.json", "Results/b000002.json"], profile)
    run.start()
    return run


def test_stop_of_a_stuck_snakemake_cancels_its_slurm_jobs(
    slurm: list[Path], tmp_path: Path
) -> None:
    """Snakemake stopped (SIGSTOP) so that SIGINT/SIGTERM cannot make it cancel: after the
    SIGKILL the runner cancels the jobs the plugin left."""
    out = tmp_path / "otf"
    slurm.append(out)
    run = stuck_run(out, machine_profile(tmp_path / "slurm-test", "slurm"))
    frozen: list[str] = []
    wait_for(lambda: froze_some(out, frozen), 120,
             "a SLURM job to hold or suspend", step=0.2)  # fmt: skip
    assert run.proc is not None
    os.killpg(run.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    run.stop(grace=2)
    assert run.poll() == -signal.SIGKILL
    wait_for(lambda: not squeue(out), max(1.0, 60 - (time.monotonic() - started)),
             "no job of the stopped run in squeue", step=0.5)  # fmt: skip
    states = {j["id"]: j["state"] for j in squeue(out, all_states=True)}
    assert all(states[jobid] == "CANCELLED" for jobid in frozen), states


def test_stop_of_a_stuck_snakemake_bkills_its_lsf_jobs(
    fakelsf: tuple[dict[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, state = fakelsf
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (state / "hold").touch()
    out = tmp_path / "otf"
    run = stuck_run(out, machine_profile(tmp_path / "lsf-test", "lsf"))
    wait_for(lambda: len(fake_jobs(state)) >= 2, 120, "the two batches' LSF jobs", step=0.2)
    assert run.proc is not None
    os.killpg(run.proc.pid, signal.SIGSTOP)
    run.stop(grace=2)
    assert run.poll() == -signal.SIGKILL
    jobs = fake_jobs(state)
    assert set(jobs) <= bkilled(state), (jobs, bkilled(state))
    wait_for(lambda: "RUN" not in fake_jobs(state).values(), 60, "the bkilled jobs to end")
