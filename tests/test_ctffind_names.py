"""CTFFIND reads its answers line by line from stdin: a file name with a newline (or another
control character) must be refused, not split into answers to the following questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotf.tools import ctffind as cf

PARAMS = cf.CtffindParams(pixel_size=1.0, voltage=300.0)


@pytest.mark.parametrize("bad", ["mic\n1.5.mrc", "mic\r.mrc", "mic\x1b[2J.mrc", "mic\x85.mrc"])
def test_a_control_character_in_the_input_name_is_refused(tmp_path: Path, bad: str) -> None:
    micrograph = tmp_path / bad
    with pytest.raises(ValueError, match="control character") as caught:
        cf.stdin_answers(micrograph, tmp_path / "ok.ctf", PARAMS, 5)
    assert repr(str(micrograph))[1:-1] in str(caught.value)  # names the file


def test_a_control_character_in_the_output_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="diagnostic output"):
        cf.stdin_answers(tmp_path / "ok.mrc", tmp_path / "x\nyes.ctf", PARAMS, 4)


def test_ordinary_names_are_one_answer_each(tmp_path: Path) -> None:
    micrograph = tmp_path / "FoilHole_1 (copy)_Data_ä.mrc"
    answers = cf.stdin_answers(micrograph, tmp_path / "o.ctf", PARAMS, 4)
    assert answers[:2] == [str(micrograph), str(tmp_path / "o.ctf")]
    assert all("\n" not in a for a in answers)
