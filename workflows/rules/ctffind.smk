rule ctffind:
    """CTF estimation of a batch: emotf's CTFFIND-style estimator (CPU) or CTFFIND4/5."""
    input:
        import_json="Import/{batch}/import.json",
        motioncor_json="MotionCorr/{batch}/motioncor.json",
    output:
        json="CtfFind/{batch}/ctffind.json",
        star="CtfFind/{batch}/micrographs_ctf.star",
    log:
        "logs/ctffind/{batch}.log",
    threads: 2
    run:
        run_step("ctffind", input, output, log, threads, resources, wildcards, config)
