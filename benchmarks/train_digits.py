"""Train the digits CNN (tiercut.zoo.digits) on scikit-learn's digits and ship its weights.

Fixed seed, fixed held-out split (30 % of the 1797 images, never trained on). Adam, full
batches of 128, a few epochs: seconds on one CPU core. Writes
src/tiercut/zoo/weights/digits_cnn.safetensors (or the path given) and prints held-out top-1.

Usage: python benchmarks/train_digits.py [--epochs N] [--out PATH]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from tiercut.zoo.digits import WEIGHTS, DigitsCNN, digits_data


def top1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(x).argmax(dim=1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_train, y_train, x_held, y_held = digits_data()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
    print(f"trained {args.epochs} epochs on {len(y_train)} images in {seconds:.1f} s (1 thread)")
    print(f"train top-1 {top1(model, x_train, y_train):.4f}; held-out top-1 "
          f"{top1(model, x_held, y_held):.4f} on {len(y_held)} images")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
