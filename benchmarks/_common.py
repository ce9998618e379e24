"""Helpers shared by the benchmark scripts (not a test module; nothing here asserts).

Every script: simulates its session with ``emotf.sim`` in a temporary work folder (or
``--workdir``), runs emotf and the tools as subprocesses (argv lists, ``sys.executable``),
prints a table ``figure | measured | goal | met?`` and, with ``--json PATH``, writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

MB = 1024**2

REQUIRED_PROGRAMS = ("relion_run_motioncorr", "relion_autopick")


# -- results table ---------------------------------------------------------------------------
@dataclass
class Figure:
    name: str
    value: float | None
    unit: str = ""
    goal: float | None = None  # upper bound unless ``higher`` is set
    higher: bool = False  # the goal is a lower bound
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None:
            return None
        return self.value >= self.goal if self.higher else self.value <= self.goal

    def cells(self) -> list[str]:
        value = "n/a" if self.value is None else f"{self.value:.3g}"
        if self.value is not None and abs(self.value) >= 1000:
            value = f"{self.value:.0f}"
        goal = "—" if self.goal is None else f"{'>=' if self.higher else '<='} {self.goal:g}"
        met = {None: "—", True: "yes", False: "NO"}[self.met]
        unit = f" {self.unit}" if self.unit else ""
        return [self.name, value + unit, goal + (unit if self.goal is not None else ""), met]


@dataclass
class Report:
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        fig = Figure(*args, **kwargs)
        self.figures.append(fig)
        return fig

    def table(self) -> str:
        rows = [["figure", "measured", "goal", "met?"]] + [f.cells() for f in self.figures]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
                 for r in rows]  # fmt: skip
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def print(self) -> None:
        print(f"\n## {self.title}\n")
        print(self.table())
        for fig in self.figures:
            if fig.note:
                print(f"  * {fig.name}: {fig.note}")
        print(f"\nmachine: {machine_line()}", flush=True)

    def write_json(self, path: str | None) -> None:
        if not path:
            return
        data = {
            "title": self.title,
            "machine": machine_info(),
            "figures": [
                {
                    **{k: getattr(f, k) for k in ("name", "value", "unit", "goal", "higher")},
                    "met": f.met,
                    "note": f.note,
                }
                for f in self.figures
            ],  # fmt: skip
            "details": self.details,
        }
        Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")


# -- machine ---------------------------------------------------------------------------------
def _relion_version() -> str:
    exe = shutil.which("relion_run_motioncorr")
    if exe is None:
        return "not installed"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        if "version" in line.lower():
            return line.split(":", 1)[-1].strip()
    return "unknown"


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import snakemake

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "relion": _relion_version(),
        "snakemake": snakemake.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_line() -> str:
    m = machine_info()
    return (f"{m['cpus']} cores ({m['cpu_model']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
            f"RELION {m['relion']}, Snakemake {m['snakemake']}")  # fmt: skip


# -- command line and work folders -------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--workdir", help="folder for the work data (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work data afterwards")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--seed", type=int, default=11)
    return p


def require_programs() -> None:
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"needs RELION ({', '.join(missing)} not on PATH): apt-get install relion")


@contextmanager
def work_folder(args: argparse.Namespace, name: str) -> Iterator[Path]:
    """A fresh folder for the run; removed afterwards unless ``--keep``."""
    if args.workdir:
        base = Path(args.workdir).resolve()
        base.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"emotf-bench-{name}-", dir=base))
    else:
        root = Path(tempfile.mkdtemp(prefix=f"emotf-bench-{name}-"))
    try:
        yield root
    finally:
        if args.keep:
            print(f"work data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# -- emotf configuration and runs ---------------------------------------------------------------
def pipeline_config(particle_diameter: float, batch_size: int, settle: float,
                    tail: float, gain: bool = True) -> dict[str, Any]:  # fmt: skip
    """The configuration both arms of a comparison use (same as ``emotf demo``)."""
    from emotf.demo import demo_config

    config = demo_config(particle_diameter)
    config["batches"] = {"size": batch_size, "settle_seconds": settle, "tail_seconds": tail}
    if gain:
        config["acquisition"] = {"gain": "gain.mrc", "gain_flip": 1}  # TIFF: RELION flips
    return config


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def seed_profile(folder: Path, settings: list[str]) -> None:
    """Write the folder's profiles/default before ``emotf run`` (which never overwrites it)."""
    import yaml

    from emotf.resources import profiles_dir

    profile = yaml.safe_load((profiles_dir() / "default" / "config.yaml").read_text())
    for item in settings:
        key, _, value = item.partition("=")
        profile[key] = yaml.safe_load(value)
    target = folder / "profiles" / "default" / "config.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(profile))


def emotf_run_argv(session: Path, out: Path, config_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emotf", "run", str(session), "--out", str(out),
            "--config", str(config_file), *extra]  # fmt: skip


@dataclass
class Measured:
    seconds: float
    peak_tree_rss: int  # bytes, sum over the process and its descendants (sampled)
    peak_process_rss: int  # bytes, largest single process (sampled)
    returncode: int
    output: str = ""
    # the tree at its peak sample: (RSS bytes, short command line) per process, largest first
    peak_members: list[tuple[int, str]] = field(default_factory=list)
    # the largest RSS each kind of process reached at any sample (bytes, by short label)
    peak_by_label: dict[str, int] = field(default_factory=dict)


def _label(member: psutil.Process) -> str:
    """A short name for a process: its interpreter's module or script and first argument."""
    try:
        argv = member.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    words = [Path(a).name if "/" in a else a for a in argv[:5]]
    return " ".join(words)[:90]


def _tree_rss(proc: psutil.Process) -> tuple[int, int, list[tuple[int, psutil.Process]]]:
    total = biggest = 0
    sizes: list[tuple[int, psutil.Process]] = []
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, sizes
    for member in members:
        try:
            rss = member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        total += rss
        biggest = max(biggest, rss)
        sizes.append((rss, member))
    return total, biggest, sizes


def peak_rss_mb() -> float:
    """This process's peak RSS (the kernel's ``VmHWM``). Not ``getrusage``'s ``ru_maxrss``:
    Linux carries that over from the parent at ``exec``, so a child of a (large) benchmark
    process would report the benchmark's size as its own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_breakdown(m: Measured, top: int = 8) -> str:
    """The processes of the tree at its peak sample, largest first (for a report note)."""
    parts = [f"{label} {rss / MB:.0f}" for rss, label in m.peak_members[:top]]
    return f"{len(m.peak_members)} processes, MB: " + "; ".join(parts)


def measure(argv: Sequence[str], cwd: Path | None = None, interval: float = 0.02,
            capture: bool = True, env: dict[str, str] | None = None) -> Measured:  # fmt: skip
    """Run ``argv``; wall time and peak RSS of its process tree (psutil, every ``interval``)."""
    out = tempfile.TemporaryFile() if capture else None
    start = time.perf_counter()
    popen = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT if capture
                             else None, stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    proc = psutil.Process(popen.pid)
    peak_tree = peak_one = 0
    members: list[tuple[int, str]] = []
    by_label: dict[str, int] = {}
    while popen.poll() is None:
        tree, one, sizes = _tree_rss(proc)
        labelled = [(rss, _label(p)) for rss, p in sizes]
        for rss, label in labelled:
            by_label[label] = max(by_label.get(label, 0), rss)
        if tree > peak_tree:
            members = sorted(labelled, reverse=True)
        peak_tree, peak_one = max(peak_tree, tree), max(peak_one, one)
        time.sleep(interval)
    seconds = time.perf_counter() - start
    text = ""
    if out is not None:
        out.seek(0)
        text = out.read().decode(errors="replace")
        out.close()
    return Measured(seconds, peak_tree, peak_one, popen.returncode, text, members, by_label)


def check(m: Measured, what: str) -> None:
    if m.returncode != 0:
        print(m.output[-4000:], file=sys.stderr)
        raise SystemExit(f"{what} failed with exit code {m.returncode}")


def simulate(session: Path, n_movies: int, size: int, frames: int, seed: int) -> Any:
    """Simulate a session (all movies at once); returns the ground truth."""
    from emotf.sim import SimParams, simulate_session

    params = SimParams(size=size, n_frames=frames, format="tiff", gain=True, seed=seed)
    return simulate_session(session, params, n_movies=n_movies)


def results(out: Path) -> list[dict[str, Any]]:
    from emotf.session.progress import ProgressReader

    return ProgressReader(out).results()


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


class Sampler:
    """Poll a callable every ``interval`` seconds in a thread (e.g. to watch a folder)."""

    def __init__(self, func: Any, interval: float = 0.1) -> None:
        self.func = func
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.func()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.func()
