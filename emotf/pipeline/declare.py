"""Read step declarations from rule files, without running them.

A step is declared in its rule file by one call with literal arguments::

    emotf_step(
        name="ctffind",
        rule_name="ctffind",
        output="CtfFind/{batch}/ctffind.json",
        needs=["motioncor"],
        count="ctffind",
        fields={"defocus_u": {"star": "rlnDefocusU", "unit": "Å", "summary": True}},
    )

In Snakemake ``emotf_step`` (from ``common.smk``) does nothing; emotf reads the call's text
with :func:`ast.literal_eval`, so the worker never executes a rule file to learn the
pipeline. A bad declaration is an error naming the file and line; the step is left out and
the rest of the pipeline runs.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any

from .model import NAME, RESERVED, Field, PipelineError, SessionStar, Step

CALL = "emotf_step"
_START = re.compile(rf"^{CALL}\s*\(", re.MULTILINE)
STEP_KEYS = {
    "name",
    "rule_name",
    "output",
    "needs",
    "count",
    "required",
    "fields",
    "session_star",
    "description",
}
FIELD_KEYS = {f.name for f in dc_fields(Field)} - {"name"}
STAR_KEYS = {f.name for f in dc_fields(SessionStar)}


def _call_text(text: str, start: int) -> str:
    """The source of the call starting at ``start`` (up to its closing parenthesis)."""
    tokens = tokenize.generate_tokens(io.StringIO(text[start:]).readline)
    lines = text[start:].splitlines(keepends=True)
    try:
        return _until_closed(text, start, tokens, lines)
    except tokenize.TokenError:
        raise PipelineError("unclosed parenthesis") from None


def _until_closed(
    text: str, start: int, tokens: Iterator[tokenize.TokenInfo], lines: list[str]
) -> str:
    depth = 0
    for tok in tokens:
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
            if depth == 0:
                row, col = tok.end
                end = start + sum(len(ln) for ln in lines[: row - 1]) + col
                return text[start:end]
    raise PipelineError("unclosed parenthesis")


def _kwargs(call: str) -> dict[str, Any]:
    node = ast.parse(call, mode="eval").body
    if not isinstance(node, ast.Call) or node.args:
        raise PipelineError(f"{CALL}(...) takes keyword arguments only")
    out: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise PipelineError(f"{CALL}(...) does not take **kwargs")
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError as exc:
            raise PipelineError(f"argument {kw.arg!r} is not a literal value ({exc})") from None
    return out


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise PipelineError(f"{what} must be a lower-case identifier, got {value!r}")
    return value


def _field(name: str, spec: Any) -> Field:
    if spec is None or spec is True:
        spec = {}
    if not isinstance(spec, dict) or set(spec) - FIELD_KEYS:
        raise PipelineError(
            f"field {name!r}: expected a mapping with keys among {', '.join(sorted(FIELD_KEYS))}"
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,59}", name):
        raise PipelineError(f"field name {name!r} is not an identifier")
    total = spec.get("total")
    if total is not None:
        _name(total, f"field {name!r} total")
    return Field(name=name, **{k: v for k, v in spec.items()})


def _session_star(spec: Any) -> SessionStar | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - STAR_KEYS or not {"file", "table"} <= set(spec):
        raise PipelineError(
            "session_star needs 'file' and 'table' (and optional 'columns', 'optics', 'merge')"
        )
    file = spec["file"]
    if not isinstance(file, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+\.star", file):
        raise PipelineError(f"session_star file {file!r} must be a plain *.star file name")
    return SessionStar(
        file=file,
        table=str(spec["table"]),
        columns=tuple(str(c) for c in spec.get("columns", ())),
        optics=bool(spec.get("optics", True)),
        merge=spec.get("merge"),
    )


def build_step(values: dict[str, Any], source: str) -> Step:
    """A :class:`Step` from a declaration's arguments; PipelineError when invalid."""
    unknown = set(values) - STEP_KEYS
    if unknown:
        raise PipelineError(f"unknown argument(s) {', '.join(sorted(unknown))}")
    name = _name(values.get("name"), "name")
    output = values.get("output")
    if (
        not isinstance(output, str)
        or "{batch}" not in output
        or output.startswith("/")
        or ".." in Path(output).parts
        or not output.endswith(".json")
    ):
        raise PipelineError("output must be a relative *.json path containing {batch}")
    count = _name(values.get("count", name), "count")
    if count in RESERVED:
        raise PipelineError(f"count label {count!r} is reserved")
    needs = values.get("needs", [])
    if not isinstance(needs, list | tuple):
        raise PipelineError("needs must be a list of step names")
    specs = values.get("fields", {})
    if not isinstance(specs, dict):
        raise PipelineError("fields must be a mapping of field name to its description")
    return Step(
        name=name,
        rule=_name(values.get("rule_name", name), "rule_name"),
        output=output,
        needs=tuple(_name(n, "needs") for n in needs),
        count=count,
        required=bool(values.get("required", True)),
        fields=tuple(_field(k, v) for k, v in specs.items()),
        session_star=_session_star(values.get("session_star")),
        source=source,
        description=str(values.get("description", "")),
    )


def declarations(path: Path) -> list[Step]:
    """The steps declared in one rule file (usually one, none for helper files)."""
    text = path.read_text(encoding="utf-8")
    steps = []
    for match in _START.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        source = f"{path}:{line}"
        try:
            steps.append(build_step(_kwargs(_call_text(text, match.start())), source))
        except (PipelineError, SyntaxError, tokenize.TokenError) as exc:
            raise PipelineError(f"{source}: invalid {CALL}(...) declaration: {exc}") from None
    return steps
