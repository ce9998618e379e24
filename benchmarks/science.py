"""Science benchmark: accuracy of motion correction, CTF and picking per simulator realism level.

For each level (``ideal``, ``realistic``) it simulates sessions across detectors and pixel
sizes (K3 TIFF at 1.0 and 1.3 Å/px, Falcon 4i MRC at 1.2 and 1.6 Å/px; defocus 0.5–3.5 µm;
astigmatism 0–1200 Å), runs them through ``emotf run --once`` with the settings a user
would choose (RELION's own motion correction with the session's gain, emotf's CTF
estimator, RELION LoG picking with diameters 0.8–1.2× the particle's), applies the default
curation and prints, against the goals of issue 15:

* CTF defocus error (max of |ΔU|, |ΔV|): share within 100 Å and worst error, on accepted
  micrographs; median and 90th percentile on all;
* astigmatism azimuth error where the astigmatism is ≥ 300 Å (accepted micrographs);
* LoG picking recall and precision on micrographs without carbon (all of them);
* drift RMSE of the global shifts;
* movies flagged ``gain_suspect`` with a correct gain (should be none).

Run: ``.venv/bin/python benchmarks/science.py [--movies 4] [--size 1024] [--levels ...]``.
About 2–4 s per movie to simulate at 1k (realistic) and about 2 s per movie to process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Report,
    check,
    emotf_run_argv,
    measure,
    parser,
    percentile,
    require_programs,
    work_folder,
    write_yaml,
)

CASES = [  # (detector, pixel size Å, movie format)
    ("K3", 1.0, "tiff"),
    ("K3", 1.3, "tiff"),
    ("Falcon4i", 1.2, "mrc"),
    ("Falcon4i", 1.6, "mrc"),
]


def step_records(out: Path) -> list[dict[str, Any]]:
    """Per-movie records merged from the step outputs (import → picking)."""
    from emotf.fsutil import read_json

    merged: dict[str, dict[str, Any]] = {}
    steps = ("Import/*/import.json", "MotionCorr/*/motioncor.json",
             "CtfFind/*/ctffind.json", "AutoPick/*/picking.json")  # fmt: skip
    for n, pattern in enumerate(steps):
        for path in sorted(out.glob(pattern)):
            for key, rec in read_json(path)["movies"].items():
                entry = merged.setdefault(key, {"key": key, "steps": 0})
                if rec.get("ok"):
                    entry.update(rec)
                    entry["steps"] += 1 if entry["steps"] == n else 0
    for entry in merged.values():
        entry["state"] = "done" if entry["steps"] == len(steps) else "failed"
    return list(merged.values())


def curation_defaults() -> dict[str, Any]:
    from emotf.config import load_schema

    props = load_schema()["properties"]["curation"]["properties"]
    return {k: v.get("default") for k, v in props.items()}


def score_case(session: Path, out: Path, level: str, case: str) -> list[dict[str, Any]]:
    """Per-micrograph scores of one processed session against its ground truth."""
    from emotf.curation import curate
    from emotf.evaluate import evaluate

    records = step_records(out)
    scores = {s.key: s for s in evaluate(out, session, records)}
    gt = json.loads((session / "ground_truth.json").read_text())
    accepted, rejected = curate(records, curation_defaults())
    accepted_keys = {r["key"] for r in accepted}
    rows = []
    for rec in records:
        score = scores.get(rec["key"])
        movie = gt["movies"][rec["key"]]
        rows.append({
            "level": level, "case": case, "key": rec["key"],
            "state": rec["state"], "accepted": rec["key"] in accepted_keys,
            "rejected_for": rejected.get(rec["key"], []),
            "carbon": "carbon" in movie, "contamination": len(movie.get("contamination", [])),
            "defocus": 0.5 * (movie["defocus_u"] + movie["defocus_v"]),
            "score": None if score is None else score.__dict__,
            "ctf_score": rec.get("ctf_score"), "ctf_resolution": rec.get("ctf_resolution"),
            "ctf_uncertainty": rec.get("ctf_uncertainty"), "gain_suspect": rec.get("gain_suspect"),
        })  # fmt: skip
    return rows


def run_case(
    root: Path, level: str, case: tuple[str, float, str], args: Any, seed: int
) -> list[dict[str, Any]]:
    from emotf.demo import demo_config
    from emotf.sim import SimParams, simulate_session

    detector, pixel, fmt = case
    session, out = root / f"{level}_{detector}_{pixel}", root / f"{level}_{detector}_{pixel}_OTF"
    params = SimParams(size=args.size, n_frames=args.frames, pixel_size=pixel, format=fmt,
                       realism=level, detector=detector, seed=seed,
                       defocus_range=(5000.0, 35000.0))  # fmt: skip
    start = time.perf_counter()
    truth = simulate_session(session, params, args.movies)
    simulated = time.perf_counter() - start
    config = demo_config(truth.particle_diameter)
    config["batches"] = {"size": args.movies, "settle_seconds": 0, "tail_seconds": 1}
    config["acquisition"] = {"gain": "gain.mrc", "gain_flip": 1 if fmt == "tiff" else 0}
    cfg = write_yaml(root / f"{session.name}.yaml", config)
    measured = measure(emotf_run_argv(session, out, cfg, "--once"))
    check(measured, f"emotf run ({session.name})")
    rows = score_case(session, out, level, f"{detector} {pixel} Å")
    print(f"  {session.name}: {len(rows)} movies, simulated in {simulated:.0f} s, "
          f"processed in {measured.seconds:.0f} s", flush=True)  # fmt: skip
    return rows


def _err(row: dict[str, Any]) -> float | None:
    s = row["score"]
    if not s or s["defocus_u_error"] is None:
        return None
    return float(max(s["defocus_u_error"], s["defocus_v_error"]))


def level_report(level: str, rows: list[dict[str, Any]]) -> Report:
    report = Report(f"science, realism={level} ({len(rows)} micrographs)")
    done = [r for r in rows if r["state"] == "done" and r["score"]]
    acc = [r for r in done if r["accepted"]]
    errors = [e for e in (_err(r) for r in done) if e is not None]
    acc_err = [e for e in (_err(r) for r in acc) if e is not None]
    report.add("micrographs done", len(done), note=f"of {len(rows)}")
    report.add("accepted by default curation", len(acc))
    report.add("CTF error median (all)", percentile(errors, 50), "Å")
    report.add("CTF error p90 (all)", percentile(errors, 90), "Å")
    report.add("accepted within 100 Å", 100.0 * np.mean([e <= 100 for e in acc_err])
               if acc_err else None, "%", goal=90, higher=True)  # fmt: skip
    report.add("worst accepted CTF error", max(acc_err) if acc_err else None, "Å", goal=500)
    angles = [r["score"]["angle_error"] for r in acc if (r["score"]["astigmatism"] or 0) >= 300]
    report.add("worst azimuth error (astig ≥ 300 Å, accepted)", max(angles) if angles else None,
               "°", goal=10)  # fmt: skip
    clean = [r for r in done if not r["carbon"] and r["score"]["recall"] is not None]
    report.add("min LoG recall (no carbon)", min((r["score"]["recall"] for r in clean),
               default=None), goal=0.8, higher=True)  # fmt: skip
    report.add("min LoG precision (no carbon)", min((r["score"]["precision"] for r in clean),
               default=None), goal=0.8, higher=True)  # fmt: skip
    report.add(
        "median LoG recall (no carbon)", percentile([r["score"]["recall"] for r in clean], 50)
    )
    report.add("median LoG precision (no carbon)",
               percentile([r["score"]["precision"] for r in clean], 50))  # fmt: skip
    carbon = [r for r in done if r["carbon"] and r["score"]["recall"] is not None]
    if carbon:
        report.add("median LoG precision (carbon edge)",
                   percentile([r["score"]["precision"] for r in carbon], 50))  # fmt: skip
    drifts = [r["score"]["drift_rmse"] for r in done if r["score"]["drift_rmse"] is not None]
    report.add("max drift RMSE", max(drifts) if drifts else None, "px", goal=0.5,
               note="best common translation removed")  # fmt: skip
    anchored = [r["score"]["drift_rmse_frame1"] for r in done
                if r["score"]["drift_rmse_frame1"] is not None]  # fmt: skip
    report.add("max drift RMSE, anchored on frame 1", max(anchored) if anchored else None, "px")
    report.add("gain flagged (correct gain)", sum(bool(r["gain_suspect"]) for r in rows), goal=0)
    return report


def rescore(root: Path, levels: list[str]) -> int:
    for level in levels:
        rows: list[dict[str, Any]] = []
        for out in sorted(root.glob(f"{level}_*_OTF")):
            session = Path(str(out)[: -len("_OTF")])
            _level, detector, pixel = session.name.split("_")
            rows += score_case(session, out, level, f"{detector} {pixel} Å")
        level_report(level, rows).print()
    return 0


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--movies", type=int, default=4, help="movies per case (4 cases per level)")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--levels", nargs="+", default=["ideal", "realistic"])
    p.add_argument("--rescore", help="score the sessions kept in this work folder again")
    args = p.parse_args()
    if args.rescore:
        return rescore(Path(args.rescore), args.levels)
    require_programs()
    all_rows: dict[str, list[dict[str, Any]]] = {}
    with work_folder(args, "science") as root:
        for level in args.levels:
            print(f"realism={level}", flush=True)
            rows: list[dict[str, Any]] = []
            for n, case in enumerate(CASES):
                rows += run_case(root, level, case, args, args.seed + n)
            all_rows[level] = rows
            report = level_report(level, rows)
            report.details["micrographs"] = rows
            report.print()
            if args.json:
                report.write_json(args.json.replace(".json", f"_{level}.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
