"""Soak with faults: a long streaming session into the worker while faults are injected.

A real EMhub 1.0.2 + redis-server (tests/emhub/harness.py) and the worker as a real process
(``python -m emotf worker``) receive one session whose movies (tiny 32×32×20 TIFF + EPU XML,
``recorded`` backends: real import and Snakemake jobs, compute replayed from the fixture
recording of benchmarks/_recording.py) are written at a steady pace. Meanwhile a fault
schedule (seeded random, printed first) applies, in a shuffled order at jittered times:

* ``kill_worker``: ``kill -9`` of the worker, a new worker started 2 s later;
* ``kill_snakemake``: SIGKILL to the process group of a running Snakemake of the session;
* ``restart_emhub``: EMhub's HTTP server stopped, started again 5 s later;
* ``restart_redis``: redis-server shut down with a save and started again (a maintenance
  restart: the task streams survive; ``--redis-crash`` restarts it without saving, as a
  crash without persistence would, after which EMhub itself no longer knows the task).

Printed: movies written, done, failed, lost (written but in no result; must be 0), processed
twice (in more than one batch manifest or result; must be 0), EMhub's final counts against
the folder's, worker RSS at start/middle/end (growth <= 10 %), open file descriptors and
threads at start/end (no growth).

    python benchmarks/soak.py                          # 1,000 movies over 30 min, 12 faults
    python benchmarks/soak.py --movies 150 --minutes 5 --faults 4     # the short version
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "emhub")]

import _common as C  # noqa: E402
import _recording as R  # noqa: E402

KINDS = ("kill_worker", "kill_snakemake", "restart_emhub", "restart_redis")
WORKER = "emotf-test-host"
WARM_UP = 30.0  # seconds after a worker starts before it is sampled


@dataclass
class SoakParams:
    movies: int = 1000
    minutes: float = 30.0
    faults: int = 12
    seed: int = 13
    batch_size: int = 4
    redis_crash: bool = False
    sample_every: float = 10.0


@dataclass
class Fault:
    at: float  # seconds after the stream started
    kind: str
    done_at: float | None = None
    note: str = ""


@dataclass
class Sample:
    t: float
    pid: int
    rss_mb: float
    fds: int
    threads: int


@dataclass
class SoakResult:
    params: dict[str, Any]
    schedule: list[Fault]
    samples: list[Sample] = field(default_factory=list)
    written: int = 0
    figures: dict[str, Any] = field(default_factory=dict)


def fault_schedule(n: int, window: float, seed: int) -> list[Fault]:
    """``n`` faults (every kind about n/4 times), shuffled, one per slice of ``window`` at
    a random time inside its slice (never in the first or last 5 % of it)."""
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    lo, hi = 0.05 * window, 0.9 * window
    width = (hi - lo) / max(1, n)
    return [Fault(round(lo + width * (i + rng.uniform(0.2, 0.8)), 1), kind)
            for i, kind in enumerate(kinds)]  # fmt: skip


class Soak:
    def __init__(self, root: Path, params: SoakParams) -> None:
        from harness import EmhubServer

        self.root, self.p = root, params
        self.server = EmhubServer(emhub_venv(), root / "emhub", [WORKER])
        self.raw = self.server.raw_root / "soak"
        self.out = self.server.otf_root / "soak_OTF"
        self.worker: Any = None
        self.recording = R.make_recording(root / "recording")  # made once: outputs link to it
        self.finished_at: float | None = None
        self.written = 0
        self.lock = threading.Lock()

    # -- processes -----------------------------------------------------------------------
    def start_worker(self) -> None:
        from workerproc import WorkerProcess

        config = R.recorded_config(self.recording, self.p.batch_size, settle=1.0, tail=5.0)
        settings = {"otf": {"config": config, "idle_timeout": 30, "report_interval": 5}}
        worker = WorkerProcess(self.server, self.root, settings=settings, verbosity="-v")
        worker.start()
        with self.lock:
            self.worker = worker

    def worker_proc(self) -> psutil.Process | None:
        with self.lock:
            proc = self.worker.proc if self.worker is not None else None
        if proc is None or proc.poll() is not None:
            return None
        try:
            return psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return None

    def snakemake_runs(self) -> list[int]:
        """Main processes of Snakemake runs in the session's folder (not their forks)."""
        found: dict[int, int] = {}
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            try:
                argv = proc.info["cmdline"] or []
                if any("snakemake" in a for a in argv[:3]) and "--unlock" not in argv:
                    if os.path.realpath(proc.cwd()) == os.path.realpath(self.out):
                        found[proc.pid] = proc.info["ppid"]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return [pid for pid, ppid in found.items() if ppid not in found]

    # -- faults ----------------------------------------------------------------------------
    def apply(self, fault: Fault) -> None:
        if fault.kind == "kill_worker":
            with self.lock:
                old = self.worker
            old.kill(signal.SIGKILL)
            fault.note = f"killed pid {old.proc.pid}"
            time.sleep(2)
            self.start_worker()
        elif fault.kind == "kill_snakemake":
            deadline = time.time() + 60
            while not (pids := self.snakemake_runs()) and time.time() < deadline:
                time.sleep(0.2)
            if not pids:
                fault.note = "no Snakemake run within 60 s: nothing killed"
                return
            group = os.getpgid(pids[0])
            os.killpg(group, signal.SIGKILL)
            fault.note = f"killed process group {group}"
        elif fault.kind == "restart_emhub":
            self.server.stop_http()
            time.sleep(5)
            self.server.start_http()
        elif fault.kind == "restart_redis":
            if not self.p.redis_crash:
                try:
                    self.server.redis().shutdown(save=True)  # an RDB dump, loaded at start
                except Exception:  # noqa: BLE001 - redis-py may see the connection close
                    pass
            self.server.stop_redis()
            time.sleep(2)
            self.server.start_redis()
            fault.note = "crash: data lost" if self.p.redis_crash else "saved and reloaded"
        fault.done_at = round(time.time() - self.t0, 1)

    def run_faults(self, schedule: list[Fault]) -> None:
        for fault in schedule:
            delay = self.t0 + fault.at - time.time()
            if delay > 0:
                time.sleep(delay)  # the schedule's time, not a wait for an outcome
            print(f"  t={time.time() - self.t0:6.0f} s  fault {fault.kind}", flush=True)
            self.apply(fault)

    # -- stream and samples ------------------------------------------------------------------
    def write_movies(self) -> None:
        movie, pace = R.tiny_movie(), self.p.minutes * 60 / self.p.movies
        for n in range(self.p.movies):
            target = self.t0 + n * pace
            if target > time.time():
                time.sleep(target - time.time())  # the pace of the stream
            R.write_tiny_movie(self.raw, n, movie)
            self.written = n + 1

    def sample(self, result: SoakResult, stop: threading.Event) -> None:
        while not stop.wait(self.p.sample_every):
            proc = self.worker_proc()
            if proc is None or not any((self.out / "Results").glob("b*.json")):
                continue  # from the first result on: the worker has every module loaded
            try:
                if time.time() - proc.create_time() < WARM_UP:
                    continue  # a worker just (re)started is still importing and resuming
            except psutil.NoSuchProcess:
                continue
            try:
                result.samples.append(Sample(round(time.time() - self.t0, 1), proc.pid,
                                             proc.memory_info().rss / 2**20, proc.num_fds(),
                                             proc.num_threads()))  # fmt: skip
            except psutil.NoSuchProcess:
                continue

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> SoakResult:
        window = self.p.minutes * 60
        schedule = fault_schedule(self.p.faults, window, self.p.seed)
        result = SoakResult(asdict(self.p), schedule)
        print(f"fault schedule (seed {self.p.seed}):", flush=True)
        for fault in schedule:
            print(f"  at {fault.at:7.1f} s  {fault.kind}", flush=True)
        self.server.start()
        try:
            self._stream(result)
        finally:
            if self.worker is not None:
                self.worker.kill(signal.SIGTERM)
            self.server.stop()
        return result

    def _stream(self, result: SoakResult) -> None:
        self.raw.mkdir(parents=True)
        (self.raw / "EpuSession.dm").write_text("<EpuSessionXml/>\n")
        sid = self.server.create_session("soak", self.raw, tasks=[[WORKER, {"action": "otf"}]])
        self.t0 = time.time()
        self.start_worker()
        stop = threading.Event()
        threads = [
            threading.Thread(target=self.write_movies, daemon=True),
            threading.Thread(target=self.run_faults, args=(result.schedule,), daemon=True),
            threading.Thread(target=self.sample, args=(result, stop), daemon=True),
        ]
        for thread in threads:
            thread.start()
        threads[0].join()
        threads[1].join()
        deadline = time.time() + 600
        while time.time() < deadline and not self._finished(sid):
            time.sleep(2)
        self.finished_at = time.time() - self.t0
        stop.set()
        threads[2].join()
        result.written = self.written
        result.figures = self.figures(sid, result)

    def _finished(self, sid: int) -> bool:
        try:
            status = self.server.get_session(sid)["extra"].get("emotf", {}).get("status")
        except Exception:  # noqa: BLE001 - EMhub may be restarting
            return False
        return status in ("finished", "failed")

    # -- figures -----------------------------------------------------------------------------
    def figures(self, sid: int, result: SoakResult) -> dict[str, Any]:
        manifests: dict[str, list[str]] = {}  # movie -> batches that list it
        for path in sorted((self.out / "batches").glob("b*.json")):
            for movie in json.loads(path.read_text())["movies"]:
                manifests.setdefault(movie["key"], []).append(path.stem)
        states: dict[str, list[str]] = {}  # movie -> its state in each result that has it
        for path in sorted((self.out / "Results").glob("b*.json")):
            for movie in json.loads(path.read_text())["movies"]:
                states.setdefault(movie["key"], []).append(movie["state"])
        given_up = {p.stem for p in (self.out / "batch_failures").glob("b*.json")}
        in_failed_batch = {k for k, batches in manifests.items() if set(batches) & given_up}
        written = {p.relative_to(self.raw).as_posix() for p in self.raw.rglob("*_fractions.tiff")}
        done = sum(1 for k in written if states.get(k, [""])[-1] == "done")
        failed = sum(1 for k in written if states.get(k, [""])[-1] == "failed")
        failed += len(in_failed_batch - set(states))
        emotf = self.server.get_session(sid)["extra"].get("emotf", {})
        counts = (emotf.get("movies_found"), emotf.get("movies_done"), emotf.get("movies_failed"))
        running = [s for s in result.samples if self.finished_at is None
                   or s.t < self.finished_at]  # fmt: skip
        return {
            "written": len(written),
            "done": done,
            "failed": failed,
            "lost": len(written - set(states) - in_failed_batch),
            "processed_twice": sum(1 for v in manifests.values() if len(v) > 1)
            + sum(1 for v in states.values() if len(v) > 1),
            "emhub": dict(
                zip(("movies_found", "movies_done", "movies_failed"), counts, strict=True),
                status=emotf.get("status"),
            ),  # fmt: skip
            "emhub_equals_folder": counts == (len(written), done, failed),
            "faults_applied": sum(1 for f in result.schedule if f.done_at is not None),
            **resource_figures(running),
        }


def resource_figures(samples: list[Sample]) -> dict[str, Any]:
    """Start / middle / end of the worker's samples, and the longest-lived worker process
    (its own first and last sample: growth within one process)."""
    if not samples:
        return {"samples": 0}
    first, middle, last = samples[0], samples[len(samples) // 2], samples[-1]
    by_pid: dict[int, list[Sample]] = {}
    for s in samples:
        by_pid.setdefault(s.pid, []).append(s)
    longest = max(by_pid.values(), key=lambda v: v[-1].t - v[0].t)
    return {
        "samples": len(samples),
        "rss_mb": [first.rss_mb, middle.rss_mb, last.rss_mb],
        "fds": [first.fds, last.fds],
        "threads": [first.threads, last.threads],
        "pids": [first.pid, middle.pid, last.pid],
        "longest_process": {
            "pid": longest[0].pid,
            "seconds": longest[-1].t - longest[0].t,
            "rss_mb": [longest[0].rss_mb, longest[-1].rss_mb],
            "fds": [longest[0].fds, longest[-1].fds],
            "threads": [longest[0].threads, longest[-1].threads],
        },  # fmt: skip
    }


def emhub_venv() -> Path:
    return Path(os.environ.get("EMOTF_EMHUB_VENV", ROOT / ".venv-emhub"))


def emhub_available() -> bool:
    import shutil

    return (emhub_venv() / "bin" / "flask").exists() and shutil.which("redis-server") is not None


def run_soak(root: Path, params: SoakParams) -> SoakResult:
    return Soak(root, params).run()


def report(result: SoakResult) -> C.Report:
    f, p = result.figures, result.params
    rep = C.Report(f"Soak ({p['movies']} movies over {p['minutes']:g} min, {p['faults']} faults, "
                   f"seed {p['seed']})")  # fmt: skip
    rep.add("movies written", f["written"], "")
    rep.add("movies done", f["done"], "", goal=f["written"], higher=True)
    rep.add("movies failed", f["failed"], "")
    rep.add("movies lost", f["lost"], "", goal=0)
    rep.add("movies processed twice", f["processed_twice"], "", goal=0)
    rep.add("EMhub counts == folder counts", float(f["emhub_equals_folder"]), "", goal=1,
            higher=True, note=f"EMhub {f['emhub']}")  # fmt: skip
    rep.add(
        "faults applied",
        f["faults_applied"],
        "",
        goal=p["faults"],
        higher=True,
        note="; ".join(f"{x.kind}@{x.at:.0f}s {x.note}".strip() for x in result.schedule),
    )
    if f["samples"]:
        start, middle, end = f["rss_mb"]
        one = f["longest_process"]
        rep.add("worker RSS start / middle", start, "MB", note=f"middle {middle:.0f} MB; pids "
                f"{f['pids']} (a killed worker is replaced)")  # fmt: skip
        rep.add("worker RSS end", end, "MB", goal=round(1.1 * start, 1))
        rep.add("worker open fds start", f["fds"][0], "")
        rep.add("worker open fds end", f["fds"][1], "", goal=f["fds"][0])
        rep.add("worker threads start", f["threads"][0], "")
        rep.add("worker threads end", f["threads"][1], "", goal=f["threads"][0])
        rep.add("longest-lived worker: RSS growth", 100 * (one["rss_mb"][1] / one["rss_mb"][0] - 1),
                "%", goal=10, note=f"pid {one['pid']} over {one['seconds']:.0f} s: RSS "
                f"{one['rss_mb'][0]:.0f}->{one['rss_mb'][1]:.0f} MB, fds {one['fds']}, threads "
                f"{one['threads']}")  # fmt: skip
    return rep


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--movies", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=30.0, help="length of the stream")
    p.add_argument("--faults", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--redis-crash",
        action="store_true",
        help="restart Redis without saving (its data lost) instead of a saved restart",
    )
    args = p.parse_args()
    params = SoakParams(args.movies, args.minutes, args.faults, args.seed, args.batch_size,
                        args.redis_crash)  # fmt: skip
    with C.work_folder(args, "soak") as root:
        result = run_soak(root, params)
    rep = report(result)
    rep.details = {"result": asdict(result)}
    rep.print()
    rep.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
