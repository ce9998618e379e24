#!/usr/bin/env python3
"""Stand-ins for MotionCor3, CTFFIND4/5 and crYOLO (GPU/licensed programs that cannot run here).

Test boundary only. Each records its argv, stdin and CUDA_VISIBLE_DEVICES in
``$FAKE_TOOLS_LOG`` (JSON lines, with its exit code), checks its input as the real program does
(``fake_motioncor.py``, ``fake_ctffind.py``, ``fake_cryolo.py`` say from where) and writes the
files the real program writes for the options given, in its exact format, with fixture
values. They do no image processing. Invoked through the scripts :func:`install` writes,
named after the programs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_cryolo  # noqa: E402
import fake_ctffind  # noqa: E402
import fake_motioncor  # noqa: E402

NAMES = ("MotionCor3", "ctffind", "ctffind5", "cryolo_predict.py")


def record(name: str, stdin: str, code: int, started: float, peers: int,
           asked: list[tuple[str, str]]) -> None:  # fmt: skip
    log = os.environ.get("FAKE_TOOLS_LOG")
    if not log:
        return
    entry = {"tool": name, "argv": sys.argv[1:], "stdin": stdin, "exit": code,
             "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "time": started,
             "end": time.time(), "peers": peers, "asked": asked}  # fmt: skip
    with open(log, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def rendezvous() -> int:
    """With ``$FAKE_TOOLS_MEET=<folder>:<n>``: announce this run in the folder, then wait
    (at most ``$FAKE_TOOLS_MEET_TIMEOUT`` s, default 60) until ``n`` runs have announced
    themselves. Returns how many had when it went on: ``n`` only if they ran at the same
    time, fewer if this run was alone until the timeout. 0 without the variable."""
    spec = os.environ.get("FAKE_TOOLS_MEET")
    if not spec:
        return 0
    folder, n = Path(spec.rsplit(":", 1)[0]), int(spec.rsplit(":", 1)[1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + float(os.environ.get("FAKE_TOOLS_MEET_TIMEOUT", "60"))
    while len(list(folder.iterdir())) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(list(folder.iterdir()))


def run(name: str) -> int:
    started, stdin, peers = time.time(), "", 0
    asked: list[tuple[str, str]] = []
    argv = sys.argv[1:]
    if name == "MotionCor3":
        peers = rendezvous()
        code = fake_motioncor.main(argv)
    elif name in ("ctffind", "ctffind5"):
        stdin = sys.stdin.read()
        code = fake_ctffind.main(5 if name == "ctffind5" else 4, argv, stdin, asked)
    elif name == "cryolo_predict.py":
        try:
            code = fake_cryolo.main(argv)
        except SystemExit as exc:  # argparse refusing the options
            code = int(exc.code or 0)
    else:
        raise SystemExit(f"no stand-in named {name}")
    record(name, stdin, code, started, peers, asked)
    return code


def install(bin_dir: Path) -> None:
    """Scripts named after the programs in ``bin_dir`` (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        tool = bin_dir / name
        tool.write_text(
            f"#!{sys.executable}\nimport os, runpy\nos.environ['FAKE_TOOL'] = {name!r}\n"
            f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')\n"
        )
        tool.chmod(0o755)


if __name__ == "__main__":
    sys.exit(run(os.environ.get("FAKE_TOOL") or Path(sys.argv[0]).name))
