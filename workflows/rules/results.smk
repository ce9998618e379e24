SESSION_STARS = session_star_files(PIPELINE)


rule batch_results:
    """One record per movie of the batch (done or failed with its reason), full and summary.
    Its inputs are the per-batch outputs of every step of the pipeline."""
    input:
        manifest="batches/{batch}.json",
        **{step.name: step.output for step in PIPELINE},
    output:
        json="Results/{batch}.json",
        summary="Summary/{batch}.json",
    log:
        "logs/results/{batch}.log",
    localrule: True
    run:
        run_step("results", input, output, log, threads, resources, wildcards, config)


rule session_stars:
    """Session-wide RELION STAR files merged from every finished batch."""
    input:
        expand("Results/{batch}.json", batch=all_batches()),
    output:
        SESSION_STARS,
    log:
        "logs/session_stars.log",
    localrule: True
    run:
        write_session_stars(Path.cwd(), config)
