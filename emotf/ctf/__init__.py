"""emotf's CTFFIND4-style CTF estimator (numpy) and CTFFIND-format writers."""

from .ctffind_format import CtffindHeader, ctffind_avrot, ctffind_txt, run_on_file
from .estimate import CtfEstimate, CtfSearch, estimate_ctf
from .spectrum import CtfError

__all__ = [
    "CtfError",
    "CtfEstimate",
    "CtfSearch",
    "CtffindHeader",
    "ctffind_avrot",
    "ctffind_txt",
    "estimate_ctf",
    "run_on_file",
]
