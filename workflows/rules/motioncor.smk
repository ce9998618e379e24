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
        "motion_total": {"star": "rlnAccumMotionTotal", "unit": "Å", "label": "total motion",
                         "summary": True, "stat": True, "histogram": True},
        "motion_early": {"star": "rlnAccumMotionEarly", "unit": "Å", "summary": True,
                         "stat": True},
        "motion_late": {"star": "rlnAccumMotionLate", "unit": "Å", "summary": True,
                        "stat": True},
        "shifts": {},
        "binning": {},
    },
    session_star={
        "file": "micrographs.star",
        "table": "micrographs",
        "columns": ["micrograph", "motion_star", "motion_total", "motion_early", "motion_late"],
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
