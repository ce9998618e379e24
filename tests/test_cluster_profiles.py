"""Profiles: dry runs from a processing folder, a real local SLURM, and LSF via a stand-in.

* SLURM: ``tests/cluster/slurm_up.sh`` brings up slurmctld + slurmd on localhost (``make
  test`` does it when run as root). Without a reachable controller the SLURM test is skipped
  with the reason printed, never passed silently; it fails instead with EMOTF_REQUIRE_SLURM=1
  (``make test`` sets it as root, where a SLURM that does not start also fails ``make test``)
  or as root with CI=true.
* LSF cannot run here: ``tests/cluster/fakelsf.py`` stands in for bsub/bjobs/bkill/badmin/
  lsclusters, runs jobs locally and records every bsub argv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emotf.cli import run_session
from emotf.demo import demo_config
from emotf.session.otf import OtfOptions
from emotf.sim import SimParams, simulate_session

HERE = Path(__file__).parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("relion_run_motioncorr") is None, reason="RELION missing"),
]


def small_session(tmp_path: Path, n: int = 2) -> tuple[Path, dict]:
    session = tmp_path / "session"
    params = SimParams(size=384, n_frames=8, gain=False, seed=4)
    simulate_session(session, params, n_movies=n)
    config = demo_config(params.particle_diameter)
    config["batches"] = {"size": n, "tail_seconds": 0, "settle_seconds": 0}
    return session, config


def cluster_profile(out: Path, name: str, changes: dict) -> str:
    """A copy of profile ``name`` with test-machine resources, inside the folder."""
    profile = yaml.safe_load((out / "profiles" / name / "config.yaml").read_text())
    for key, value in changes.items():
        profile[key] = value
    folder = out / "profiles" / f"{name}-test"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return f"profiles/{name}-test"


def snakemake(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


@pytest.mark.parametrize("profile", [None, "profiles/slurm", "profiles/lsf"])
def test_dry_run_from_the_folder_with_each_profile(tmp_path: Path, profile: str | None) -> None:
    session, config = small_session(tmp_path)
    out = tmp_path / "otf"
    from emotf.project import prepare_folder
    from emotf.session.batches import write_manifest
    from emotf.session.feeder import MovieScanner

    conf = prepare_folder(out, session, config)
    write_manifest(out, MovieScanner(session, conf["movie_globs"], 0, set()).scan(), 1)
    args = ["-n"] + (["--profile", profile] if profile else [])
    result = snakemake(out, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    for rule in ("import_movies", "motioncor", "ctffind", "cryolo", "batch_results"):
        assert rule in text


def slurm_ready() -> str | None:
    if shutil.which("sinfo") is None:
        return "SLURM is not installed (tests/cluster/slurm_up.sh installs and starts it)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                           timeout=30, check=False)  # fmt: skip
    states = {line.strip() for line in probe.stdout.splitlines()}
    if probe.returncode != 0 or not states & {"idle", "mixed", "allocated", "completing"}:
        return (
            f"SLURM controller not reachable or no usable node ({sorted(states)}): "
            f"{probe.stderr.strip()[:200]}"
        )
    return None


def slurm_required() -> bool:
    """``make test`` sets EMOTF_REQUIRE_SLURM=1 as root; CI (root, CI=true) requires SLURM
    even when pytest is started directly."""
    if os.environ.get("EMOTF_REQUIRE_SLURM"):
        return True
    return os.geteuid() == 0 and os.environ.get("CI", "").lower() in ("1", "true", "yes")


# a step as a job log prints it (the job's Snakemake, and the one srun starts for the step)
STEP_RE = re.compile(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: batch=(b\d{6})", re.M)
BATCH_RULES = {"import_movies", "motioncor", "ctffind", "cryolo"}


def require_slurm() -> None:
    reason = slurm_ready()
    if reason:
        print(f"SKIPPED real SLURM test: {reason}")
        if slurm_required():
            pytest.fail(f"{reason} (SLURM is required here: root with EMOTF_REQUIRE_SLURM or CI)")
        pytest.skip(reason)


def slurm_session(tmp_path: Path, config: dict) -> tuple[Path, str]:
    """The processing folder and a copy of the shipped SLURM profile inside it: shipped
    partitions (the batch group on gpu), this machine's memory and runtime, job logs kept."""
    from emotf.project import prepare_folder

    out = tmp_path / "otf"
    prepare_folder(out, tmp_path / "session", config)
    resources = {"runtime": 10, "mem_mb": 1000}
    shipped = yaml.safe_load((out / "profiles" / "slurm" / "config.yaml").read_text())
    profile = cluster_profile(out, "slurm", {
        "default-resources": {**resources, "slurm_partition": "cpu"},
        "set-resources": {rule: {**values, **resources}
                          for rule, values in shipped["set-resources"].items()},
        "slurm-keep-successful-logs": True,
    })  # fmt: skip
    return out, profile


def our_jobs(out: Path, fields: str) -> list[list[str]]:
    """``squeue --Format`` fields of every job SLURM lists with ``out`` as working directory
    (finished ones too: the test cluster keeps them 10 minutes)."""
    text = subprocess.run(["squeue", "--states=all", "-h", "-O", f"{fields},WorkDir:500"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = [line.split() for line in text.splitlines()]
    return [r[:-1] for r in rows if r and os.path.realpath(r[-1]) == os.path.realpath(out)]


def test_session_through_real_slurm(tmp_path: Path) -> None:
    """Two batches through the shipped SLURM profile: exactly one SLURM job per batch, on
    the GPU partition, and each job ran every step of its own batch and none of the other's
    (read from the kept job logs)."""
    require_slurm()
    session, config = small_session(tmp_path)
    config["batches"]["size"] = 1  # two movies, two batches
    out, profile = slurm_session(tmp_path, config)
    status = run_session(
        session, out, config, OtfOptions(once=True, poll_interval=1, profile=profile), quiet=True
    )
    assert status.counts["done"] == 2, status.failures
    batches = sorted(p.stem for p in (out / "batches").glob("b*.json"))
    assert len(batches) == 2, batches
    # one SLURM job per batch (not one per step, nor one for the run)
    ours = our_jobs(out, "JobID:20,State:20,Partition:20")
    assert len(ours) == 2, ours
    assert all(state == "COMPLETED" and part == "gpu" for _id, state, part in ours), ours
    logs = {p.stem: p for p in (out / ".snakemake" / "slurm_logs").rglob("*.log")}
    ran = {job[0]: set(STEP_RE.findall(logs[job[0]].read_text(errors="replace")))
           for job in ours}  # fmt: skip
    done_by = sorted(sorted({batch for _rule, batch in steps}) for steps in ran.values())
    assert done_by == [[b] for b in batches], ran  # each job: one batch, its own
    for steps in ran.values():
        assert BATCH_RULES <= {rule for rule, _batch in steps}, steps


def test_gpu_step_in_the_batch_job_gets_a_slurm_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MotionCor3 (a GPU program; ``tests/fakes`` stands in for it, and the test cluster's
    two GPUs are fake gres): the batch's one SLURM job asks for one GPU (the rule's gpu=1;
    a group asks for its largest layer) with the profile's cpus_per_gpu, and the motion
    correction step inside the job runs on a GPU SLURM gave it (CUDA_VISIBLE_DEVICES)."""
    require_slurm()
    sys.path.insert(0, str(HERE / "fakes"))
    from fake_tools import install

    install(tmp_path / "bin")
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(calls))  # sbatch --export=ALL passes both
    session, config = small_session(tmp_path)
    # the fake writes flat micrographs: CTF from the CTFFIND stand-in too
    config.update(motioncor={"backend": "motioncor3"}, ctffind={"backend": "ctffind5"})
    out, profile = slurm_session(tmp_path, config)
    status = run_session(
        session, out, config, OtfOptions(once=True, poll_interval=1, profile=profile), quiet=True
    )
    assert status.counts["done"] == 2, status.failures
    ours = our_jobs(out, "State:20,Partition:20,tres-per-job:40,NumCPUs:10")
    assert len(ours) == 1, ours
    state, partition, gpus, cpus = ours[0]
    assert (state, partition) == ("COMPLETED", "gpu"), ours
    assert gpus.endswith("gpu:1") and cpus == "4", ours  # cpus_per_gpu: 4
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    motioncor = [r for r in runs if r["tool"] == "MotionCor3"]
    assert motioncor and all(r["cuda"] not in (None, "") for r in motioncor), runs


def test_lsf_profile_against_recording_bsub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "lsfbin"
    bin_dir.mkdir()
    for name in ("bsub", "bjobs", "bkill", "badmin", "lsclusters", "bhist"):
        tool = bin_dir / name
        tool.write_text(
            f"#!{sys.executable}\nimport importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('fakelsf', "
            f"{str(HERE / 'cluster' / 'fakelsf.py')!r})\n"
            "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n"
            f"sys.exit(module.COMMANDS[{name!r}](sys.argv[1:]))\n"
        )
        tool.chmod(0o755)
    state = tmp_path / "lsfstate"
    monkeypatch.setenv("FAKELSF_STATE", str(state))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    session, config = small_session(tmp_path)
    out = tmp_path / "otf"
    from emotf.project import prepare_folder

    prepare_folder(out, session, config)
    profile = cluster_profile(out, "lsf", {"seconds-between-status-checks": 2})
    status = run_session(
        session, out, config, OtfOptions(once=True, poll_interval=1, profile=profile), quiet=True
    )
    assert status.counts["done"] == 2, status.failures
    subs = [json.loads(line) for line in (state / "submissions.jsonl").read_text().splitlines()]
    # one bsub for the batch: its steps grouped into one job, on the GPU queue with a GPU
    assert len(subs) == 1, subs
    job = subs[0]
    name = job[job.index("-J") + 1]
    assert name.startswith("Snakemake_group_"), name
    for rule in BATCH_RULES:
        assert f"{rule}__batch=b000001" in name, name
    assert job[job.index("-q") + 1] == "gpu" and job[job.index("-P") + 1] == "emotf"
    assert "-gpu" in job and job[job.index("-gpu") + 1] == "num=1"
    assert int(job[job.index("-W") + 1]) >= 60  # the steps' runtimes in series
    assert any(a.startswith("rusage[mem=") for a in job)


@pytest.mark.parametrize("name", ["slurm", "lsf"])
def test_bare_profile_name_after_install(tmp_path: Path, name: str) -> None:
    from emotf.profiles_cli import install, user_profile_dir
    from emotf.project import prepare_folder
    from emotf.session.batches import write_manifest
    from emotf.session.feeder import MovieScanner

    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    os.environ["XDG_CONFIG_HOME"] = env["XDG_CONFIG_HOME"]
    try:
        installed = install(user_profile_dir(), force=False)
    finally:
        del os.environ["XDG_CONFIG_HOME"]
    assert str(tmp_path / "xdg" / "snakemake" / name) in installed
    session, config = small_session(tmp_path)
    out = tmp_path / "otf"
    conf = prepare_folder(out, session, config)
    write_manifest(out, MovieScanner(session, conf["movie_globs"], 0, set()).scan(), 1)
    result = snakemake(out, "--profile", name, "-n", env=env)  # the bare name, from the folder
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Using profiles {name}" in result.stderr and "motioncor" in result.stdout
    empty = dict(env, XDG_CONFIG_HOME=str(tmp_path / "empty"), HOME=str(tmp_path / "home"))
    assert snakemake(out, "--profile", name, "-n", env=empty).returncode != 0  # not installed
