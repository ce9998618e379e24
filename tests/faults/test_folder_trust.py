"""Fail closed on a processing folder (issue 17, items 1, 5, 6 and the unlock item).

Each case fails on the release before this change: a planted top-level Snakefile ran, any
folder and any rule file were run whoever could write them, two runs raced on one folder,
a non-emotf folder was adopted, ``Movies/<key>`` and top-level STAR files were replaced,
and a person's ``snakemake -d`` run was not seen (so ``--unlock`` broke its lock).
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runs import emotf_run, finished_line

from emotf.config import ConfigError
from emotf.demo import demo_config
from emotf.project import prepare_folder
from emotf.session.folder_lock import FolderBusy, FolderLock
from emotf.session.runner import live_snakemake
from emotf.sim import SimParams, simulate_session

NEEDS_RELION = pytest.mark.skipif(
    shutil.which("relion_run_motioncorr") is None, reason="RELION missing"
)
PARAMS = SimParams(size=256, n_frames=8, format="tiff", gain=False, seed=41)


def session(tmp_path: Path, n: int = 1) -> tuple[Path, Path, dict[str, object]]:
    raw, out = tmp_path / "raw", tmp_path / "raw_OTF"
    truth = simulate_session(raw, PARAMS, n_movies=n)
    config = demo_config(truth.particle_diameter)
    prepare_folder(out, raw, config)
    return raw, out, config


@NEEDS_RELION
@pytest.mark.slow
def test_a_planted_top_level_snakefile_is_never_run(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path)
    marker = tmp_path / "planted-ran"
    (out / "Snakefile").write_text(f'open("{marker}", "w").close()\n\nrule all:\n    input: []\n')
    proc = emotf_run(raw, out)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "done 1" in proc.stdout.splitlines()[-1]  # the folder's own workflow ran


def test_code_writable_by_others_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path)
    rule = out / "workflow" / "rules" / "local" / "evil.smk"
    rule.write_text('open("pwned", "w").close()\n')
    for mode, what in ((0o664, "writable by group"), (0o646, "writable by others")):
        rule.chmod(mode)
        proc = emotf_run(raw, out)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert f"{rule} is {what}" in proc.stderr
        assert not (out / "pwned").exists() and not (out / "batches").exists()
    (out / "workflow" / "rules" / "local").chmod(0o777)
    rule.chmod(0o644)
    proc = emotf_run(raw, out)
    assert proc.returncode == 4 and "rules/local is writable by others" in proc.stderr


def test_a_trusted_group_may_write_the_workflow(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path, n=0)
    rule = out / "workflow" / "rules" / "local" / "shared.smk"
    rule.write_text("# shared with the facility group\n")
    rule.chmod(0o664)
    group = grp.getgrgid(rule.stat().st_gid).gr_name
    assert emotf_run(raw, out).returncode == 4
    proc = emotf_run(raw, out, "--trust-group", group, "--idle-timeout", "1")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_config_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path, n=0)
    os.chown(out / "config.yaml", 65534, 65534)
    proc = emotf_run(raw, out)
    assert proc.returncode == 4 and "config.yaml is owned by uid 65534" in proc.stderr


def test_a_symlinked_rule_file_is_refused(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path, n=0)
    elsewhere = tmp_path / "elsewhere.smk"
    elsewhere.write_text("# somebody's file\n")
    (out / "workflow" / "rules" / "local" / "link.smk").symlink_to(elsewhere)
    proc = emotf_run(raw, out)
    assert proc.returncode == 4 and "link.smk is a symbolic link" in proc.stderr


def test_one_live_run_per_folder(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path, n=0)
    with FolderLock(out, "worker task 7 (session 3)"):
        proc = emotf_run(raw, out)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"processing folder {out} is already in use by worker task 7 (session 3)" in proc.stderr
    assert not (out / "batches").exists()
    assert emotf_run(raw, out, "--idle-timeout", "1").returncode == 0  # free again


def test_a_folder_belongs_to_one_session(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    out = tmp_path / "otf"
    prepare_folder(out, raw, {}, owner="emhub session 1")
    prepare_folder(out, raw, {}, owner="emhub session 1")  # the same session again: fine
    with pytest.raises(FolderBusy, match="belongs to emhub session 1, not to emhub session 2"):
        prepare_folder(out, raw, {}, owner="emhub session 2")


def test_a_folder_of_someone_elses_files_is_not_adopted(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "micrographs.star").write_text("my own curated list\n")
    with pytest.raises(ConfigError, match="is not an emotf processing folder"):
        prepare_folder(theirs, raw, {})
    assert sorted(p.name for p in theirs.iterdir()) == ["micrographs.star"]


@NEEDS_RELION
@pytest.mark.slow
def test_files_emotf_did_not_make_are_never_replaced(tmp_path: Path) -> None:
    raw, out, _config = session(tmp_path, n=2)
    keys = sorted(str(p.relative_to(raw)) for p in raw.rglob("*_fractions.tiff"))
    user_file = out / "Movies" / keys[0]
    user_file.parent.mkdir(parents=True)
    user_file.write_text("a file a person put here\n")
    star = out / "micrographs_ctf.star"
    star.write_text("data_\nmy own table\n")
    proc = emotf_run(raw, out)
    assert proc.returncode == 0, proc.stderr
    assert user_file.read_text() == "a file a person put here\n" and not user_file.is_symlink()
    assert star.read_text() == "data_\nmy own table\n"
    assert (out / "micrographs.star").read_text().startswith("# Created by emotf")
    last = finished_line(proc.stdout)
    assert "done 1" in last and "failed 1" in last, last
    assert "failed x1: import: Movies/" in proc.stdout
    assert "already exists and is not a link to this movie; left as is" in proc.stdout
    (out / "movies.star").write_text("changed by a person\n")  # emotf's file, edited since
    from emotf.config import read_folder_config
    from emotf.outputs import write_session_stars

    write_session_stars(out, read_folder_config(out))
    assert (out / "movies.star").read_text() == "changed by a person\n"


def test_a_symlinked_movies_folder_is_not_followed(tmp_path: Path) -> None:
    from emotf.steps.importer import LinkError, _link

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "Movies").symlink_to(elsewhere)
    movie = tmp_path / "m.tiff"
    movie.write_bytes(b"x")
    with pytest.raises(LinkError, match="Movies/ is a symbolic link"):
        _link(work, "GridSquare_1/Data/m.tiff", movie)
    assert list(elsewhere.iterdir()) == []


def test_a_snakemake_started_elsewhere_with_d_is_seen(tmp_path: Path) -> None:
    folder = tmp_path / "proc"
    folder.mkdir()
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(60)\n")
    person = subprocess.Popen([sys.executable, str(fake), "-d", str(folder), "all"], cwd=tmp_path)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and person.pid not in live_snakemake(folder):
            time.sleep(0.2)
        assert person.pid in live_snakemake(folder)
        assert person.pid not in live_snakemake(tmp_path)
    finally:
        person.kill()
        person.wait()
