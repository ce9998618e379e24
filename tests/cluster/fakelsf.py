#!/usr/bin/env python3
"""A stand-in for LSF's bsub/bjobs/bqueues/bkill/badmin/lsclusters/bhist, for testing only.

Real LSF cannot run here. This boundary runs each submitted job locally (detached), answers
status queries the way LSF does and records every ``bsub`` argv in
``$FAKELSF_STATE/submissions.jsonl`` so tests can assert what the LSF profile asked for
(queue, project, GPU request, memory, runtime). Invoked through symlinks named after the
LSF commands. ``bkill`` records its argv in ``$FAKELSF_STATE/bkills.jsonl``, so tests can
check that every job was cancelled. While ``$FAKELSF_STATE/hold`` exists, submitted jobs wait
before running their command (still unfinished for bjobs), so a test can stop them mid-way.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ.get("FAKELSF_STATE", "/tmp/fakelsf"))


def _jobs() -> dict[str, dict]:
    path = STATE / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(jobs: dict[str, dict]) -> None:
    tmp = STATE / "jobs.json.tmp"
    tmp.write_text(json.dumps(jobs))
    os.replace(tmp, STATE / "jobs.json")


def _option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def bsub(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "submissions.jsonl", "a") as handle:
        handle.write(json.dumps(argv) + "\n")
    jobs = _jobs()
    jobid = str(1001 + len(jobs))
    command = argv[-1]
    env = dict(os.environ, LSB_JOBID=jobid)
    if "-gpu" in argv:
        env["CUDA_VISIBLE_DEVICES"] = "0"
    out = _option(argv, "-o") or str(STATE / f"{jobid}.out")
    cwd = _option(argv, "-cwd") or os.getcwd()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    marker = STATE / f"{jobid}.rc"
    hold = shlex.quote(str(STATE / "hold"))  # while this file exists, new jobs wait to start
    script = STATE / f"{jobid}.sh"  # a job file, as LSF runs it (not the command on argv)
    script.write_text(f"while [ -e {hold} ]; do sleep 0.2; done\n{command}\necho $? > {marker}\n")
    with open(out, "a") as log:
        proc = subprocess.Popen(
            ["/bin/sh", str(script)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    jobs[jobid] = {
        "pid": proc.pid,
        "name": _option(argv, "-J") or "",
        "queue": _option(argv, "-q") or "normal",
        "sub_cwd": os.getcwd(),
        "exec_cwd": cwd,
        "user": os.environ.get("USER", "root"),
    }
    _save(jobs)
    print(f"Job <{jobid}> is submitted to queue <{jobs[jobid]['queue']}>.")
    return 0


def _state(jobid: str, job: dict) -> str:
    marker = STATE / f"{jobid}.rc"
    if marker.exists():
        return "DONE" if marker.read_text().strip() == "0" else "EXIT"
    try:
        os.kill(job["pid"], 0)
    except ProcessLookupError:
        return "EXIT"
    try:  # a killed job nobody reaped yet (a zombie) has ended too
        stat = Path(f"/proc/{job['pid']}/stat").read_text()
    except OSError:
        return "EXIT"
    return "EXIT" if stat.rsplit(")", 1)[-1].split()[0] == "Z" else "RUN"


FIELDS = {"jobid", "user", "stat", "queue", "job_name", "exec_host", "sub_cwd", "exec_cwd"}


def _record(jobid: str, job: dict, state: str, fields: list[str]) -> dict[str, str]:
    values = {"jobid": jobid, "user": job.get("user", os.environ.get("USER", "root")),
              "stat": state, "queue": job["queue"], "job_name": job["name"],
              "exec_host": "localhost", "sub_cwd": job.get("sub_cwd", ""),
              "exec_cwd": job.get("exec_cwd", "")}  # fmt: skip
    return {name.upper(): values[name] for name in fields}


def _json_jobs(argv: list[str]) -> int:
    """``bjobs [-u USER|all] [-q Q] -o "FIELD ..." -json``: LSF's JSON shape ({"COMMAND",
    "JOBS", "RECORDS": [{"JOBID", ...}]}) with the requested fields (upper case), unfinished
    jobs only (as without ``-a``)."""
    queue, user = _option(argv, "-q"), _option(argv, "-u")
    fields = (_option(argv, "-o") or "jobid stat").split()
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        print(f"{unknown[0]}: Illegal field name", file=sys.stderr)
        return 255
    records = [
        _record(jobid, job, state, fields)
        for jobid, job in _jobs().items()
        if (state := _state(jobid, job)) == "RUN"
        and queue in (None, job["queue"])
        and user in (None, "all", job.get("user", os.environ.get("USER", "root")))
    ]
    print(json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}))
    return 0


def bqueues(argv: list[str]) -> int:
    """``bqueues -o "queue_name status max njobs pend run" -json [QUEUE ...]``."""
    names = [a for a in argv if not a.startswith("-") and " " not in a] or ["normal", "gpu"]
    jobs = _jobs()
    records = []
    for name in names:
        running = sum(1 for i, j in jobs.items() if j["queue"] == name and _state(i, j) == "RUN")
        records.append({"QUEUE_NAME": name, "STATUS": "Open:Active", "MAX": "-",
                        "NJOBS": str(running), "PEND": "0", "RUN": str(running)})  # fmt: skip
    print(json.dumps({"COMMAND": "bqueues", "QUEUES": len(records), "RECORDS": records}))
    return 0


def bjobs(argv: list[str]) -> int:
    if "-json" in argv:
        return _json_jobs(argv)
    pattern = _option(argv, "-aJ") or ""
    needle = pattern.strip("*")
    for jobid, job in _jobs().items():
        if needle in job["name"]:
            print(f"{jobid} {_state(jobid, job)}")
    return 0


def bkill(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "bkills.jsonl", "a") as handle:
        handle.write(json.dumps(argv) + "\n")
    jobs = _jobs()
    for jobid in argv:
        if jobid in jobs:
            try:
                os.killpg(jobs[jobid]["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
    return 0


def badmin(argv: list[str]) -> int:
    conf = STATE / "conf"
    print(f"MBD configuration:\nLSB_SHAREDIR = {STATE / 'share'}\nLSF_CONFDIR = {conf}")
    return 0


def lsclusters(argv: list[str]) -> int:
    (STATE / "conf" / "lsbatch" / "fake" / "configdir").mkdir(parents=True, exist_ok=True)
    params = STATE / "conf" / "lsbatch" / "fake" / "configdir" / "lsb.params"
    if not params.exists():
        params.write_text("Begin Parameters\nDEFAULT_QUEUE = normal\nEnd Parameters\n")
    print("CLUSTER_NAME   STATUS   MASTER_HOST               ADMIN    HOSTS  SERVERS")
    print("fake           ok       localhost                 root         1        1")
    return 0


def bhist(argv: list[str]) -> int:
    return 0


COMMANDS = {
    "bsub": bsub,
    "bjobs": bjobs,
    "bqueues": bqueues,
    "bkill": bkill,
    "badmin": badmin,
    "lsclusters": lsclusters,
    "bhist": bhist,
}


if __name__ == "__main__":
    name = Path(sys.argv[0]).name
    sys.exit(COMMANDS[name](sys.argv[1:]))
