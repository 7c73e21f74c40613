"""``tiercut calibrate``: measure codecs at candidate cuts on held-out data -> codec table JSON.

Datasets (``--data``): ``digits`` (the held-out split of scikit-learn's digits, with labels),
``sentences`` (the sentences shipped in tiercut/data, tokenised for MiniLM, no labels),
``photos`` (scikit-image's real photos as 8-bit frames at the model's input size, no labels: the
zoo's image models have random weights, so the metric is the cosine to the whole model's
output), or a
``.npz`` / ``.pt`` file holding ``inputs`` (one array, or ``inputs_0``, ``inputs_1``... for
several model inputs) and optionally ``labels``, batch first. ``.pt`` files are read with
``weights_only=True``; ``.npz`` without pickles.

Also here for the plan command: ``plan_with_table`` (``--codecs codecs.json --max-loss E``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import typer

from ..codecs.calibrate import CalibrationError, CodecTable, METRICS, calibrate
from ..errors import TiercutError

SENTENCES = Path(__file__).parents[1] / "data" / "sentences.txt"


def sentences() -> list[str]:
    return [s.strip() for s in SENTENCES.read_text().splitlines() if s.strip()]


def tokenize(texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM token ids and attention mask (len(texts), max_length), padded and truncated."""
    from ..zoo.minilm import tokenize as minilm_tokenize

    try:
        return minilm_tokenize(texts, max_length)
    except ImportError as exc:
        raise CalibrationError(f"the sentences dataset needs the MiniLM tokenizer: {exc}") from None


def load_dataset(spec: str, entry, samples: int | None = None  # noqa: ANN001
                 ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """(inputs, labels or None) for zoo ``entry``; CalibrationError names a mismatch."""
    if spec == "digits":
        from ..zoo.digits import digits_data

        _, _, x, y = digits_data()
        inputs, labels = (x,), y
    elif spec == "photos":
        inputs, labels = _photos(entry)
    elif spec == "sentences":
        first = entry.inputs[0]
        seq = first.shape[1] if len(first.shape) == 2 and not first.dtype.is_floating_point else 128
        inputs, labels = tokenize(sentences(), seq), None
    else:
        inputs, labels = _from_file(Path(spec))
    check_fits(inputs, entry, spec)
    if samples is not None:
        inputs = tuple(t[:samples] for t in inputs)
        labels = labels[:samples] if labels is not None else None
    return inputs, labels


def _photos(entry) -> tuple[tuple[torch.Tensor, ...], None]:  # noqa: ANN001
    from ..zoo.photos import PhotosError, photo_frames

    first = entry.inputs[0]
    if len(entry.inputs) != 1 or len(first.shape) != 4 or first.shape[1] != 3 \
            or not first.dtype.is_floating_point:
        raise CalibrationError(f"the photos dataset gives (N, 3, H, W) frames; model "
                               f"{entry.name!r} takes {[tuple(s.shape) for s in entry.inputs]}")
    try:
        frames = photo_frames(first.shape[2], first.shape[3]).to(first.dtype)
    except PhotosError as exc:
        raise CalibrationError(str(exc)) from None
    return (frames,), None


def _from_file(path: Path) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    if not path.is_file():
        raise CalibrationError(f"dataset {str(path)!r} is neither a built-in (digits, sentences) "
                               "nor an existing .npz/.pt file")
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            data = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    elif path.suffix in (".pt", ".pth"):
        data = torch.load(path, weights_only=True)
        if not isinstance(data, dict):
            raise CalibrationError(f"{path}: expected a dict with 'inputs' and 'labels'")
    else:
        raise CalibrationError(f"{path}: a dataset file is .npz or .pt")
    if "inputs" in data:
        raw = data["inputs"]
        inputs = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
    else:
        inputs = tuple(data[k] for k in sorted(k for k in data if k.startswith("inputs_")))
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise CalibrationError(f"{path}: no 'inputs' tensor (or inputs_0, inputs_1, ...); "
                               f"keys are {sorted(data)}")
    labels = data.get("labels")
    return inputs, labels


def check_fits(inputs: Sequence[torch.Tensor], entry, source: str) -> None:  # noqa: ANN001
    """The dataset's inputs, batch first, must match the model's inputs beyond the batch."""
    want = entry.inputs
    got = ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in inputs)
    need = ", ".join(f"{s.name} (N, {', '.join(map(str, s.shape[1:]))}) "
                     f"{str(s.dtype).removeprefix('torch.')}" for s in want)
    bad = len(inputs) != len(want) or any(
        tuple(t.shape[1:]) != tuple(s.shape[1:]) or t.is_floating_point() != s.dtype.is_floating_point
        for t, s in zip(inputs, want))
    if bad:
        raise CalibrationError(f"dataset {source!r} gives inputs {got} but model {entry.name!r} "
                               f"takes {need}; give a dataset shaped for this model")
    if len({len(t) for t in inputs}) != 1:
        raise CalibrationError(f"dataset {source!r}: inputs have different batch sizes ({got})")


def calibrate_cmd(
    model: str = typer.Option(..., "--model", help="zoo model, e.g. digits_cnn or minilm_l6"),
    data: str = typer.Option(..., "--data", help="digits, sentences, photos, or a .npz/.pt "
                             "file"),
    cuts: str = typer.Option("all", "--cuts", help="all; N evenly spaced cut positions (the "
                             "input among them); or positions P1,P2,... (0 or 'input': the "
                             "model's input as the cut)"),
    codec_list: str = typer.Option("fp16,q8,q6,q4,q2", "--codecs",
                                   help="comma-separated codecs, e.g. fp16,q8,q4+lz4,q2+zstd"),
    metric: Optional[str] = typer.Option(None, "--metric",
                                         help="top1 or cosine (default: top1 with labels)"),
    output: Path = typer.Option(..., "-o", "--output", help="codec table JSON to write"),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, help="use the first N"),
    threads: int = typer.Option(1, "--threads", min=1, help="intra-op threads"),
) -> None:
    """Measure each codec at candidate cuts on held-out data: size, seconds, metric loss."""
    from rich.console import Console

    from ..graph.trace import trace
    from ..zoo import resolve

    console = Console()
    try:
        torch.set_num_threads(threads)
        entry = resolve(model)
        n_cuts, positions = _cuts(cuts)
        inputs, labels = load_dataset(data, entry, samples)
        chosen = metric or ("top1" if labels is not None else "cosine")
        if chosen not in METRICS:
            raise CalibrationError(f"metric {chosen!r} is not one of {', '.join(METRICS)}")
        module = entry.build()
        graph = trace(module, entry.example_inputs(), name=model)
        table = calibrate(graph, inputs, labels, chosen, [c.strip() for c in codec_list.split(",")
                                                          if c.strip()], n_cuts, model,
                          log=lambda m: console.print(m, highlight=False), positions=positions)
    except TiercutError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2)
    table.save(output)
    console.print(f"{len(table.cuts)} cuts x {len(table.cuts[0].codecs) if table.cuts else 0} "
                  f"codecs on {table.samples} samples; baseline {chosen} {table.baseline:.4f}; "
                  f"wrote {output}")


def _cuts(text: str) -> tuple[str | int, list[int] | None]:
    """--cuts: ("all", None), (N, None), or ("all", [positions]) for 'input' or 'P1,P2,...'."""
    text = text.strip()
    if text == "all":
        return "all", None
    if "," not in text and text != "input":
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is not None and n >= 1:
            return n, None
        raise CalibrationError(f"--cuts {text!r}: give 'all', a number N >= 1 of evenly spaced "
                               "cuts, or positions such as input,5,9 (0 is the input)")
    positions = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            positions.append(0 if part == "input" else int(part))
        except ValueError:
            raise CalibrationError(f"--cuts {text!r}: {part!r} is not a position; give "
                                   "positions such as input,5,9 (0 is the input)") from None
    return "all", positions


def plan_with_table(scenario, codecs_path: Path, max_loss: float,  # noqa: ANN001
                    objective: str = "latency", constraints=None, method: str = "auto",  # noqa: ANN001
                    z: float = 0.0):
    """For ``tiercut plan --codecs codecs.json --max-loss E``: the joint cut and codec. ``z``:
    a codec is admitted when its calibrated loss plus ``z`` standard errors is within E."""
    from ..planner import Constraints
    from ..planner.compress import plan_with_codecs

    return plan_with_codecs(scenario, CodecTable.load(codecs_path), max_loss, objective,
                            constraints or Constraints(), method, z=z)
