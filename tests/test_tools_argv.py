"""argv lists and stdin answers of MotionCor2/3, CTFFIND4/5 and crYOLO as production runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotf.tools import cryolo as cy
from emotf.tools import ctffind as cf
from emotf.tools import motioncor as mc

P = mc.MotionCorParams(pixel_size=0.83, voltage=300, dose_per_frame=1.25, patches=(7, 5),
                       gain=Path("/data/gain.mrc"), gain_flip=1, bin_factor=2.0)  # fmt: skip


def test_versions_choose_logdir_or_logfile() -> None:
    assert mc.version_tuple("1.6.4") == (1, 6, 4) and mc.version_tuple("v1.5.0-beta") == (1, 5, 0)
    assert not mc.uses_logdir("motioncor2", "1.4.1")
    assert not mc.uses_logdir("motioncor2", "1.5.0")
    assert mc.uses_logdir("motioncor2", "1.6.3")
    assert mc.uses_logdir("MotionCor3", "1.0.1")


def test_motioncor3_batch_argv_exact() -> None:
    argv = mc.batch_argv("MotionCor3", "motioncor3", "tiff", Path("work/movies"), ".tiff",
                         Path("work/out"), Path("work/log"), P)  # fmt: skip
    assert argv == [
        "MotionCor3", "-InTiff", "work/movies/", "-InSuffix", ".tiff", "-OutMrc", "work/out/",
        "-Serial", "1", "-LogDir", "work/log/",
        "-PixSize", "0.83", "-kV", "300", "-Cs", "2.7", "-AmpCont", "0.07",
        "-FmDose", "1.25", "-InitDose", "0", "-Patch", "7", "5", "-Iter", "10", "-Tol", "0.5",
        "-Bft", "500", "150", "-FtBin", "2", "-Throw", "0", "-Trunc", "0", "-FmRef", "0",
        "-Gain", "/data/gain.mrc", "-RotGain", "0", "-FlipGain", "1", "-OutStack", "0",
        "-Gpu", "0",
    ]  # fmt: skip
    assert all(" " not in a for a in argv)  # never a shell string


def test_motioncor2_batch_has_no_mc3_only_flags() -> None:
    p = mc.MotionCorParams(pixel_size=1.0, voltage=200, dose_per_frame=1.0, gpu="0,1",
                           out_aln=Path("aln"), group=(3, 6), sum_range=(0.0, 0.0),
                           throw=1, trunc=2, split_sum=True)  # fmt: skip
    argv = mc.batch_argv("MotionCor2", "motioncor2", "mrc", Path("m"), ".mrc", Path("o"),
                         Path("l"), p)  # fmt: skip
    assert "-AmpCont" not in argv and "-OutAln" not in argv and "-LogFile" not in argv
    assert argv[1:3] == ["-InMrc", "m/"]
    assert argv[argv.index("-Gpu") :] == ["-Gpu", "0", "1"]
    assert argv[argv.index("-Group") + 1 : argv.index("-Group") + 3] == ["3", "6"]
    assert argv[argv.index("-SumRange") + 1 : argv.index("-SumRange") + 3] == ["0", "0"]
    assert argv[argv.index("-Throw") + 1] == "1" and argv[argv.index("-Trunc") + 1] == "2"
    assert argv[argv.index("-SplitSum") + 1] == "1"
    mc3 = mc.batch_argv("MotionCor3", "motioncor3", "mrc", Path("m"), ".mrc", Path("o"),
                        Path("l"), p)  # fmt: skip
    assert mc3[mc3.index("-OutAln") + 1] == "aln/"


def test_eer_flags_and_fmint_file() -> None:
    p = mc.MotionCorParams(pixel_size=0.72, voltage=300, dose_per_frame=0.03, eer_sampling=2,
                           fmint_file=Path("fmint.txt"))  # fmt: skip
    argv = mc.batch_argv("MotionCor3", "motioncor3", "eer", Path("m"), ".eer", Path("o"),
                         Path("l"), p)  # fmt: skip
    assert argv[1:3] == ["-InEer", "m/"]
    assert argv[argv.index("-EerSampling") + 1] == "2"
    assert argv[argv.index("-FmIntFile") + 1] == "fmint.txt"
    assert mc.fmint_lines(1200, 30, 0.03) == ["1200 30 0.03"]
    with pytest.raises(ValueError):
        mc.fmint_lines(0, 30, 0.03)
    with pytest.raises(ValueError, match="unknown movie format"):
        mc.batch_argv("MotionCor3", "motioncor3", "dm4", Path("m"), ".dm4", Path("o"),
                      Path("l"), p)  # fmt: skip


def test_motioncor2_1_5_single_movie_logfile() -> None:
    argv = mc.single_argv("MotionCor2", "tiff", Path("movies/movie-000001.tiff"),
                          Path("out/movie-000001.mrc"), Path("log/movie-000001"), P)  # fmt: skip
    assert argv[:7] == ["MotionCor2", "-InTiff", "movies/movie-000001.tiff", "-OutMrc",
                        "out/movie-000001.mrc", "-LogFile", "log/movie-000001"]  # fmt: skip
    assert "-LogDir" not in argv and "-AmpCont" not in argv and "-Serial" not in argv


def test_output_names_and_relion_renaming(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert mc.outputs(out, "movie-000001") == (out / "movie-000001_DW.mrc",
                                               out / "movie-000001.mrc")  # fmt: skip
    (out / "movie-000001_DW.mrc").write_text("dw")
    (out / "movie-000001.mrc").write_text("plain")
    final = tmp_path / "MotionCorr" / "Movies" / "FoilHole_1_fractions"
    mic, nodw = mc.rename_to_relion(out, "movie-000001", final)
    assert mic.read_text() == "dw" and mic.name == "FoilHole_1_fractions.mrc"
    assert nodw is not None and nodw.read_text() == "plain"
    assert nodw.name == "FoilHole_1_fractions_noDW.mrc"
    (out / "movie-000002.mrc").write_text("plain only")
    mic2, nodw2 = mc.rename_to_relion(out, "movie-000002", tmp_path / "b")
    assert mic2.read_text() == "plain only" and nodw2 is None
    with pytest.raises(FileNotFoundError):
        mc.rename_to_relion(out, "movie-000003", tmp_path / "c")


CTF = cf.CtffindParams(pixel_size=0.83, voltage=300, amplitude_contrast=0.1,
                       min_defocus=5000, max_defocus=50000)  # fmt: skip
HEAD = ["mic.mrc", "mic.ctf", "0.83", "300", "2.7", "0.1", "512", "30", "5", "5000", "50000",
        "100"]  # fmt: skip


def test_ctffind4_answers_exact() -> None:
    answers = cf.stdin_answers(Path("mic.mrc"), Path("mic.ctf"), CTF, 4)
    assert answers == [*HEAD, "no", "no", "no", "no", "no"]
    assert cf.stdin_text(answers).endswith("100\nno\nno\nno\nno\nno\n")


def test_ctffind5_answers_exact() -> None:
    answers = cf.stdin_answers(Path("mic.mrc"), Path("mic.ctf"), CTF, 5)
    assert answers == [*HEAD, "no", "no", "no", "no", "no", "no", "no"]  # + tilt, thickness
    thick = cf.CtffindParams(pixel_size=0.83, voltage=300, amplitude_contrast=0.1,
                             min_defocus=5000, max_defocus=50000, tilt=True,
                             thickness=True)  # fmt: skip
    assert cf.stdin_answers(Path("mic.mrc"), Path("mic.ctf"), thick, 5) == [
        *HEAD, "no", "no", "no", "no",
        "yes",  # tilt
        "yes", "yes", "yes", "30", "3", "no", "no",  # thickness and its follow-ups
        "no",  # expert options
    ]  # fmt: skip


def test_ctffind_follow_up_questions() -> None:
    p = cf.CtffindParams(pixel_size=1.0, voltage=200, exhaustive_search=True,
                         restrain_astigmatism=True, tolerated_astigmatism=200,
                         phase_shift=(0.0, 3.15, 0.2))  # fmt: skip
    answers = cf.stdin_answers(Path("a.mrc"), Path("a.ctf"), p, 4)
    assert answers[12:] == ["no", "yes", "yes", "200", "yes", "0", "3.15", "0.2", "no"]


def test_ctffind_argv_env_outputs_and_checks() -> None:
    assert cf.ctffind_argv("ctffind5") == ["ctffind5"]
    assert cf.ctffind_argv("ctffind", True, 2) == ["ctffind", "--amplitude-spectrum-input",
                                                   "-j", "2"]  # fmt: skip
    assert cf.ctffind_argv("ctffind", threads=1) == ["ctffind"]  # -j only for > 1 thread
    env = cf.ctffind_env({"PATH": "/usr/bin", "LC_ALL": "de_DE.UTF-8"})
    assert env == {"PATH": "/usr/bin", "LC_ALL": "C"}
    assert cf.diagnostic_path(Path("CtfFind/mic")) == Path("CtfFind/mic.ctf")
    assert cf.outputs(Path("CtfFind/mic.ctf")) == (Path("CtfFind/mic.txt"),
                                                   Path("CtfFind/mic_avrot.txt"))  # fmt: skip
    cf.check_params(CTF, 4)
    with pytest.raises(ValueError, match="CTFFIND5"):
        cf.check_params(cf.CtffindParams(pixel_size=1, voltage=300, thickness=True), 4)
    with pytest.raises(ValueError, match="amplitude-spectrum"):
        cf.check_params(cf.CtffindParams(pixel_size=1, voltage=300, tilt=True), 5, True)
    with pytest.raises(ValueError, match="min_res"):
        cf.check_params(cf.CtffindParams(pixel_size=1, voltage=300, min_res=4), 4)
    with pytest.raises(ValueError, match="phase shift"):
        cf.check_params(cf.CtffindParams(1, 300, tilt=True, phase_shift=(0, 3, 0.1)), 5)
    with pytest.raises(ValueError, match="at most 50"):
        cf.check_params(cf.CtffindParams(pixel_size=1, voltage=300, min_res=60), 5)
    with pytest.raises(ValueError, match="step"):
        cf.check_params(cf.CtffindParams(pixel_size=1, voltage=300, step=0.5), 5)


def test_cryolo_argv_exact() -> None:
    argv = cy.predict_argv("cryolo_predict.py", Path("job/config.json"),
                           Path("gmodel_phosnet_202005_N63_c17.h5"), Path("job/mics"),
                           Path("job/out"), 0.3, 4, "0")  # fmt: skip
    assert argv == [
        "cryolo_predict.py", "-c", "job/config.json", "-w", "gmodel_phosnet_202005_N63_c17.h5",
        "-i", "job/mics/", "-o", "job/out/", "-t", "0.3", "-nc", "4", "-g", "0", "--otf",
    ]  # fmt: skip
    cpu = cy.predict_argv("cryolo_predict.py", Path("c.json"), Path("m.h5"), Path("i"),
                          Path("o"), 0.05, 0, None, otf=False, distance=0, batch_size=3,
                          norm_margin=0, min_size=80, max_size=300)  # fmt: skip
    assert "-g" not in cpu and "--otf" not in cpu and cpu[cpu.index("-nc") + 1] == "1"
    assert cpu[cpu.index("-t") + 1] == "0.05"
    assert cpu[-10:] == ["--distance", "0", "--minsize", "80", "--maxsize", "300",
                         "--prediction_batch_size", "3", "--norm_margin", "0"]  # fmt: skip
    two = cy.predict_argv("p", Path("c"), Path("m"), Path("i"), Path("o"), 0.3, 1, "0,1")
    assert two[two.index("-g") : two.index("-g") + 3] == ["-g", "0", "1"]


def test_cryolo_config() -> None:
    config = cy.config_json(160, max_boxes=600)
    assert config == {
        "model": {
            "architecture": "PhosaurusNet",
            "input_size": 1024,
            "max_box_per_image": 600,
            "norm": "STANDARD",
            "num_patches": 1,
            "filter": [0.1, "filtered_tmp/"],
            "anchors": [160, 160],
        },
        "other": {"log_path": "logs/"},
    }
    janni = cy.CryoloFilter("JANNI", janni_model=Path("gmodel_janni_20190703.h5"),
                            filtered_dir="cryolo_filtered/")  # fmt: skip
    model = cy.config_json(None, image_filter=janni)["model"]
    assert model["filter"] == ["gmodel_janni_20190703.h5", 24, 3, "cryolo_filtered/"]
    assert "anchors" not in model and model["max_box_per_image"] == 700
    with pytest.raises(ValueError):
        cy.config_json(160, image_filter=cy.CryoloFilter("JANNI"))
    with pytest.raises(ValueError):
        cy.config_json(0)
    assert cy.zero_pick_crash("Traceback\nIndexError: list index out of range\n")
    assert not cy.zero_pick_crash("Traceback\nKeyError: 'model'\n")
