"""Compare a processed simulated session with its ``ground_truth.json``.

Orientation: the simulator's truth is in numpy (TIFF page) orientation. RELION reads TIFF
flipped in Y, so for TIFF movies corrected by RELION the truth is mirrored before comparing:
particle ``y -> H - 1 - y``, astigmatism angle ``-> -angle``, drift ``dy -> -dy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from .fsutil import read_json
from .parsers.relion import read_coordinates_star


@dataclass
class MovieScore:
    key: str
    drift_rmse: float | None = None  # px, best common translation removed
    drift_rmse_frame1: float | None = None  # px, both trajectories anchored on frame 1
    defocus_u_error: float | None = None
    defocus_v_error: float | None = None
    angle_error: float | None = None
    astigmatism: float | None = None
    recall: float | None = None
    precision: float | None = None


def angle_difference(a: float, b: float) -> float:
    """Smallest difference between two astigmatism azimuths (degrees, period 180)."""
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


def drift_rmse(
    shifts: list[list[float]], drift: list[list[float]], flip_y: bool, anchored: bool = False
) -> float:
    """RMSE (px) between measured corrections and the truth's -drift.

    By default the best common translation is removed first: where the trajectory is anchored
    does not change the aligned sum (only its registration), while RELION anchors it on frame
    1, whose own estimate (one low-dose frame) would otherwise count in every frame.
    ``anchored``: both relative to frame 1, as reported.
    """
    measured = np.asarray(shifts, dtype=float)
    truth = -np.asarray(drift, dtype=float)
    if flip_y:
        truth[:, 1] *= -1.0
    diff = (measured - measured[0]) - (truth - truth[0])
    if not anchored:
        diff = diff - diff.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=1))))


def match_picks(picks: np.ndarray, truth: np.ndarray, max_distance: float) -> tuple[float, float]:
    """Recall and precision with one-to-one greedy matching within ``max_distance``."""
    if len(truth) == 0 or len(picks) == 0:
        return (0.0 if len(truth) else 1.0), (0.0 if len(picks) else 1.0)
    tree = cKDTree(truth)
    dist, idx = tree.query(picks, k=min(5, len(truth)), distance_upper_bound=max_distance)
    dist, idx = np.atleast_2d(dist), np.atleast_2d(idx)
    if dist.shape[0] != len(picks):
        dist, idx = dist.T, idx.T
    pairs = sorted(
        (d, p, t)
        for p in range(len(picks))
        for d, t in zip(dist[p], idx[p], strict=True)
        if math.isfinite(d)
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    for _d, p, t in pairs:
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
    return len(used_t) / len(truth), len(used_p) / len(picks)


def score_movie(
    record: dict[str, Any], truth: dict[str, Any], gt: dict[str, Any], out_dir: Path, flip_y: bool
) -> MovieScore:
    score = MovieScore(record["key"])
    ny = int(gt["shape"][0])
    binning = float(record.get("binning", 1.0))
    if "shifts" in record:
        score.drift_rmse = drift_rmse(record["shifts"], truth["drift"], flip_y)
        score.drift_rmse_frame1 = drift_rmse(record["shifts"], truth["drift"], flip_y, True)
    if "defocus_u" in record:
        angle = -truth["angle"] if flip_y else truth["angle"]
        score.defocus_u_error = abs(record["defocus_u"] - truth["defocus_u"])
        score.defocus_v_error = abs(record["defocus_v"] - truth["defocus_v"])
        score.angle_error = angle_difference(record["defocus_angle"], angle)
        score.astigmatism = abs(truth["defocus_u"] - truth["defocus_v"])
    if "coordinates" in record:
        picks = read_coordinates_star(out_dir / record["coordinates"])
        found = np.array([[p.x, p.y] for p in picks], dtype=float).reshape(-1, 2) * binning
        true_xy = np.asarray(truth["particles"], dtype=float).reshape(-1, 2)
        if flip_y:
            true_xy[:, 1] = ny - 1 - true_xy[:, 1]
        radius_px = 0.5 * float(gt["particle_diameter"]) / float(gt["pixel_size"])
        score.recall, score.precision = match_picks(found, true_xy, 2.0 * radius_px)
    return score


def evaluate(
    out_dir: Path,
    session_dir: Path,
    records: list[dict[str, Any]],
    motioncor_backend: str = "relion",
) -> list[MovieScore]:
    gt = read_json(Path(session_dir) / "ground_truth.json")
    flip_y = motioncor_backend == "relion" and gt["format"] == "tiff"
    scores = []
    for record in records:
        truth = gt["movies"].get(record["key"])
        if truth is None or truth.get("kind", "good") != "good" or record["state"] != "done":
            continue
        scores.append(score_movie(record, truth, gt, Path(out_dir), flip_y))
    return scores


def _stat(values: list[float], fn: str) -> float | None:
    if not values:
        return None
    return float(np.max(values) if fn == "max" else np.min(values))


def summarise(scores: list[MovieScore]) -> dict[str, float | int | None]:
    """Worst-case figures over all scored movies (what the acceptance criteria bound)."""
    astig = [
        s.angle_error for s in scores if s.angle_error is not None and (s.astigmatism or 0) >= 300
    ]
    return {
        "movies_scored": len(scores),
        "max_drift_rmse_px": _stat(
            [s.drift_rmse for s in scores if s.drift_rmse is not None], "max"
        ),
        "max_defocus_error_A": _stat(
            [
                max(s.defocus_u_error or 0, s.defocus_v_error or 0)
                for s in scores
                if s.defocus_u_error is not None
            ],
            "max",
        ),
        "max_angle_error_deg": _stat([a for a in astig if a is not None], "max"),
        "min_pick_recall": _stat([s.recall for s in scores if s.recall is not None], "min"),
        "min_pick_precision": _stat(
            [s.precision for s in scores if s.precision is not None], "min"
        ),
    }
