"""Find a processing folder's rule files and build its :class:`Pipeline`.

Rule files, in this order (a later declaration of an existing step name is an error):

1. ``workflow/rules/*.smk`` that declare a step: the built-in steps, as copied into the
   folder when it was made (so a folder keeps the pipeline it was made with);
2. ``workflow/rules/local/*.smk``: steps staff add to this session;
3. every ``*.smk`` in the folders of ``config["pipeline"]["rule_dirs"]``: steps a facility
   adds for all sessions of a microscope (written by the worker from its configuration only).

A folder whose rule files declare no step was made before declarations existed: it gets the
versioned declaration of that layout (:mod:`emotf.pipeline.legacy`).
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text
from .declare import declarations
from .legacy import legacy_pipeline
from .model import Pipeline, PipelineError, Step, order_steps

log = logging.getLogger(__name__)

LOCAL_DIR = "local"  # workflow/rules/local/: rule files added to one processing folder
STATE = Path(".emotf") / "pipeline.json"  # the pipeline as the last Snakemake parse saw it


def rule_files(workflow_dir: Path, rule_dirs: list[str] | tuple[str, ...] = ()) -> list[Path]:
    rules = Path(workflow_dir) / "rules"
    files = sorted(rules.glob("*.smk")) + sorted((rules / LOCAL_DIR).glob("*.smk"))
    for folder in rule_dirs:
        files += sorted(Path(folder).glob("*.smk"))
    return [Path(os.path.abspath(f)) for f in files]


def _validate_stars(steps: tuple[Step, ...], errors: list[str]) -> tuple[Step, ...]:
    seen: dict[str, set[str]] = {}
    out = []
    for step in steps:
        known = set().union(*(seen[n] for n in step.needs)) if step.needs else set()
        known |= {f.name for f in step.fields}
        seen[step.name] = known
        star = step.session_star
        missing = [c for c in (star.columns if star else ()) if c not in known]
        if missing:
            errors.append(
                f"{step.source}: session_star columns {', '.join(missing)} are not "
                f"fields of {step.name!r} or of the steps it needs"
            )
        out.append(step)
    return tuple(out)


def build_pipeline(files: list[Path], builtin_dir: Path) -> Pipeline:
    errors: list[str] = []
    steps: dict[str, Step] = {}
    included: list[str] = []
    declared_any = False
    for path in files:
        builtin = path.parent == builtin_dir
        try:
            found = declarations(path)
        except (OSError, UnicodeDecodeError, PipelineError) as exc:
            errors.append(str(exc) if isinstance(exc, PipelineError) else f"{path}: {exc}")
            continue
        declared_any = declared_any or (builtin and bool(found))
        if builtin and not found:
            continue  # common.smk, results.smk: included by the Snakefile itself
        clash = [s.name for s in found if s.name in steps]
        if clash:
            errors.append(
                f"{path}: step {clash[0]!r} is already declared in "
                f"{steps[clash[0]].source}; file left out"
            )
            continue
        steps.update({s.name: s for s in found})
        included.append(os.fspath(path))
    if not declared_any:
        return legacy_pipeline(errors)
    ordered = _validate_stars(order_steps(list(steps.values()), errors), errors)
    errors[:] = list(dict.fromkeys(errors))
    kept = {s.source.rsplit(":", 1)[0] for s in ordered}
    declaring = {s.source.rsplit(":", 1)[0] for s in steps.values()}
    rules = [f for f in included if f in kept or f not in declaring]  # helpers stay
    return Pipeline(steps=ordered, rule_files=tuple(rules), errors=errors)


@lru_cache(maxsize=1)
def builtin_pipeline() -> Pipeline:
    """The pipeline of a new processing folder (the package's own rule files)."""
    from ..resources import workflow_dir

    rules = Path(os.path.abspath(workflow_dir() / "rules"))
    return build_pipeline(rule_files(workflow_dir()), rules)


def rule_dirs_of(config: dict[str, Any]) -> list[str]:
    return [str(d) for d in (config.get("pipeline") or {}).get("rule_dirs") or []]


def load_pipeline(
    folder: Path, config: dict[str, Any] | None = None, parsed: bool = True
) -> Pipeline:
    """The pipeline of a processing folder (its own ``workflow/`` copy). With ``parsed``,
    rule files that the last Snakemake parse rejected are left out while unchanged."""
    workflow_dir = Path(folder) / "workflow"
    if not (workflow_dir / "rules").is_dir():
        return builtin_pipeline()  # outputs made without a workflow copy (tests, tools)
    files = rule_files(workflow_dir, rule_dirs_of(config or {}))
    pipeline = build_pipeline(files, Path(os.path.abspath(workflow_dir / "rules")))
    return merge_state(pipeline, Path(folder)) if parsed else pipeline


def signature(pipeline: Pipeline) -> list[list[Any]]:
    out = []
    for path in pipeline.rule_files:
        try:
            out.append([path, os.stat(path).st_mtime_ns])
        except OSError:
            out.append([path, 0])
    return out


def merge_state(pipeline: Pipeline, folder: Path) -> Pipeline:
    """Leave out the rule files the last Snakemake parse rejected (syntax or runtime errors
    in the file itself), while those files are unchanged."""
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return pipeline
    if not isinstance(state, dict) or state.get("signature") != signature(pipeline):
        return pipeline
    rejected = {str(r) for r in state.get("rejected", [])}
    if not rejected:
        return pipeline
    return without_files(pipeline, rejected, [str(e) for e in state.get("errors", [])])


def without_files(pipeline: Pipeline, files: set[str], errors: list[str]) -> Pipeline:
    errs = list(dict.fromkeys([*pipeline.errors, *errors]))
    dropped = [s for s in pipeline.steps if s.source.rsplit(":", 1)[0] in files]
    keep = [s for s in pipeline.steps if s not in dropped]
    steps = order_steps(keep, errs)  # a step needing a dropped one goes too
    errs = list(dict.fromkeys(errs))
    return Pipeline(
        steps=steps,
        rule_files=tuple(f for f in pipeline.rule_files if f not in files),
        errors=errs,
        version=pipeline.version,
    )


def write_state(pipeline: Pipeline, folder: Path, rejected: list[str], before: Pipeline) -> None:
    """Record what the Snakemake parse included (read by the worker and ``emotf status``)."""
    state = {
        "signature": signature(before),
        "steps": list(pipeline.names),
        "rejected": rejected,
        "errors": pipeline.errors,
    }
    text = json.dumps(state, indent=1) + "\n"
    path = Path(folder) / STATE
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    try:
        atomic_write_text(path, text)
    except OSError as exc:  # a read-only folder: Snakemake reports the real problem
        log.warning("cannot record the pipeline state in %s: %s", path, exc)


def rules_mark(out_dir: Path, config: dict[str, Any]) -> list[tuple[str, int]]:
    """What decides a folder's pipeline: its rule files and the last parse's record, with
    their mtimes (a change means the pipeline must be loaded again)."""
    paths = [*rule_files(Path(out_dir) / "workflow", rule_dirs_of(config)), Path(out_dir) / STATE]
    mark = []
    for path in paths:
        try:
            mark.append((os.fspath(path), os.stat(path).st_mtime_ns))
        except OSError:
            mark.append((os.fspath(path), 0))
    return mark


def folder_settings(out_dir: Path) -> dict[str, Any]:
    """The folder's config values that decide its pipeline (facility rule folders), read
    without validation ({} if unreadable): readers of a folder must not fail on it."""
    import yaml

    try:
        data = yaml.safe_load((Path(out_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
