"""``cryolo_predict.py`` (crYOLO ≥ 1.8) stand-in: its options, checks and output folders.

Options as documented by crYOLO's ``cryolo_predict.py -h`` (argparse: an unknown option or a
missing required one exits with code 2). The configuration must be crYOLO JSON with a
``model`` section, the weights file must exist, the input must be an existing folder. For every
micrograph (``.mrc``/``.tif``/``.tiff``/``.jpg``/``.png``) in ``-i`` it writes, under ``-o``:

* ``CBOX/<mic>.cbox`` every box with its confidence (STAR syntax, ``data_global`` +
  ``data_cryolo`` loop, lower-left corner), also those below the threshold;
* ``STAR/<mic>.star`` box centres with confidence ≥ ``-t``;
* ``EMAN/<mic>.box`` ``x y w h`` (lower-left corner, tab-separated), confidence ≥ ``-t``;
* ``DISTR/confidence_distribution_summary_<time>.txt`` (``Metric,Value`` lines).

Boxes are fixture values from ``$FAKE_CRYOLO_BOXES`` (``x:y:confidence`` items separated by
commas; default three boxes of confidence 0.9, 0.5 and 0.1). With no box at all it ends as
crYOLO can when nothing was picked: ``IndexError: list index out of range``, exit code 1,
no pick file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

IMAGE_EXTS = (".mrc", ".tif", ".tiff", ".jpg", ".png")
CBOX_COLUMNS = ("CoordinateX CoordinateY CoordinateZ Width Height Depth EstWidth EstHeight "
                "Confidence NumBoxes Angle").split()  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cryolo_predict.py")
    p.add_argument("-c", "--conf", required=True)
    p.add_argument("-w", "--weights", required=True)
    p.add_argument("-i", "--input", required=True, nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-t", "--threshold", type=float, default=0.3)
    p.add_argument("-g", "--gpu", type=int, nargs="+")
    p.add_argument("-d", "--distance", type=int)
    p.add_argument("--minsize", type=int)
    p.add_argument("--maxsize", type=int)
    p.add_argument("-pbs", "--prediction_batch_size", type=int)
    p.add_argument("--gpu_fraction", type=float)
    p.add_argument("-nc", "--num_cpu", type=int)
    p.add_argument("--norm_margin", type=float)
    p.add_argument("--otf", action="store_true")
    p.add_argument("--cleanup", action="store_true")
    p.add_argument("--monitor", action="store_true")
    p.add_argument("--skip", action="store_true")
    return p


def boxes() -> list[tuple[float, float, float]]:
    spec = os.environ.get("FAKE_CRYOLO_BOXES", "10:20:0.9,60:20:0.5,110:20:0.1")
    return [tuple(float(v) for v in item.split(":")) for item in spec.split(",") if item]  # type: ignore[misc]


def check(args: argparse.Namespace) -> int:
    """crYOLO's own refusals (exit code 1 with a message), 0 when it would run."""
    try:
        config = json.loads(Path(args.conf).read_text())
    except (OSError, ValueError) as exc:
        print(f"Cannot read configuration {args.conf}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(config, dict) or "architecture" not in config.get("model", {}):
        print(f"{args.conf}: no model/architecture section", file=sys.stderr)
        return 1
    missing = [p for p in (args.weights, *args.input) if not os.path.exists(p)]
    if missing:
        print(f"Path does not exist: {missing[0]}", file=sys.stderr)
        return 1
    return 0


def write(out: Path, stem: str, picks: list[tuple[float, float, float]], size: float,
          threshold: float) -> None:  # fmt: skip
    for sub in ("CBOX", "STAR", "EMAN", "DISTR"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    lines = ["", "data_global", "", "_cbox_format_version 1.0", "", "data_cryolo", "", "loop_"]
    lines += [f"_{c} #{i}" for i, c in enumerate(CBOX_COLUMNS, start=1)]
    lines += [f"{x} {y} <NA> {size} {size} <NA> {size - 2} {size - 2} {c} <NA> <NA>"
              for x, y, c in picks]  # fmt: skip
    (out / "CBOX" / f"{stem}.cbox").write_text("\n".join(lines) + "\n")
    kept = [(x, y, c) for x, y, c in picks if c >= threshold]
    star = ["", "data_", "", "loop_", "_rlnCoordinateX #1", "_rlnCoordinateY #2"]
    star += [f"{x + size / 2:.1f} {y + size / 2:.1f}" for x, y, _ in kept]
    (out / "STAR" / f"{stem}.star").write_text("\n".join(star) + "\n")
    box = [f"{x:.0f}\t{y:.0f}\t{size:.0f}\t{size:.0f}" for x, y, _ in kept]
    (out / "EMAN" / f"{stem}.box").write_text("".join(f"{line}\n" for line in box))


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)  # exits 2 on an unknown or missing option
    code = check(args)
    if code:
        return code
    mics = sorted(p for folder in args.input for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_EXTS)  # fmt: skip
    if not mics:
        print(f"No images found in {' '.join(args.input)}", file=sys.stderr)
        return 1
    picks = boxes()
    if not picks:
        print("Traceback (most recent call last):\n  ...\nIndexError: list index out of range",
              file=sys.stderr)  # fmt: skip
        return 1
    out = Path(args.output)
    size = float(json.loads(Path(args.conf).read_text())["model"].get("anchors", [40])[0])
    for mic in mics:
        write(out, mic.stem, picks, size, args.threshold)
    confidences = sorted(c for _, _, c in picks)
    summary = out / "DISTR" / "confidence_distribution_summary_20250302-101140.txt"
    summary.write_text(f"Metric,Value\nMEAN,{sum(confidences) / len(confidences):.3f}\n"
                       f"Q50,{confidences[len(confidences) // 2]:.3f}\n")  # fmt: skip
    print(f"{len(picks) * len(mics)} particles in total has been found")
    return 0
