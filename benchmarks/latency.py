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

    python benchmarks/latency.py                            # 16 movies, one every 15 s
    python benchmarks/latency.py --movies 3 --size 512 --interval 8
"""

from __future__ import annotations

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

from emotf.batches import list_batches, manifest_path, read_manifest
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

    def __call__(self) -> None:
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
            for arg in cmdline:
                m = TARGET_RE.match(arg)
                if m:
                    self.submitted.setdefault(m.group(1), started)


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
    args = p.parse_args()
    C.require_programs()
    report = C.Report(f"Streaming latency ({args.movies} movies of {args.size}²×{args.frames}, "
                      f"one every {args.interval:g} s)")  # fmt: skip
    with C.work_folder(args, "latency") as root:
        staged, live, out = root / "staged", root / "session", root / "session_OTF"
        print(f"rendering {args.movies} movies ...", flush=True)
        truth = C.simulate(staged, args.movies, args.size, args.frames, args.seed)
        keys = list(truth.movies)
        live.mkdir()
        for name in ("gain.mrc", "EpuSession.dm"):
            shutil.copyfile(staged / name, live / name)
        config = C.pipeline_config(truth.particle_diameter, args.batch_size, args.settle,
                                   args.tail)  # fmt: skip
        config_file = C.write_yaml(root / "config.yaml", config)
        idle = max(30.0, 2 * args.interval)
        argv = C.emotf_run_argv(live, out, config_file, "--idle-timeout", str(idle),
                                "--poll", str(args.poll))  # fmt: skip
        writer = Writer(staged, live, keys, args.interval)
        print(f"streaming: emotf run + a movie every {args.interval:g} s ...", flush=True)
        t0 = time.time()
        with open(root / "emotf-run.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)  # fmt: skip
            watcher = RunWatcher(proc.pid)
            with C.Sampler(watcher, 0.05):
                writer.start()
                code = proc.wait()
        writer.join()
        if code != 0:
            print((root / "emotf-run.log").read_text()[-4000:], file=sys.stderr)
            raise SystemExit(f"emotf run failed with exit code {code}")
        print(f"  done in {time.time() - t0:.0f} s", flush=True)
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
            })  # fmt: skip
    print("\nper movie (s):  complete→submitted  complete→CTF done")
    for row in rows:
        sub, ctf = row["complete_to_submitted"], row["complete_to_ctf"]
        print(f"  {row['movie'][:48]:<48} {row['batch']}  "
              f"{'n/a' if sub is None else f'{sub:7.1f}'}  {'n/a' if ctf is None else f'{ctf:7.1f}'}")  # fmt: skip # noqa: E501
    subs = [r["complete_to_submitted"] for r in rows if r["complete_to_submitted"] is not None]
    ctfs = [r["complete_to_ctf"] for r in rows if r["complete_to_ctf"] is not None]
    goal = args.settle + 5.0
    note = f"settle {args.settle:g} s, batch size {args.batch_size}, tail {args.tail:g} s, poll {args.poll:g} s"  # noqa: E501
    report.add("complete→submitted p50", C.percentile(subs, 50), "s", goal=goal, note=note)
    report.add("complete→submitted p95", C.percentile(subs, 95), "s", goal=goal)
    report.add("complete→CTF done p50", C.percentile(ctfs, 50), "s")
    report.add("complete→CTF done p95", C.percentile(ctfs, 95), "s")
    report.add("movies done", float(sum(r["state"] == "done" for r in rows)), "", goal=len(rows),
               higher=True)  # fmt: skip
    report.details = {"args": vars(args), "movies": rows}
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
