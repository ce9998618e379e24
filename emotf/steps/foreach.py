"""``emotf step foreach``: a step made of a facility's command, run once per movie.

For a rule file that has no Python: every movie that succeeded in all ``--input`` step
outputs of the batch gets one run of the command (an argv list, never a shell). Arguments
may name the movie's fields in braces (``{micrograph}``, ``{pixel_size}``, ``{key}``,
``{batch}``, ``{outdir}``); in a Snakemake ``shell:`` directive write them doubled,
``{{micrograph}}``. Exit code 0 means ok, and metrics the command prints become the movie's
fields: a JSON object on the last line, or ``key=value`` lines. Otherwise the movie fails
with the exit code and the tail of the command's stderr. The step's JSON is written in the
same format as every built-in step's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import string
import subprocess
import time
from pathlib import Path
from typing import Any

from .base import Record, StepOutput, load_output, merged_ok

log = logging.getLogger(__name__)

KEY_VALUE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]{0,59})\s*=\s*(\S.*?)\s*$")
RESERVED_FIELDS = {"ok", "time", "reason", "key", "found"}


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_metrics(stdout: str) -> dict[str, Any]:
    """Metrics a command printed: a JSON object on its last non-empty line, else every
    ``key=value`` line (numbers converted)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if lines:
        try:
            data = json.loads(lines[-1])
            if isinstance(data, dict):
                return {str(k): v for k, v in data.items() if str(k) not in RESERVED_FIELDS}
        except ValueError:
            pass
    metrics = {}
    for line in lines:
        match = KEY_VALUE.match(line)
        if match and match.group(1) not in RESERVED_FIELDS:
            metrics[match.group(1)] = _value(match.group(2))
    return metrics


def fill(argv: list[str], values: dict[str, Any]) -> list[str]:
    """Each argument with its ``{field}`` names replaced (KeyError names a missing field)."""
    out = []
    for arg in argv:
        names = [n for _t, n, _s, _c in string.Formatter().parse(arg) if n]
        missing = [n for n in names if n not in values]
        if missing:
            raise KeyError(missing[0])
        out.append(arg.format(**{n: values[n] for n in names}))
    return out


def tail(text: str, lines: int = 3) -> str:
    useful = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(useful[-lines:]) if useful else "no output"


def run_one(argv: list[str], timeout: float, log_file: Any) -> tuple[bool, str, dict[str, Any]]:
    """(ok, reason, metrics) of one run of the command."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        return False, f"program not found: {argv[0]}", {}
    except PermissionError:
        return False, f"program not executable: {argv[0]}", {}
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g} s", {}
    log_file.write(f"$ {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        return False, f"exit code {proc.returncode}: {tail(proc.stderr or proc.stdout)}"[:500], {}
    return True, "", parse_metrics(proc.stdout)


def foreach(
    step: str,
    batch: str,
    inputs: list[Path],
    output: Path,
    argv: list[str],
    timeout: float = 3600.0,
    log_path: Path | None = None,
) -> StepOutput:
    rows: dict[str, Record] = merged_ok(*(load_output(p) for p in inputs)) if inputs else {}
    out = StepOutput(batch=batch, step=step, backend="foreach", started=time.time())
    outdir = output.parent
    outdir.mkdir(parents=True, exist_ok=True)
    with open(log_path or os.devnull, "a", encoding="utf-8") as log_file:
        for key, row in rows.items():
            values = {**row, "key": key, "batch": batch, "outdir": outdir.as_posix()}
            try:
                command = fill(argv, values)
            except KeyError as exc:
                out.fail(
                    key, f"argument template names {{{exc.args[0]}}}, not a field of the movie"
                )
                continue
            ok, reason, metrics = run_one(command, timeout, log_file)
            if ok:
                out.succeed(key, **metrics)
            else:
                out.fail(key, reason)
    out.write(output)
    return out


def cmd_foreach(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit("emotf step foreach: no command given (after --)")
    out = foreach(
        args.step,
        args.batch,
        [Path(p) for p in args.input],
        Path(args.output),
        argv,
        args.timeout,
        Path(args.log) if args.log else None,
    )
    print(f"{args.step} {args.batch}: {len(out.ok())} ok, {len(out.movies) - len(out.ok())} failed")
    return 0


def register(sub: Any) -> None:
    step = sub.add_parser("step", help="helpers for rule files (added pipeline steps)")
    steps = step.add_subparsers(dest="step_command", required=True)
    p = steps.add_parser("foreach", help="run a command once per movie of a batch")
    p.add_argument("--step", required=True, help="the step's name (as declared)")
    p.add_argument("--batch", required=True, help="batch id, e.g. b000001")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        help="a needed step's per-batch JSON (repeat); movies ok in all are run",
    )
    p.add_argument("--output", required=True, help="the step's per-batch JSON to write")
    p.add_argument("--log", help="append the command lines and their output here")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per movie")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND ARG... ({field} filled)")
    p.set_defaults(func=cmd_foreach)
