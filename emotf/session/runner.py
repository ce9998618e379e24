"""One Snakemake invocation as a child process in its own process group.

Stopping sends SIGINT to the whole group (Snakemake then cancels its cluster jobs), escalates
to SIGTERM and SIGKILL after timeouts (Snakemake can ignore signals when stuck), and finally
runs ``snakemake --unlock`` so the folder stays usable by hand.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..trust import TrustPolicy, check_folder
from .cluster_jobs import cancel_folder_jobs

log = logging.getLogger(__name__)

BASE_ARGS = ["--rerun-incomplete", "--keep-going", "--rerun-triggers", "mtime"]
# Always the folder's own workflow entry point: a Snakefile planted at the folder's top
# level (which plain ``snakemake`` would prefer) is never run.
SNAKEFILE = "workflow/Snakefile"


def snakemake_argv(
    targets: list[str], profile: str | None, extra: list[str] | None = None
) -> list[str]:
    argv = [sys.executable, "-m", "snakemake", "--snakefile", SNAKEFILE, *targets, *BASE_ARGS]
    if profile:
        argv += ["--profile", profile]
    return argv + list(extra or [])


class SnakemakeRun:
    """A running ``snakemake`` for a set of target files in a processing folder."""

    def __init__(
        self,
        out_dir: Path,
        targets: list[str],
        profile: str | None = None,
        extra: list[str] | None = None,
        name: str = "run",
        policy: TrustPolicy | None = None,
        rule_dirs: list[str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.policy = policy or TrustPolicy()
        self.rule_dirs = list(rule_dirs or [])
        self.targets = list(targets)
        self.profile = profile
        self.argv = snakemake_argv(self.targets, profile, extra)
        self.log_path = self.out_dir / "logs" / "snakemake" / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        """Start Snakemake; UntrustedFolder (nothing run) if a code file of the folder could
        have been changed by someone else."""
        check_folder(self.out_dir, self.policy, self.rule_dirs)
        if self.profile and not live_snakemake(self.out_dir):
            # jobs of a Snakemake that was killed: this run would submit them again
            cancel_folder_jobs(self.out_dir, self.profile)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting snakemake for %d targets (log %s)", len(self.targets), self.log_path)
        with open(self.log_path, "ab") as handle:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.out_dir,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.time()

    def poll(self) -> int | None:
        if self.proc is None:
            raise RuntimeError("snakemake run was not started")
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        if self.proc is None:
            raise RuntimeError("snakemake run was not started")
        return self.proc.wait(timeout)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 60.0) -> int:
        """Interrupt the run; returns its exit code. Never leaves the folder locked."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
            log.info("stopping snakemake (pid %d) with %s", self.proc.pid, sig.name)
            self._signal(sig)
            try:
                code = self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            code = self.proc.wait()
        if not live_snakemake(self.out_dir):  # never break the lock of a run someone started
            if self.profile:  # jobs the plugin did not cancel (SIGKILL, submission in flight)
                cancel_folder_jobs(self.out_dir, self.profile)
            unlock(self.out_dir, self.policy, self.rule_dirs)
        return code


def child_env() -> dict[str, str]:
    """The environment of Snakemake: this one, with this Python's ``bin`` first on PATH, so
    rules find ``emotf`` (``emotf step foreach``) and ``snakemake`` of the same install."""
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *parts])
    return env


def _workdir(cmdline: list[str], cwd: str) -> str:
    """The folder a snakemake command line works in (``-d``/``--directory``, else its cwd)."""
    for i, part in enumerate(cmdline):
        if part in ("-d", "--directory") and i + 1 < len(cmdline):
            return os.path.realpath(os.path.join(cwd, cmdline[i + 1]))
        if part.startswith("--directory="):
            return os.path.realpath(os.path.join(cwd, part.split("=", 1)[1]))
    return os.path.realpath(cwd)


def live_snakemake(out_dir: Path) -> list[int]:
    """PIDs of snakemake processes working in ``out_dir`` (ours, orphans, or a person's,
    whether started in the folder or elsewhere with ``-d``)."""
    import psutil

    target = os.path.realpath(out_dir)
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if not any(os.path.basename(part) == "snakemake" for part in cmdline[:3]):
                continue  # (a path that merely contains the word is not snakemake)
            if "--mode" in cmdline and "remote" in cmdline:
                continue  # a cluster job's own snakemake (a compute node's, not a run)
            if _workdir(cmdline, proc.cwd()) == target:
                pids.append(int(proc.info["pid"]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return pids


def lock_failure(log_path: Path) -> bool:
    """True if the run failed only because the folder was locked."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log_path) - 20000))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return False
    return "LockException" in tail or "Directory cannot be locked" in tail


def unlock(
    out_dir: Path, policy: TrustPolicy | None = None, rule_dirs: list[str] | None = None
) -> None:
    """``snakemake --unlock`` after an interrupted run (a no-op when nothing is locked). It
    parses the workflow, so the folder's code is checked first, as for any run."""
    check_folder(out_dir, policy or TrustPolicy(), rule_dirs or [])
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", SNAKEFILE, "--unlock"],
        cwd=out_dir,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
