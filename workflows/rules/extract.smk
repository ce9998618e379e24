emotf_step(
    name="extract",
    output="Extract/{batch}/extract.json",
    needs=["ctffind", "picking"],
    count="extracted",
    required=False,
    description="Particle extraction with RELION (relion_preprocess --extract), per batch.",
    fields={
        "particles_extracted": {"label": "particles extracted", "total": "particles_extracted",
                                "summary": True},
        "particle_stack": {},
        "particles_star": {},
        "extract_box": {"unit": "px"},
        "extract_pixel_size": {"unit": "Å"},
    },
    session_star={
        "file": "particles.star",
        "table": "particles",
        "merge": "Extract/{batch}/particles.star",
    },
)


rule extract:
    """Particle extraction of a batch (relion_preprocess --extract, CPU)."""
    input:
        ctffind_json="CtfFind/{batch}/ctffind.json",
        picking_json="AutoPick/{batch}/picking.json",
        motioncor_json="MotionCorr/{batch}/motioncor.json",
        import_json="Import/{batch}/import.json",
    output:
        json="Extract/{batch}/extract.json",
        star="Extract/{batch}/particles.star",
    log:
        "logs/extract/{batch}.log",
    threads: 1
    run:
        run_step("extract", input, output, log, threads, resources, wildcards, config)
