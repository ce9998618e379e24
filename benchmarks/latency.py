"""Streaming latency: a simulated microscope writes a movie every S seconds while
``emotf run`` (streaming mode) processes them.

Movies are rendered first (``emotf.sim``, not timed) and then written into the watched
session folder the way EPU does (XML, then the movie growing in 4 chunks over 1 s), one every
``--interval`` seconds. Per movie:

* complete  = when the writer closed the movie file (its last write);
* submitted = start of the Snakemake process whose targets include the movie's batch
              (process start time from the kernel, read with psutil);
* CTF done  = the movie's ``times.ctffind`` in ``Results/<batch>.json``.

Prints p50/p95 of complete→submitted and complete→CTF done. Goal: complete→submitted
<= settle + 5 s.

With ``--profile slurm`` the same stream runs twice in one invocation, first with local jobs
and then through the SLURM profile (``profiles/slurm``; its machine resources — partitions,
memory, runtime — replaced by ones that fit this host's test cluster, every other setting
as shipped), and the figures are printed side by side. Goal: SLURM adds <= 15 s at p95.

    python benchmarks/latency.py                            # 16 movies, one every 15 s
    python benchmarks/latency.py --profile slurm            # local, then SLURM (~10 min)
    python benchmarks/latency.py --movies 3 --size 512 --interval 8
    python benchmarks/latency.py --profile slurm --max-runs 4   # both arms: 4 runs at once

``--max-runs`` is the worker's ``otf.max_runs`` (``emotf run --max-runs``, default 2), the
same in both arms. Each arm also reports how many Snakemake runs it started and the machine's
load average while it ran (the SLURM jobs run on the same cores).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common as C
import psutil
import yaml

from emotf.session.batches import list_batches, manifest_path, read_manifest
from emotf.sim.epu_writer import write_growing

TARGET_RE = re.compile(r"^Results/(b\d{6})\.json$")


class Writer(threading.Thread):
    """Copy pre-rendered movies into the live session folder, one every ``interval`` s."""

    def __init__(self, staged: Path, live: Path, keys: list[str], interval: float) -> None:
        super().__init__(daemon=True)
        self.staged, self.live, self.keys, self.interval = staged, live, keys, interval
        self.complete: dict[str, float] = {}

    def run(self) -> None:
        start = time.time()
        for n, key in enumerate(self.keys):
            time.sleep(max(0.0, start + n * self.interval - time.time()))
            xml = Path(key.replace("_fractions.tiff", ".xml"))
            (self.live / xml).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.staged / xml, self.live / xml)
            write_growing(self.live / key, (self.staged / key).read_bytes(), 4, 1.0)
            self.complete[key] = (self.live / key).stat().st_mtime


class RunWatcher:
    """Record when each Snakemake child of ``emotf run`` started and which batches it targets."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.submitted: dict[str, float] = {}  # batch → first Snakemake start that targets it
        self._seen: set[int] = set()
        self.runs: list[float] = []  # start time of every Snakemake run
        self.load: list[float] = []  # the machine's 1-minute load average, once a second
        self._load_at = 0.0

    def __call__(self) -> None:
        if time.monotonic() - self._load_at >= 1.0:
            self._load_at = time.monotonic()
            self.load.append(os.getloadavg()[0])
        try:
            children = self.proc.children()
        except psutil.NoSuchProcess:
            return
        for child in children:
            if child.pid in self._seen:
                continue
            try:
                cmdline, started = child.cmdline(), child.create_time()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if not any("snakemake" in part for part in cmdline[:3]):
                continue
            self._seen.add(child.pid)
            self.runs.append(started)
            for arg in cmdline:
                m = TARGET_RE.match(arg)
                if m:
                    self.submitted.setdefault(m.group(1), started)


# Resources of the single-node test cluster (tests/cluster/slurm_up.sh: 8 CPUs, 16 GB,
# partitions cpu and gpu): the shipped values (32 GB for motioncor) would never be scheduled.
BENCH_RESOURCES = {"runtime": 10, "mem_mb": 1000}
PARTITIONS = {"default": "cpu", "gpu": "gpu"}


def bench_profile(folder: Path, name: str) -> Path:
    """``profiles/<name>`` with only its machine resources fitted to this host."""
    from emotf.resources import profiles_dir

    profile = yaml.safe_load((profiles_dir() / name / "config.yaml").read_text())
    defaults = profile.get("default-resources") or {}
    profile["default-resources"] = {**defaults, **BENCH_RESOURCES,
                                    "slurm_partition": PARTITIONS["default"]}  # fmt: skip
    rules = profile.get("set-resources") or {}
    for rule, res in rules.items():
        partition = PARTITIONS["gpu" if res.get("slurm_partition") not in (None, "cpu") else
                               "default"]  # fmt: skip
        rules[rule] = {**res, **BENCH_RESOURCES, "slurm_partition": partition}
    folder.mkdir(parents=True, exist_ok=True)
    C.write_yaml(folder / "config.yaml", profile)
    return folder


def run_arm(args: Any, root: Path, staged: Path, keys: list[str], config_file: Path,
            profile: Path | None) -> list[dict[str, Any]]:  # fmt: skip
    """Stream the staged movies into a fresh session folder while ``emotf run`` processes
    them (with ``profile``, or local jobs); one row per movie."""
    label = "local" if profile is None else profile.name
    live, out = root / f"session-{label}", root / f"session-{label}_OTF"
    live.mkdir()
    for name in ("gain.mrc", "EpuSession.dm"):
        shutil.copyfile(staged / name, live / name)
    idle = max(30.0, 2 * args.interval)
    extra = ["--idle-timeout", str(idle), "--poll", str(args.poll)]
    if args.max_runs is not None:
        extra += ["--max-runs", str(args.max_runs)]
    if profile is not None:
        extra += ["--profile", str(profile)]
    argv = C.emotf_run_argv(live, out, config_file, *extra)
    writer = Writer(staged, live, keys, args.interval)
    print(f"[{label}] streaming: emotf run + a movie every {args.interval:g} s ...", flush=True)
    t0 = time.time()
    log_path = root / f"emotf-run-{label}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)  # fmt: skip
        watcher = RunWatcher(proc.pid)
        with C.Sampler(watcher, 0.05):
            writer.start()
            code = proc.wait()
    writer.join()
    if code != 0:
        print(log_path.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"emotf run ({label}) failed with exit code {code}")
    print(f"  done in {time.time() - t0:.0f} s, {len(watcher.runs)} Snakemake runs", flush=True)
    owner = {r["key"]: r for r in C.results(out)}
    batch_of = {}
    for batch in list_batches(out):
        for movie in read_manifest(manifest_path(out, batch)).movies:
            batch_of[movie.key] = batch
    rows: list[dict[str, Any]] = []
    for key in keys:
        complete = writer.complete[key]
        rec = owner.get(key, {})
        submitted = watcher.submitted.get(batch_of.get(key, ""))
        ctf_done = (rec.get("times") or {}).get("ctffind")
        rows.append({
            "movie": key.rsplit("/", 1)[-1],
            "batch": batch_of.get(key),
            "complete_to_submitted": None if submitted is None else submitted - complete,
            "complete_to_ctf": None if ctf_done is None else ctf_done - complete,
            "state": rec.get("state"),
            "runs": len(watcher.runs),
            "load": sum(watcher.load) / len(watcher.load) if watcher.load else None,
        })  # fmt: skip
    return rows


def print_rows(label: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n[{label}] per movie (s):  complete→submitted  complete→CTF done")
    for row in rows:
        sub, ctf = row["complete_to_submitted"], row["complete_to_ctf"]
        print(f"  {row['movie'][:48]:<48} {row['batch']}  "
              f"{'n/a' if sub is None else f'{sub:7.1f}'}  {'n/a' if ctf is None else f'{ctf:7.1f}'}")  # fmt: skip # noqa: E501


def column(rows: list[dict[str, Any]], name: str) -> list[float]:
    return [r[name] for r in rows if r[name] is not None]


def add_figures(report: C.Report, rows: list[dict[str, Any]], args: Any, suffix: str) -> None:
    subs, ctfs = column(rows, "complete_to_submitted"), column(rows, "complete_to_ctf")
    goal = args.settle + 5.0
    runs = "worker default" if args.max_runs is None else str(args.max_runs)
    note = (f"settle {args.settle:g} s, batch size {args.batch_size}, tail {args.tail:g} s, "
            f"poll {args.poll:g} s, max runs {runs}")  # fmt: skip
    report.add(f"complete→submitted p50{suffix}", C.percentile(subs, 50), "s", goal=goal,
               note=note if not suffix else "")  # fmt: skip
    report.add(f"complete→submitted p95{suffix}", C.percentile(subs, 95), "s", goal=goal)
    report.add(f"complete→CTF done p50{suffix}", C.percentile(ctfs, 50), "s")
    report.add(f"complete→CTF done p95{suffix}", C.percentile(ctfs, 95), "s")
    report.add(f"movies done{suffix}", float(sum(r["state"] == "done" for r in rows)), "",
               goal=len(rows), higher=True)  # fmt: skip
    report.add(f"Snakemake runs{suffix}", float(rows[0]["runs"]) if rows else None, "")
    report.add(f"machine load during the arm (1-min avg, mean){suffix}",
               rows[0]["load"] if rows else None, "",
               note="" if suffix else f"{os.cpu_count()} cores, shared")  # fmt: skip


def add_comparison(report: C.Report, local: list[dict[str, Any]],
                   cluster: list[dict[str, Any]], label: str) -> None:  # fmt: skip
    """What the cluster adds at p95 (goal: at most 15 s)."""
    for name, what in (("complete_to_submitted", "complete→submitted"),
                       ("complete_to_ctf", "complete→CTF done")):  # fmt: skip
        a, b = C.percentile(column(local, name), 95), C.percentile(column(cluster, name), 95)
        added = None if a is None or b is None else b - a
        report.add(f"{label} adds at p95, {what}", added, "s", goal=15.0)


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--movies", type=int, default=16)
    p.add_argument("--interval", type=float, default=15.0, help="S: seconds between movies")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--settle", type=float, default=5.0, help="batches.settle_seconds")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tail", type=float, default=0.0,
                   help="batches.tail_seconds (0: cut what is complete at every poll)")  # fmt: skip
    p.add_argument("--poll", type=float, default=2.0, help="emotf run --poll (s)")
    p.add_argument("--max-runs", type=int,
                   help="emotf run --max-runs in both arms (default: the worker's, 2)")  # fmt: skip
    p.add_argument("--profile", choices=["slurm"],
                   help="also run the stream through this cluster profile (after the local "
                        "run, same movies) and compare")  # fmt: skip
    p.add_argument("--profile-dir", type=Path,
                   help="use this profile folder as it is instead of the shipped one "
                        "fitted to this host (for trying settings)")  # fmt: skip
    p.add_argument("--skip-local", action="store_true",
                   help="with --profile: only the cluster arm (no comparison)")  # fmt: skip
    args = p.parse_args()
    C.require_programs()
    report = C.Report(f"Streaming latency ({args.movies} movies of {args.size}²×{args.frames}, "
                      f"one every {args.interval:g} s)")  # fmt: skip
    arms: dict[str, list[dict[str, Any]]] = {}
    with C.work_folder(args, "latency") as root:
        staged = root / "staged"
        print(f"rendering {args.movies} movies ...", flush=True)
        truth = C.simulate(staged, args.movies, args.size, args.frames, args.seed)
        keys = list(truth.movies)
        config = C.pipeline_config(truth.particle_diameter, args.batch_size, args.settle,
                                   args.tail)  # fmt: skip
        config_file = C.write_yaml(root / "config.yaml", config)
        if not (args.profile and args.skip_local):
            arms["local"] = run_arm(args, root, staged, keys, config_file, None)
        if args.profile:
            profile = args.profile_dir or bench_profile(root / args.profile, args.profile)
            print(f"profile {args.profile}:\n{(profile / 'config.yaml').read_text()}")
            arms[args.profile] = run_arm(args, root, staged, keys, config_file, profile)
    for label, rows in arms.items():
        print_rows(label, rows)
    for label, rows in arms.items():
        add_figures(report, rows, args, "" if label == "local" else f" ({label})")
    if args.profile and "local" in arms:
        add_comparison(report, arms["local"], arms[args.profile], args.profile)
    report.details = {"args": vars(args), "movies": arms}
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
