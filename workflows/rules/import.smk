rule import_movies:
    """Check each movie of a batch, read its EPU metadata and link it under Movies/."""
    input:
        manifest="batches/{batch}.json",
    output:
        json="Import/{batch}/import.json",
        star="Import/{batch}/movies.star",
    log:
        "logs/import/{batch}.log",
    threads: 1
    run:
        run_step("import", input, output, log, threads, resources, wildcards, config)
