"""Signal-weighted 2D refinement of a CTF fit and its uncertainty from the data's own noise.

After a first fit, the spectrum is cut into annuli and the correlation ``r`` of the
background-subtracted spectrum with CTF² is measured in each. Writing the normalised spectrum
of an annulus as ``y = a·m + n`` (unit variance, so ``a² var(m) = r²`` and ``var(n) = 1 − r²``),
the matched-filter weight of its pixels is ``a / var(n) ∝ r / (1 − r²)``: annuli where the
Thon rings have faded (B-factor, detector MTF, drift) get no weight, so the fitting band's
high limit is chosen by the data rather than by ``max_res``.

The uncertainty is the Cramér–Rao (Gauss–Newton sandwich) standard error of (U, V, azimuth)
for that weighted least-squares fit, with each annulus' noise variance measured from the fit
residuals. Pixels are treated as independent, which holds for the non-windowed periodogram of
a tile average; systematic model errors are not covered (see the half-set check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from .model import Defocus, Optics, amplitude_contrast_phase, chi

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Pixels:
    """The spectrum pixels of the fitting band: normalised values, k², azimuth."""

    values: FloatArray
    s: FloatArray
    theta: FloatArray

    def subset(self, keep: NDArray[np.bool_]) -> Pixels:
        return Pixels(self.values[keep], self.s[keep], self.theta[keep])


def ctf2(s: FloatArray, theta: FloatArray, d: Defocus, optics: Optics) -> FloatArray:
    value = np.sin(chi(s, theta, d, optics) + amplitude_contrast_phase(optics))
    return np.asarray(value * value)


def weighted_ncc(a: FloatArray, b: FloatArray, w: FloatArray) -> float:
    total = float(w.sum())
    if total <= 0:
        return 0.0
    am = a - float((w * a).sum()) / total
    bm = b - float((w * b).sum()) / total
    num = float((w * am * bm).sum())
    den = math.sqrt(float((w * am * am).sum()) * float((w * bm * bm).sum()))
    return num / den if den > 0 else 0.0


def annuli(s: FloatArray, n: int = 24) -> NDArray[np.intp]:
    """Annulus index (equal steps in |k|) of each pixel."""
    k = np.sqrt(s)
    edges = np.linspace(float(k.min()), float(k.max()) * 1.0001, n + 1)
    return np.clip(np.digitize(k, edges) - 1, 0, n - 1)


def annulus_correlation(px: Pixels, model: FloatArray, index: NDArray[np.intp]) -> FloatArray:
    n = int(index.max()) + 1
    r = np.zeros(n)
    for b in range(n):
        sel = index == b
        if sel.sum() > 8:
            r[b] = weighted_ncc(px.values[sel], model[sel], np.ones(int(sel.sum())))
    return r


def signal_weights(px: Pixels, d: Defocus, optics: Optics) -> tuple[FloatArray, FloatArray]:
    """Per-pixel matched-filter weight ``r/(1−r²)`` of its annulus (0 where r ≤ 0), and r."""
    index = annuli(px.s)
    r = annulus_correlation(px, ctf2(px.s, px.theta, d, optics), index)
    # an annulus of N pixels correlates by ~N^-1/2 from noise alone: keep what clears 2σ
    counts = np.bincount(index, minlength=len(r)).astype(float)
    floor = 2.0 / np.sqrt(np.maximum(counts, 1.0))
    rc = np.clip(np.where(r > floor, r, 0.0), 0.0, 0.9)
    weight = rc / (1.0 - rc * rc)
    return weight[index], r


def refine_weighted(px: Pixels, w: FloatArray, optics: Optics, start: Defocus) -> Defocus:
    keep = w > 0
    sub, ws = px.subset(keep), w[keep]

    def cost(x: FloatArray) -> float:
        return -weighted_ncc(sub.values, ctf2(sub.s, sub.theta, Defocus(*x), optics), ws)

    res = minimize(
        cost,
        np.array([start.u, start.v, start.angle]),
        method="Powell",
        options={"xtol": 1.0, "ftol": 1e-7, "maxfev": 3000},
    )
    return Defocus(float(res.x[0]), float(res.x[1]), float(res.x[2])).normalised()


def jacobian(px: Pixels, d: Defocus, optics: Optics) -> FloatArray:
    """d CTF² / d (U, V, azimuth in degrees) per pixel, shape (n, 3)."""
    phase = chi(px.s, px.theta, d, optics) + amplitude_contrast_phase(optics)
    dm_ddf = np.sin(2.0 * phase) * math.pi * optics.wavelength * px.s
    c = np.cos(2.0 * (px.theta - math.radians(d.angle)))
    sn = np.sin(2.0 * (px.theta - math.radians(d.angle)))
    return np.stack(
        [
            dm_ddf * 0.5 * (1.0 + c),
            dm_ddf * 0.5 * (1.0 - c),
            dm_ddf * (d.u - d.v) * sn * math.radians(1.0),
        ],
        axis=1,
    )


def fit_uncertainty(
    px: Pixels, w: FloatArray, d: Defocus, optics: Optics
) -> tuple[float, float] | None:
    """Standard errors (max of U, V in Å; azimuth in °) of the weighted fit at ``d``."""
    keep = w > 0
    if keep.sum() < 50:
        return None
    sub, ws = px.subset(keep), w[keep]
    model = ctf2(sub.s, sub.theta, d, optics)
    design = np.stack([np.ones_like(model), model], axis=1)
    coef = np.linalg.lstsq(design * np.sqrt(ws)[:, None], sub.values * np.sqrt(ws), rcond=None)[0]
    amp = float(coef[1])
    if amp <= 0:
        return None
    resid = sub.values - design @ coef
    index = annuli(sub.s)
    counts = np.maximum(np.bincount(index), 1)
    var = (np.bincount(index, resid * resid) / counts)[index]
    jac = amp * jacobian(sub, d, optics)
    jac = jac - (ws[:, None] * jac).sum(axis=0) / ws.sum()  # the offset is fitted too
    bread = (jac * ws[:, None]).T @ jac
    meat = (jac * (ws * ws * var)[:, None]).T @ jac
    try:
        inv = np.linalg.inv(bread)
    except np.linalg.LinAlgError:
        return None
    cov = inv @ meat @ inv
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    return float(max(sd[0], sd[1])), float(sd[2])
