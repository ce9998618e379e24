"""CTFFIND4 / CTFFIND5 backend of the CTF step: one program run per micrograph.

The parameters are checked first (:func:`emotf.tools.ctffind.check_params`): a configuration
CTFFIND would reject stops the whole batch with one clear error instead of failing every
micrograph with CTFFIND's scripted-mode exit.
"""

from __future__ import annotations

from ..parsers.ctffind import parse_ctffind_stdout
from ..records import ParseError
from ..tools import ctffind as cf
from .base import Record, StepContext, StepError, StepOutput, error_tail, run_tool
from .ctf import collect_ctffind, ctf_fields, optics_of, out_stem, search_params


def _params(ctx: StepContext, row: Record) -> cf.CtffindParams:
    """The same search as the built-in estimator's, as CTFFIND answers."""
    search = search_params(ctx.config, row)
    optics = optics_of(ctx.config, row)
    return cf.CtffindParams(
        pixel_size=float(row["pixel_size"]) * float(row.get("binning", 1.0)),
        voltage=optics.voltage_kv,
        cs=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
        box=search.box,
        min_res=search.min_res,
        max_res=search.max_res,
        min_defocus=search.min_defocus,
        max_defocus=search.max_defocus,
        step=search.step,
        thickness=bool(ctx.config["ctffind"]["thickness"]),
    )


def run_ctffind(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    c = ctx.config["ctffind"]
    version = 5 if c["backend"] == "ctffind5" else 4
    exe = c.get("executable") or ("ctffind5" if version == 5 else "ctffind")
    env = cf.ctffind_env()
    argv = cf.ctffind_argv(exe, threads=ctx.threads)
    for key, row in rows.items():
        stem = out_stem(ctx.batch, row)
        stem.parent.mkdir(parents=True, exist_ok=True)
        diagnostic = cf.diagnostic_path(stem)
        params = _params(ctx, row)
        try:
            cf.check_params(params, version)
        except ValueError as exc:
            raise StepError(f"ctffind configuration rejected: {exc}") from exc
        try:
            answers = cf.stdin_answers(row["micrograph_nodw"], diagnostic, params, version)
        except ValueError as exc:  # e.g. a control character in the file name: this movie only
            out.fail(key, str(exc))
            continue
        proc = run_tool(argv, stem.parent / "ctffind.log", stdin=cf.stdin_text(answers), env=env)
        txt, _avrot = cf.outputs(diagnostic)
        if txt.is_file():
            collect_ctffind(out, key, stem)
            continue
        try:  # some builds print the summary but fail to write the text file
            result = parse_ctffind_stdout(proc.stdout)
        except ParseError:
            out.fail(key, f"CTFFIND wrote no results: {error_tail(proc)}")
            continue
        out.succeed(key, ice_ring_density=None, **ctf_fields(result, stem, f"{diagnostic}:mrc"))
