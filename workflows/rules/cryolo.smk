emotf_step(
    name="picking",
    rule_name="cryolo",
    output="AutoPick/{batch}/picking.json",
    needs=["motioncor"],
    count="picked",
    description="Particle picking: crYOLO (GPU) or RELION's LoG picker (CPU).",
    fields={
        "coordinates": {"star": "rlnMicrographCoordinates"},
        "picks_dropped": {"summary": True, "stat": True},
        "masked_fraction": {"summary": True, "stat": True},
        "fom_threshold": {},
        "particles": {"label": "particles", "unit": "per micrograph", "total": "particles",
                      "summary": True, "stat": True, "histogram": True},
    },
    session_star={
        "file": "autopick.star",
        "table": "coordinate_files",
        "optics": False,
        "columns": ["micrograph", "coordinates"],
    },
)


rule cryolo:
    """Particle picking of a batch: crYOLO (GPU) or RELION's LoG picker (CPU)."""
    input:
        import_json="Import/{batch}/import.json",
        motioncor_json="MotionCorr/{batch}/motioncor.json",
    output:
        json="AutoPick/{batch}/picking.json",
        star="AutoPick/{batch}/autopick.star",
    log:
        "logs/cryolo/{batch}.log",
    threads: 1
    resources:
        gpu=gpus_for("cryolo"),
    run:
        run_step("picking", input, output, log, threads, resources, wildcards, config)
