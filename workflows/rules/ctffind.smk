emotf_step(
    name="ctffind",
    output="CtfFind/{batch}/ctffind.json",
    needs=["motioncor"],
    count="ctffind",
    description="CTF estimation: emotf's CTFFIND-style estimator (CPU) or CTFFIND4/5.",
    fields={
        "ctf_image": {"star": "rlnCtfImage"},
        "ctf_txt": {},
        "defocus_u": {"star": "rlnDefocusU", "unit": "Å", "summary": True},
        "defocus_v": {"star": "rlnDefocusV", "unit": "Å", "summary": True},
        "astigmatism": {"star": "rlnCtfAstigmatism", "unit": "Å", "summary": True,
                        "stat": True},
        "defocus_angle": {"star": "rlnDefocusAngle", "unit": "°", "summary": True},
        "ctf_score": {"star": "rlnCtfFigureOfMerit", "summary": True},
        "ctf_resolution": {"star": "rlnCtfMaxResolution", "unit": "Å",
                           "label": "CTF fit resolution", "summary": True, "stat": True,
                           "histogram": True},
        "defocus": {"unit": "Å", "label": "defocus", "summary": True, "stat": True,
                    "histogram": True},
        "ctf_uncertainty": {"unit": "Å", "label": "CTF fit uncertainty", "summary": True,
                            "stat": True},
        "ctf_angle_uncertainty": {"unit": "°", "summary": True, "stat": True},
        "ice_ring_density": {"summary": True, "stat": True},
        "thickness": {"unit": "Å", "summary": True, "stat": True},
    },
    session_star={
        "file": "micrographs_ctf.star",
        "table": "micrographs",
        "columns": ["micrograph", "motion_star", "accum_motion_total_px", "accum_motion_early_px",
                    "accum_motion_late_px", "ctf_image", "defocus_u", "defocus_v", "astigmatism", "defocus_angle",
                    "ctf_score", "ctf_resolution"],
    },
)


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
