"""Codec speed, size and error: every codec in tiercut.codecs.CODECS on three float32 tensors.

The tensors: a real activation (resnet18's output after layer1, the tensor a device-edge cut
there sends, 1x64x56x56), and 1 KiB and 1 MiB of normal(0, 1) noise shaped like activations
(channels on dim 1, which per-channel codecs use). Per codec: encoded size
over raw size, median encode and decode milliseconds over 50 repeats (after 3 warm-ups), the
max abs error against its documented bound. Then zstd level 1 against level 3 on the
activation, the measurement behind the codecs' choice of level 1.

Usage: python benchmarks/codec_speed.py [REPEATS]
"""
from __future__ import annotations

import platform
import statistics
import sys
import time

import torch
import zstandard

from tiercut import zoo
from tiercut.codecs import CODECS, decode, encode, max_error


def activation() -> torch.Tensor:
    entry = zoo.entry("resnet18")
    model = entry.build()
    with torch.no_grad():
        x = entry.example_inputs()[0]
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1"):
            x = getattr(model, name)(x)
    return x.contiguous()


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    torch.manual_seed(0)
    tensors = {
        "resnet18.layer1 " + "x".join(map(str, (act := activation()).shape)): act,
        "noise 1 KiB 1x16x4x4": torch.randn(1, 16, 4, 4),
        "noise 1 MiB 1x64x64x64": torch.randn(1, 64, 64, 64),
    }
    print(f"# tiercut codecs: {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} repeats")
    head = (f"{'tensor':<28} {'codec':<16} {'ratio':>7} {'enc ms':>8} {'dec ms':>8} "
            f"{'max err':>10} {'bound':>10}  ok")
    print(head)
    print("-" * len(head))
    for label, x in tensors.items():
        for codec in CODECS:
            frame = encode(x, codec)
            enc = median_ms(lambda: encode(x, codec), repeats)
            dec = median_ms(lambda: decode(frame), repeats)
            err = (decode(frame).double() - x.double()).abs().max().item()
            bound = max_error(codec, x)
            ratio = len(frame) / (x.numel() * x.element_size())
            print(f"{label:<28} {codec:<16} {ratio:>7.4f} {enc:>8.3f} {dec:>8.3f} {err:>10.3g} "
                  f"{bound:>10.3g}  {'yes' if err <= bound else 'NO'}")
        print()
    print("zstd level on the activation (encode/decode ms, ratio of the payload)")
    for codec in ("raw", "q8"):
        payload = encode(act, codec)
        for level in (1, 3):
            blob = zstandard.ZstdCompressor(level=level).compress(payload)
            c = median_ms(lambda: zstandard.ZstdCompressor(level=level).compress(payload), repeats)
            d = median_ms(lambda: zstandard.ZstdDecompressor().decompress(blob), repeats)
            print(f"  {codec:<4} level {level}: ratio {len(blob) / len(payload):.4f}, "
                  f"compress {c:.3f} ms, decompress {d:.3f} ms")


if __name__ == "__main__":
    main()
