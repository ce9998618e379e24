"""Accept or reject each micrograph against the thresholds of ``config['curation']``."""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def rejection_reasons(record: Record, limits: dict[str, Any]) -> list[str]:
    """Why ``record`` (a done movie's result) is rejected, each as ``"<limit>: <text>"``;
    empty when it is accepted."""
    reasons = []

    def check(limit: str, value: float | None, bad: bool, text: str) -> None:
        if limits.get(limit) is not None and value is not None and bad:
            reasons.append(f"{limit}: {text}")

    res = record.get("ctf_resolution")
    check(
        "max_ctf_resolution",
        res,
        res is not None and res > limits.get("max_ctf_resolution", 0),
        f"CTF fit resolution {res} Å > {limits.get('max_ctf_resolution')} Å",
    )
    if "defocus_u" in record:
        mean = 0.5 * (record["defocus_u"] + record["defocus_v"])
        astig = abs(record["defocus_u"] - record["defocus_v"])
        lo, hi = limits.get("min_defocus"), limits.get("max_defocus")
        check("min_defocus", mean, lo is not None and mean < lo, f"defocus {mean:.0f} Å < {lo} Å")
        check("max_defocus", mean, hi is not None and mean > hi, f"defocus {mean:.0f} Å > {hi} Å")
        cap = limits.get("max_astigmatism")
        check(
            "max_astigmatism",
            astig,
            cap is not None and astig > cap,
            f"astigmatism {astig:.0f} Å > {cap} Å",
        )
    spread = record.get("ctf_uncertainty")
    cap = limits.get("max_ctf_uncertainty")
    check(
        "max_ctf_uncertainty",
        spread,
        cap is not None and spread is not None and spread > cap,
        f"CTF fit uncertainty {spread} Å > {cap} Å",
    )
    motion = record.get("motion_total")
    cap = limits.get("max_motion_total")
    check(
        "max_motion_total",
        motion,
        cap is not None and motion is not None and motion > cap,
        f"total motion {motion} Å > {cap} Å",
    )
    picks = record.get("particles")
    low = limits.get("min_particles")
    check(
        "min_particles",
        picks,
        low is not None and picks is not None and picks < low,
        f"{picks} particles < {low}",
    )
    return reasons


def curate(
    records: list[Record], limits: dict[str, Any]
) -> tuple[list[Record], dict[str, list[str]]]:
    """(accepted records, {key: reasons} of rejected ones) among the done movies."""
    accepted: list[Record] = []
    rejected: dict[str, list[str]] = {}
    for record in records:
        if record.get("state") != "done":
            continue
        reasons = rejection_reasons(record, limits)
        if reasons:
            rejected[record["key"]] = reasons
        else:
            accepted.append(record)
    return accepted, rejected
