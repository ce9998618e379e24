"""Cluster jobs (SLURM, LSF) that Snakemake submitted from a processing folder.

The executor plugins cancel their jobs only when Snakemake exits through its interrupt
handler, and even then a job whose ``sbatch`` was in flight (the SLURM plugin submits from a
thread pool) is missed. A Snakemake killed with SIGKILL (stuck, or killed with its worker's
control group) cancels nothing, and a new Snakemake in the folder would submit the same
jobs again (``--rerun-incomplete``) while the old ones still run: two jobs writing the same
outputs. So after a run is stopped, and before a run starts in a folder where no Snakemake
is alive, the worker cancels the unfinished Snakemake jobs of that folder here and waits
until the scheduler no longer lists them.

A job belongs to a folder when it was submitted by Snakemake (SLURM: ``--comment rule_...``,
the plugin's; LSF: job name ``Snakemake_...``) with the folder as its working directory
(SLURM ``%Z``; LSF ``sub_cwd``). Only the current user's jobs are listed.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

SLURM_ACTIVE = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,RESIZING,STOPPED"
LSF_FINISHED = {"DONE", "EXIT", "UNKWN", "ZOMBI"}
QUERY_TIMEOUT = 60.0


class ClusterQueryError(RuntimeError):
    """A scheduler command failed (its argv and stderr are in the message)."""


@dataclass(frozen=True)
class ClusterJob:
    scheduler: str  # "slurm" | "lsf"
    jobid: str
    state: str
    name: str


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterQueryError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise ClusterQueryError(
            f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()[:300]}"
        )
    return done.stdout


def _same_dir(path: str, target: str) -> bool:
    if path.startswith("$HOME"):
        path = os.path.expanduser("~") + path[len("$HOME") :]
    return bool(path) and os.path.realpath(path) == target


def slurm_jobs(out_dir: Path) -> list[ClusterJob]:
    """Unfinished SLURM jobs Snakemake submitted from ``out_dir``."""
    if shutil.which("squeue") is None:
        return []
    target = os.path.realpath(out_dir)
    text = _run(["squeue", "-h", f"--user={_user()}", "-t", SLURM_ACTIVE, "-o", "%i|%T|%k|%Z"])
    jobs = []
    for line in text.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[2].startswith("rule_") and _same_dir(parts[3], target):
            jobs.append(ClusterJob("slurm", parts[0], parts[1], parts[2]))
    return jobs


def lsf_jobs(out_dir: Path) -> list[ClusterJob]:
    """Unfinished LSF jobs Snakemake submitted from ``out_dir`` (``bjobs -json``: full
    field values, no column truncation)."""
    if shutil.which("bjobs") is None:
        return []
    target = os.path.realpath(out_dir)
    argv = ["bjobs", "-u", _user(), "-o", "jobid stat job_name sub_cwd", "-json"]
    try:
        records = json.loads(_run(argv)).get("RECORDS", [])
    except json.JSONDecodeError as exc:
        raise ClusterQueryError(f"{' '.join(argv)}: unreadable output ({exc})") from exc
    jobs = []
    for rec in records:
        name, state = str(rec.get("JOB_NAME", "")), str(rec.get("STAT", ""))
        if state in LSF_FINISHED or not name.startswith("Snakemake_"):
            continue
        if _same_dir(str(rec.get("SUB_CWD", "")), target):
            jobs.append(ClusterJob("lsf", str(rec.get("JOBID", "")), state, name))
    return jobs


def profile_executor(out_dir: Path, profile: str | None) -> str | None:
    """The ``executor:`` of a Snakemake profile (a folder, relative to ``out_dir`` or
    absolute, or a name installed where Snakemake looks), or None if it cannot be read."""
    if not profile:
        return None
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    for folder in (out_dir / profile, Path(xdg) / "snakemake" / profile,
                   Path("/etc/xdg/snakemake") / profile):  # fmt: skip
        for name in ("config.yaml", "profile.yaml"):
            try:
                data = yaml.safe_load((folder / name).read_text())
            except (OSError, yaml.YAMLError):
                continue
            executor = data.get("executor") if isinstance(data, dict) else None
            return str(executor) if executor else None
    return None


def folder_jobs(out_dir: Path, profile: str | None = None) -> list[ClusterJob]:
    """The unfinished jobs of ``out_dir`` on the scheduler the profile submits to (both
    SLURM and LSF when that is unknown)."""
    executor = profile_executor(out_dir, profile)
    jobs = [] if executor == "lsf" else slurm_jobs(out_dir)
    return jobs + ([] if executor == "slurm" else lsf_jobs(out_dir))


def _cancel(jobs: list[ClusterJob]) -> None:
    for scheduler, command in (("slurm", "scancel"), ("lsf", "bkill")):
        ids = [job.jobid for job in jobs if job.scheduler == scheduler]
        if ids:
            subprocess.run([command, *ids], capture_output=True, timeout=QUERY_TIMEOUT, check=False)


def cancel_folder_jobs(
    out_dir: Path, profile: str | None = None, timeout: float = 60.0
) -> list[ClusterJob]:
    """Cancel every unfinished Snakemake job of ``out_dir`` and wait (up to ``timeout``)
    until the schedulers list none; returns the jobs that were cancelled. Call it only when
    no Snakemake is alive in the folder (their jobs would be cancelled too)."""
    try:
        jobs = folder_jobs(out_dir, profile)
    except ClusterQueryError as exc:
        log.warning("cannot list the cluster jobs of %s: %s", out_dir, exc)
        return []
    if not jobs:
        return []
    log.warning(
        "cancelling %d cluster job(s) of %s that no Snakemake controls: %s",
        len(jobs),
        out_dir,
        " ".join(f"{j.scheduler}:{j.jobid}" for j in jobs),
    )
    cancelled = {(j.scheduler, j.jobid): j for j in jobs}
    deadline = time.monotonic() + timeout
    while jobs and time.monotonic() < deadline:
        _cancel(jobs)
        time.sleep(1.0)
        try:
            jobs = folder_jobs(out_dir, profile)
        except ClusterQueryError as exc:
            log.warning("cannot list the cluster jobs of %s: %s", out_dir, exc)
            break
        cancelled.update({(j.scheduler, j.jobid): j for j in jobs})
    if jobs:
        log.error("cluster jobs of %s still listed after %.0f s: %s", out_dir, timeout,
                  " ".join(j.jobid for j in jobs))  # fmt: skip
    return list(cancelled.values())
