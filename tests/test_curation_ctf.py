"""Curation rejects a CTF fit whose own (calibrated Cramér–Rao) uncertainty is too large
(issue 15 item 5)."""

from __future__ import annotations

from emotf.config import load_schema
from emotf.curation import curate


def _defaults() -> dict[str, object]:
    props = load_schema()["properties"]["curation"]["properties"]
    return {k: v.get("default") for k, v in props.items()}


def _record(key: str, **fields: object) -> dict[str, object]:
    base = {"key": key, "state": "done", "defocus_u": 15100.0, "defocus_v": 14900.0,
            "ctf_resolution": 5.0, "motion_total": 10.0, "particles": 20}  # fmt: skip
    return {**base, **fields}


def test_uncertain_ctf_fits_are_rejected_by_default() -> None:
    limits = _defaults()
    assert limits["max_ctf_uncertainty"] == 70
    records = [
        _record("sure", ctf_uncertainty=20.0),
        _record("unsure", ctf_uncertainty=95.0),
        _record("ctffind"),  # a backend without the field is not judged on it
    ]
    accepted, rejected = curate(records, limits)
    assert [r["key"] for r in accepted] == ["sure", "ctffind"]
    assert rejected == {"unsure": ["max_ctf_uncertainty: CTF fit uncertainty 95.0 Å > 70 Å"]}
    accepted, _ = curate(records, {**limits, "max_ctf_uncertainty": None})
    assert len(accepted) == 3
