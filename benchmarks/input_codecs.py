"""Input codec realism: what the zoo's image input (1x3x224x224) costs on the first hop as a
device really has it, measured on real photos (scikit-image's bundled samples, scaled and
cropped to 224x224, as 8-bit pixels / 255).

Per codec: frame bytes (mean over the photos), encode and decode milliseconds (the median over
photos of each photo's median over repeats) and the max and mean abs error in units of the range
0..1. Then the JPEG libraries compared on the same photos at quality 75 and 90 (4:2:0 chroma, as
cameras write): Pillow, simplejpeg, and PyTurboJPEG where the system's libturbojpeg is installed.

    pip install -e '.[photos]'       # scikit-image, for the photos
    python benchmarks/input_codecs.py [--repeat 50]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from tiercut.codecs import decode, encode

sys.path.insert(0, str(Path(__file__).parent))
from codec_speed import median_ms  # noqa: E402  (the same timing as the tensor codecs')

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
CODECS = ("raw", "u8", "u8+zstd", "jpeg75", "jpeg90", "webp75", "webp80", "png")


def photos() -> dict[str, np.ndarray]:
    from tiercut.zoo.photos import PhotosError, photo

    try:
        return {name: photo(name) for name in PHOTOS}
    except PhotosError as exc:
        raise SystemExit(str(exc)) from None


def codec_rows(images: dict[str, np.ndarray], repeat: int) -> list[tuple]:
    rows = []
    for codec in CODECS:
        sizes, enc, dec, worst, mean = [], [], [], [], []
        for hwc in images.values():
            x = torch.from_numpy(hwc).permute(2, 0, 1)[None].float() / 255
            frame = encode(x, codec)
            y = decode(frame)
            err = (y - x).abs()
            sizes.append(len(frame))
            worst.append(float(err.max()))
            mean.append(float(err.mean()))
            enc.append(median_ms(lambda: encode(x, codec), repeat))
            dec.append(median_ms(lambda: decode(frame), repeat))
        rows.append((codec, statistics.mean(sizes), statistics.median(enc),
                     statistics.median(dec), max(worst), statistics.mean(mean)))
    return rows


def jpeg_libraries() -> dict[str, tuple]:
    """name -> (encode(hwc, q) -> bytes, decode(bytes) -> hwc), or a str saying why not."""
    import simplejpeg
    from PIL import Image

    def pil_encode(hwc, q):
        buf = io.BytesIO()
        Image.fromarray(hwc).save(buf, "JPEG", quality=q, subsampling="4:2:0")
        return buf.getvalue()

    libs: dict[str, tuple | str] = {
        "Pillow": (pil_encode, lambda b: np.asarray(Image.open(io.BytesIO(b)))),
        "simplejpeg": (lambda hwc, q: simplejpeg.encode_jpeg(hwc, quality=q, colorspace="RGB",
                                                             colorsubsampling="420"),
                       simplejpeg.decode_jpeg)}
    try:
        from turbojpeg import TJPF_RGB, TJSAMP_420, TurboJPEG

        tj = TurboJPEG()
        libs["PyTurboJPEG"] = (lambda hwc, q: tj.encode(hwc, quality=q, pixel_format=TJPF_RGB,
                                                        jpeg_subsample=TJSAMP_420),
                               lambda b: tj.decode(b, pixel_format=TJPF_RGB))
    except ImportError:
        libs["PyTurboJPEG"] = "not installed (pip install PyTurboJPEG)"
    except (OSError, RuntimeError) as exc:  # no system libturbojpeg, or the wrong version
        libs["PyTurboJPEG"] = f"unusable: {str(exc).splitlines()[0]}"
    return libs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = photos()
    print(f"{len(images)} photos ({', '.join(images)}), 1x3x224x224, values k/255; "
          f"fp32 raw is {3 * 224 * 224 * 4} B, uint8 pixels {3 * 224 * 224} B; "
          f"medians of {args.repeat} per photo, one thread")
    print(f"{'codec':<9} {'bytes':>8} {'vs fp32':>8} {'enc ms':>7} {'dec ms':>7} "
          f"{'max err':>8} {'mean err':>9}")
    raw = None
    for codec, size, enc, dec, worst, mean in codec_rows(images, args.repeat):
        raw = raw or size
        print(f"{codec:<9} {size:>8.0f} {size / raw:>8.3f} {enc:>7.3f} {dec:>7.3f} "
              f"{worst:>8.4f} {mean:>9.5f}")
    print("\nJPEG libraries, 224x224x3 uint8, 4:2:0 (bytes: mean; ms: median over photos)")
    print(f"{'library':<12} {'q':>3} {'bytes':>7} {'enc ms':>7} {'dec ms':>7}")
    for name, lib in jpeg_libraries().items():
        if isinstance(lib, str):
            print(f"{name:<12} {lib}")
            continue
        enc_fn, dec_fn = lib
        for q in (75, 90):
            files = {k: enc_fn(v, q) for k, v in images.items()}
            enc = [median_ms(lambda v=v: enc_fn(v, q), args.repeat) for v in images.values()]
            dec = [median_ms(lambda f=f: dec_fn(f), args.repeat) for f in files.values()]
            size = statistics.mean(map(len, files.values()))
            print(f"{name:<12} {q:>3} {size:>7.0f} {statistics.median(enc):>7.3f} "
                  f"{statistics.median(dec):>7.3f}")


if __name__ == "__main__":
    main()
