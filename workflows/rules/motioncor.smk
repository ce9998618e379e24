emotf_step(
    name="motioncor",
    output="MotionCorr/{batch}/motioncor.json",
    needs=["import"],
    count="motioncor",
    description="Motion correction: RELION's own (CPU) or MotionCor2/3 (GPU).",
    fields={
        "micrograph": {"star": "rlnMicrographName"},
        "micrograph_nodw": {},
        "motion_star": {"star": "rlnMicrographMetadata"},
        "motion_total": {"unit": "Å", "label": "total motion", "summary": True, "stat": True,
                         "histogram": True},
        "motion_early": {"unit": "Å", "summary": True, "stat": True},
        "motion_late": {"unit": "Å", "summary": True, "stat": True},
        # RELION's columns hold the sums of the per-frame shift steps in pixels
        "accum_motion_total_px": {"star": "rlnAccumMotionTotal", "unit": "px"},
        "accum_motion_early_px": {"star": "rlnAccumMotionEarly", "unit": "px"},
        "accum_motion_late_px": {"star": "rlnAccumMotionLate", "unit": "px"},
        "gain_suspect": {"label": "gain suspect", "summary": True, "total": "gain_suspect"},
        "gain_evidence": {"summary": True},
        "gain_residual": {"unit": "σ", "summary": True, "stat": True},
        "shifts": {},
        "binning": {},
    },
    session_star={
        "file": "micrographs.star",
        "table": "micrographs",
        "columns": ["micrograph", "motion_star", "accum_motion_total_px", "accum_motion_early_px",
                    "accum_motion_late_px"],
    },
)


rule motioncor:
    """Motion correction of a batch: RELION's own (CPU) or MotionCor2/3 (GPU)."""
    input:
        import_json="Import/{batch}/import.json",
    output:
        json="MotionCorr/{batch}/motioncor.json",
        star="MotionCorr/{batch}/micrographs.star",
    log:
        "logs/motioncor/{batch}.log",
    threads: 2
    resources:
        gpu=gpus_for("motioncor"),
    run:
        run_step("motioncor", input, output, log, threads, resources, wildcards, config)
