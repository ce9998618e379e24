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
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emotf.cli import run_session
from emotf.demo import demo_config
from emotf.otf import OtfOptions
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
    from emotf.batches import write_manifest
    from emotf.feeder import MovieScanner
    from emotf.project import prepare_folder

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


def test_session_through_real_slurm(tmp_path: Path) -> None:
    reason = slurm_ready()
    if reason:
        print(f"SKIPPED real SLURM test: {reason}")
        if slurm_required():
            pytest.fail(f"{reason} (SLURM is required here: root with EMOTF_REQUIRE_SLURM or CI)")
        pytest.skip(reason)
    session, config = small_session(tmp_path)
    out = tmp_path / "otf"
    from emotf.project import prepare_folder

    prepare_folder(out, session, config)
    resources = {"runtime": 10, "mem_mb": 1000}
    shipped = yaml.safe_load((out / "profiles" / "slurm" / "config.yaml").read_text())
    profile = cluster_profile(out, "slurm", {
        "default-resources": {**resources, "slurm_partition": "cpu"},
        # the shipped partitions (the batch group on gpu), this machine's memory and runtime
        "set-resources": {rule: {**values, **resources}
                          for rule, values in shipped["set-resources"].items()},
    })  # fmt: skip
    status = run_session(
        session, out, config, OtfOptions(once=True, poll_interval=1, profile=profile), quiet=True
    )
    assert status.counts["done"] == 2, status.failures
    jobs = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%T|%k|%P|%Z"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    ours = [f for f in (line.split("|") for line in jobs.splitlines())
            if os.path.realpath(f[4]) == os.path.realpath(out)]  # fmt: skip
    # the profile groups a batch's steps: one SLURM job (on the GPU partition) for the batch
    assert len(ours) == 1 and ours[0][2].startswith("rule_batch"), ours
    for rule in ("import_movies", "motioncor", "ctffind", "cryolo"):
        assert rule in ours[0][2]
    assert ours[0][1] == "COMPLETED" and ours[0][3] == "gpu", ours


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

    def by_rule(rule: str) -> list[str]:
        return next(s for s in subs if any(f"rule_{rule}:" in a for a in s))

    mc = by_rule("motioncor")
    assert mc[mc.index("-q") + 1] == "gpu" and mc[mc.index("-P") + 1] == "emotf"
    assert "-gpu" in mc and mc[mc.index("-gpu") + 1] == "num=1"
    assert mc[mc.index("-W") + 1] == "60" and mc[mc.index("-n") + 1] == "2"
    assert any(a.startswith("rusage[mem=") for a in mc)
    ctf = by_rule("ctffind")
    assert ctf[ctf.index("-q") + 1] == "normal" and "-gpu" not in ctf


@pytest.mark.parametrize("name", ["slurm", "lsf"])
def test_bare_profile_name_after_install(tmp_path: Path, name: str) -> None:
    from emotf.batches import write_manifest
    from emotf.feeder import MovieScanner
    from emotf.profiles_cli import install, user_profile_dir
    from emotf.project import prepare_folder

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
