"""Folders made before steps were declared (layout "legacy-1", emotf ≤ 0.1 of 2026-11).

Their ``workflow/`` copy has the four steps import → motioncor → ctffind, picking with the
same rules and outputs as today's built-in declarations, but no ``emotf_step`` calls, and
their results have no per-step ``steps`` map. They keep running: the pipeline is the
package's built-in declaration of those four steps, and records are completed on reading.
"""

from __future__ import annotations

from typing import Any

from .model import Pipeline

LEGACY_1 = ("import", "motioncor", "ctffind", "picking")  # the steps of that layout, in order


def legacy_pipeline(errors: list[str]) -> Pipeline:
    from .load import builtin_pipeline

    steps = tuple(s for s in builtin_pipeline().steps if s.name in LEGACY_1)
    return Pipeline(steps=steps, rule_files=(), errors=errors, version="legacy-1")


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """Fill what records written by earlier versions lack (in place; returns it)."""
    if "steps" in record:
        return record  # written by a pipeline with declarations: complete as it is
    # legacy-1 records: a movie reached every step before the one it failed at
    failed = record.get("failed_step")
    reached = (
        LEGACY_1
        if record.get("state") == "done" or failed not in LEGACY_1
        else LEGACY_1[: LEGACY_1.index(failed)]
    )
    record["steps"] = {s: True for s in reached}
    if failed in LEGACY_1:
        record["steps"][failed] = False
    if "motion_total" in record and "accum_motion_total_px" not in record:
        pixel = float(record.get("pixel_size") or 1.0)  # earlier releases wrote Å only
        for part in ("total", "early", "late"):
            if f"motion_{part}" in record:
                record[f"accum_motion_{part}_px"] = round(record[f"motion_{part}"] / pixel, 4)
    if "defocus_u" in record and "defocus_v" in record and "defocus" not in record:
        u, v = float(record["defocus_u"]), float(record["defocus_v"])
        record["defocus"] = round(0.5 * (u + v), 2)
        record["astigmatism"] = round(abs(u - v), 2)
    return record
