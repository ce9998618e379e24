"""The real-SLURM test cannot skip silently in CI, and slurm_up.sh never clobbers a host's set-up.

* ``make test`` as root (CI): a SLURM that does not start fails the run, and pytest gets
  EMOTF_REQUIRE_SLURM=1; as another user it goes on and the SLURM test skips with the reason.
  The recipe lines are taken from ``make -n`` and run by ``sh`` as make would, with the SLURM
  start replaced by ``false`` and pytest by ``env`` (nothing is installed or started).
* ``slurm_up.sh STATE config`` checks and writes only the configuration files, moved to a
  temporary folder with EMOTF_SLURM_ETC / EMOTF_MUNGE_KEY (no daemon is started).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "cluster" / "slurm_up.sh"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make missing")


def recipe(pattern: str) -> str:
    lines = subprocess.run(
        ["make", "-n", "-o", "system", "-o", "venv", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    (line,) = [x for x in lines if re.search(pattern, x)]
    return line


def run_line(line: str, as_nobody: bool, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMOTF_REQUIRE")}
    prefix = NOBODY if as_nobody else []
    return subprocess.run(prefix + ["sh", "-c", line], cwd="/", capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=60, check=False)  # fmt: skip


def slurm_start_failing() -> str:
    line = recipe(r"slurm_up\.sh")
    stubbed = re.sub(r"bash tests/cluster/slurm_up\.sh \S+", "false", line)
    assert stubbed != line
    return stubbed


def pytest_env_line() -> str:
    line = recipe(r"/pytest\b")
    return re.sub(r"\S*/pytest\b.*$", "env", line)


@needs_make
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, as in CI")
def test_as_root_a_failed_slurm_start_fails_make_test() -> None:
    proc = run_line(slurm_start_failing(), as_nobody=False)
    assert proc.returncode != 0, proc.stdout
    assert "SLURM did not start" in proc.stderr
    env = run_line(pytest_env_line(), as_nobody=False).stdout.splitlines()
    assert "EMOTF_REQUIRE_SLURM=1" in env and "EMOTF_REQUIRE_EMHUB=1" in env


@needs_make
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the recipe as another user")  # fmt: skip
def test_as_another_user_make_test_goes_on_and_the_slurm_test_may_skip() -> None:
    proc = run_line(slurm_start_failing(), as_nobody=True)
    assert proc.returncode == 0, proc.stderr
    assert "will be skipped, with the reason" in proc.stdout
    env = run_line(pytest_env_line(), as_nobody=True).stdout.splitlines()
    assert "EMOTF_REQUIRE_SLURM=" in env  # empty: the SLURM test skips with its reason
    forced = run_line(pytest_env_line(), as_nobody=True, env={"EMOTF_REQUIRE_SLURM": "1"})
    assert "EMOTF_REQUIRE_SLURM=1" in forced.stdout.splitlines()  # a developer's choice wins


def test_ci_as_root_requires_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cluster_profiles import slurm_required

    monkeypatch.delenv("EMOTF_REQUIRE_SLURM", raising=False)
    monkeypatch.setenv("CI", "true")
    assert slurm_required() == (os.geteuid() == 0)
    monkeypatch.setenv("EMOTF_REQUIRE_SLURM", "1")
    assert slurm_required()


def configure(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EMOTF_SLURM_ETC": str(tmp_path / "etc"),
        "EMOTF_MUNGE_KEY": str(tmp_path / "munge" / "munge.key"),
    }
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "state"), "config"],
                          capture_output=True, text=True, env=env, timeout=60,
                          check=False)  # fmt: skip


@pytest.mark.parametrize("name", ["slurm.conf", "gres.conf"])
def test_a_host_slurm_conf_is_never_overwritten(tmp_path: Path, name: str) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / name).write_text("ClusterName=production\n")
    proc = configure(tmp_path)
    assert proc.returncode == 1
    assert f"{etc / name} exists and was not written by this script" in proc.stderr
    assert (etc / name).read_text() == "ClusterName=production\n"
    assert sorted(p.name for p in etc.iterdir()) == [name]  # nothing else written either


def test_a_symlinked_slurm_conf_is_refused(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    target = tmp_path / "real.conf"
    target.write_text("ClusterName=production\n")
    (etc / "slurm.conf").symlink_to(target)
    assert configure(tmp_path).returncode == 1
    assert target.read_text() == "ClusterName=production\n"


def test_its_own_files_are_rewritten_idempotently(tmp_path: Path) -> None:
    first = configure(tmp_path)
    assert first.returncode == 0, first.stderr
    conf = tmp_path / "etc" / "slurm.conf"
    text = conf.read_text()
    assert text.startswith("# Written by emotf tests/cluster/slurm_up.sh")
    assert f"StateSaveLocation={tmp_path / 'state'}/state" in text
    before = conf.stat()
    again = configure(tmp_path)
    assert again.returncode == 0, again.stderr
    after = conf.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_file_of_the_earlier_script_is_adopted(tmp_path: Path) -> None:
    """The unmarked slurm.conf the previous version wrote (same settings) is taken over."""
    assert configure(tmp_path).returncode == 0
    conf = tmp_path / "etc" / "slurm.conf"
    unmarked = "".join(conf.read_text().splitlines(keepends=True)[1:])
    conf.write_text(unmarked)
    assert configure(tmp_path).returncode == 0
    assert conf.read_text().splitlines()[1:] == unmarked.splitlines()


def test_an_existing_munge_key_is_kept(tmp_path: Path) -> None:
    key = tmp_path / "munge" / "munge.key"
    key.parent.mkdir()
    key.write_bytes(b"host key \x00\x01")
    assert configure(tmp_path).returncode == 0
    assert key.read_bytes() == b"host key \x00\x01"
