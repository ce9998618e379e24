"""``cluster-slurm`` and ``cluster-lsf`` tasks: the cluster's queues and jobs, every 30 s.

As the workers guide's LSF example: each pass sends ``{"maxlen": 2, "queues": <JSON>}``
(or ``{"maxlen": 2, "error": ...}`` when the query fails, and goes on). Partitions / queues
come from the task argument ``partitions`` / ``queues`` or the worker configuration
``cluster.slurm_partitions`` / ``cluster.lsf_queues`` (none: all). Commands run as argv
lists, without a shell; names are checked (letters, digits, ``_.-``).

* SLURM: ``sinfo -h -o %R|%a|%D|%t|%C|%N`` and ``squeue -h -o %i|%P|%j|%u|%T|%M|%D|%R``.
  JSON: ``{partition: {avail, nodes, states, cpus{allocated,idle,other,total}, nodelist,
  jobs: [{jobid, name, user, state, time, nodes, reason}]}}``.
* LSF: ``bqueues -o "queue_name status max njobs pend run" -json`` and, per queue,
  ``bjobs -u all -q Q -o "jobid user stat queue job_name exec_host" -json``.
  JSON: ``{queue: {status, max, njobs, pend, run, jobs: [{jobid, user, stat, name,
  exec_host}], users: {user: [jobid, ...]}}}``.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Callable
from typing import Any

from .client import Task
from .session_common import StoppableTask, number_arg
from .worker import Reporter, TaskError, Worker

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TIMEOUT = 60.0
Query = Callable[[list[str]], dict[str, Any]]
CPU_KEYS = ("allocated", "idle", "other", "total")  # sinfo %C: A/I/O/T


class QueryError(RuntimeError):
    """A scheduler command failed or printed something unexpected."""


def run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QueryError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise QueryError(f"{argv[0]} exit {done.returncode}: {done.stderr.strip()[:300]}")
    return done.stdout


def slurm_queues(partitions: list[str]) -> dict[str, Any]:
    where = ["-p", ",".join(partitions)] if partitions else []
    out: dict[str, Any] = {}
    for line in run(["sinfo", "-h", "-o", "%R|%a|%D|%t|%C|%N", *where]).splitlines():
        fields = line.split("|")
        if len(fields) != 6:
            continue
        name, avail, nodes, state, cpus, nodelist = fields
        part = out.setdefault(name, {"avail": avail, "nodes": 0, "states": [],
                                     "cpus": dict.fromkeys(CPU_KEYS, 0),
                                     "nodelist": [], "jobs": []})  # fmt: skip
        part["nodes"] += int(nodes)
        part["states"].append(state)
        part["nodelist"].append(nodelist)
        for key, value in zip(CPU_KEYS, cpus.split("/"), strict=False):
            part["cpus"][key] += int(value)
    for line in run(["squeue", "-h", "-o", "%i|%P|%j|%u|%T|%M|%D|%R", *where]).splitlines():
        fields = line.split("|")
        if len(fields) != 8:
            continue
        jobid, name_p, job, user, state, elapsed, nodes, reason = fields
        part = out.setdefault(name_p, {"jobs": []})
        part["jobs"].append({"jobid": jobid, "name": job, "user": user, "state": state,
                             "time": elapsed, "nodes": nodes, "reason": reason})  # fmt: skip
    return out


def _records(text: str, command: str) -> list[dict[str, Any]]:
    if not text.strip():
        return []
    try:
        records = json.loads(text)["RECORDS"]
    except (ValueError, KeyError, TypeError):
        raise QueryError(f"{command}: output is not LSF JSON") from None
    return [r for r in records if isinstance(r, dict)]


def lsf_queues(queues: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    listing = run(["bqueues", "-o", "queue_name status max njobs pend run", "-json", *queues])
    for rec in _records(listing, "bqueues"):
        name = str(rec.get("QUEUE_NAME", ""))
        out[name] = {"status": rec.get("STATUS", ""), "max": rec.get("MAX", ""),
                     "njobs": rec.get("NJOBS", ""), "pend": rec.get("PEND", ""),
                     "run": rec.get("RUN", ""), "jobs": [], "users": {}}  # fmt: skip
    for name, queue in out.items():
        argv = ["bjobs", "-u", "all", "-q", name, "-o",
                "jobid user stat queue job_name exec_host", "-json"]  # fmt: skip
        for rec in _records(run(argv), "bjobs"):
            job = {"jobid": str(rec.get("JOBID", "")), "user": rec.get("USER", ""),
                   "stat": rec.get("STAT", ""), "name": rec.get("JOB_NAME", ""),
                   "exec_host": rec.get("EXEC_HOST", "")}  # fmt: skip
            queue["jobs"].append(job)
            queue["users"].setdefault(str(job["user"]), []).append(job["jobid"])
    return out


class ClusterTask(StoppableTask):
    def __init__(self, worker: Worker, task: Task, report: Reporter, query: Query,
                 names: list[str]) -> None:  # fmt: skip
        super().__init__(worker, task)
        self.report, self.query, self.names = report, query, names
        self.sleep = number_arg(task, "sleep", 30, minimum=1)

    def run(self) -> dict[str, Any] | None:
        while True:
            event: dict[str, Any] = {"maxlen": 2}
            try:
                event["queues"] = json.dumps(self.query(self.names))
            except QueryError as exc:
                log.warning("task %s: %s", self.task.id, exc)
                event["error"] = str(exc)
            self.report(event)
            if self.wait(self.sleep):
                return {"status": "stopped"} if self._user_stop else None


def _names(worker: Worker, task: Task, arg: str, key: str) -> list[str]:
    value = task.args.get(arg, (worker.settings.get("cluster") or {}).get(key, []))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and NAME.match(v) for v in value):
        raise TaskError(f"{arg} must be a list of names (letters, digits, _.-)")
    return list(value)


def slurm_handler(worker: Worker, task: Task, report: Reporter) -> ClusterTask:
    names = _names(worker, task, "partitions", "slurm_partitions")
    return ClusterTask(worker, task, report, slurm_queues, names)


def lsf_handler(worker: Worker, task: Task, report: Reporter) -> ClusterTask:
    return ClusterTask(
        worker, task, report, lsf_queues, _names(worker, task, "queues", "lsf_queues")
    )
