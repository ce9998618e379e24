emotf_step(
    name="import",
    rule_name="import_movies",
    output="Import/{batch}/import.json",
    needs=[],
    count="imported",
    description="Check each movie, read its EPU metadata, link it under Movies/.",
    fields={
        "movie": {"star": "rlnMicrographMovieName"},
        "source": {},
        "format": {},
        "n_frames": {},
        "shape": {},
        "grid_square": {"summary": True},
        "pixel_size": {"summary": True, "unit": "Å"},
        "voltage": {},
        "dose_per_frame": {"unit": "e/Å²"},
        "total_dose": {"unit": "e/Å²"},
        "applied_defocus": {},
        "timestamp": {},
        "metadata": {},
    },
    session_star={"file": "movies.star", "table": "movies", "columns": ["movie"]},
)


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
