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
