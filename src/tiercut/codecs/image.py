"""The model's input as a device has it: values on a fixed range [lo, hi] as 8-bit pixels
(``u8``), and (N, C, H, W) pixels as image files (``jpeg``, ``webp``, ``png``) decoded on the
receiving tier.

The range is fixed by the codec's name, not taken from the data as ``q8`` does: a frame from
an 8-bit camera (k / 255 for k = 0..255, or k itself with ``@0:255``) decodes bit for bit to
what the device held, whatever the image's own minimum and maximum. JPEG goes through
simplejpeg (libjpeg-turbo), the fastest of Pillow, simplejpeg and PyTurboJPEG here
(benchmarks/input_codecs.py), WebP and PNG through Pillow. A file payload is N uint32 lengths,
then the N files; each file's own header is checked against the frame's shape before its
pixels are decoded, so a file cannot make the receiver allocate more than the frame declared.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import simplejpeg
import torch

from .spec import CHANNELS, CodecError, _bad

_PNG_LEVEL = 3  # zlib level: 6 (Pillow's default) took twice as long here for 5% fewer bytes
_MAX_SIDE = {"jpeg": 65500, "webp": 16383, "png": 1 << 31}  # what each format can hold
_PIL_FORMAT = {"webp": "WEBP", "png": "PNG"}
_PIL_MODE = {1: "L", 3: "RGB", 4: "RGBA"}


def check_shape(kind: str, shape: tuple[int, ...]) -> None:
    """An image file holds (N, C, H, W) pixels with C in CHANNELS[kind]: CodecError otherwise."""
    accepted = CHANNELS[kind]
    if len(shape) != 4 or shape[1] not in accepted:
        raise CodecError(f"{kind} takes (N, C, H, W) images with C in "
                         f"{', '.join(map(str, accepted))}; got shape {tuple(shape)} (send other "
                         f"tensors with a codec such as raw, u8 or q8)")
    if max(shape[2:]) > _MAX_SIDE[kind]:
        raise CodecError(f"{kind} holds images of at most {_MAX_SIDE[kind]} pixels a side; got "
                         f"shape {tuple(shape)}")


# ---- values <-> pixels -------------------------------------------------------------------
def to_pixels(x: torch.Tensor, kind: str, lo: float, hi: float) -> np.ndarray:
    """The codes round((x - lo) * 255 / (hi - lo)) as uint8, x's shape; every x in [lo, hi]."""
    if x.dtype == torch.uint8:
        return x.numpy()
    mn, mx = (float(v) for v in torch.aminmax(x))
    if not (lo <= mn and mx <= hi):  # nan fails both
        _out_of_range(x, kind, lo, hi)
    # numpy: a third of torch's time for these four passes over a 224x224 image here
    work = np.float64 if x.dtype == torch.float64 else np.float32
    xn = x.numpy() if x.dtype in (torch.float32, torch.float64) else x.float().numpy()
    t = np.subtract(xn, work(lo), dtype=work)  # a new array: the caller's is never written
    t *= work(255.0 / (hi - lo))
    np.rint(t, out=t)  # half to even, as torch.round
    np.clip(t, 0, 255, out=t)
    return t.astype(np.uint8)


def _out_of_range(x: torch.Tensor, kind: str, lo: float, hi: float) -> None:
    nan = int(torch.isnan(x).sum())
    finite = x[~torch.isnan(x)].double()
    outside = int(((finite < lo) | (finite > hi)).sum())
    seen = f"min {float(finite.min()):g}, max {float(finite.max()):g}" if finite.numel() else ""
    suggest = (f"; name a range that holds them, e.g. {kind}@{np.floor(float(finite.min())):g}:"
               f"{np.ceil(float(finite.max())):g}, or use a quant codec" if finite.numel() else "")
    raise CodecError(f"{kind} takes values within its range {lo:g}..{hi:g}: the tensor has "
                     f"{outside} value(s) outside ({seen}){f' and {nan} nan' if nan else ''}"
                     f"{suggest}")


def from_pixels(codes: np.ndarray, dtype: torch.dtype, lo: float, hi: float) -> torch.Tensor:
    """code * (hi - lo) / 255 + lo in the original dtype: for the range 0..1 exactly what
    ``pixels.float() / 255`` gives, and for 0..255 the integers themselves."""
    if dtype == torch.uint8:
        return torch.from_numpy(np.ascontiguousarray(codes))
    work = torch.float64 if dtype == torch.float64 else torch.float32
    y = torch.from_numpy(np.ascontiguousarray(codes, np.float64 if dtype == torch.float64
                                              else np.float32))  # the one copy, writable
    y.mul_(hi - lo).div_(255).add_(lo)
    return y if dtype == work else y.to(dtype)


def pixel_bound(kind: str, dtype: torch.dtype, lo: float, hi: float, rel: float,
                absolute: float) -> float:
    """max |decoded - x| for x in [lo, hi]: half a step for u8 and png, plus floating point (a
    few float32 roundings, and ``rel``/``absolute`` of the final cast); the whole range for
    jpeg and webp, whose error per pixel no format bounds (docs/codecs.md gives measured ones)."""
    if dtype == torch.uint8:
        return 0.0 if kind == "png" else 255.0
    span, big = hi - lo, max(abs(lo), abs(hi))
    base = span / 510 if kind in ("u8", "png") else span
    return base + (2.0**-20 + rel) * big + absolute


# ---- pixels <-> files --------------------------------------------------------------------
def encode_files(kind: str, quality: int, pixels: np.ndarray) -> bytes:
    """(N, C, H, W) uint8 -> N uint32 lengths, then the N files."""
    files = [_encode_one(kind, quality, np.ascontiguousarray(img.transpose(1, 2, 0)))
             for img in pixels]
    return b"".join([struct.pack(f"<{len(files)}I", *map(len, files)), *files])


def _encode_one(kind: str, quality: int, hwc: np.ndarray) -> bytes:
    if kind == "jpeg":
        gray = hwc.shape[2] == 1
        return simplejpeg.encode_jpeg(hwc, quality=quality, colorspace="GRAY" if gray else "RGB",
                                      colorsubsampling="Gray" if gray else "420")
    from PIL import Image

    c = hwc.shape[2]
    buf = io.BytesIO()
    image = Image.fromarray(hwc[:, :, 0] if c == 1 else hwc, _PIL_MODE[c])
    if kind == "webp":
        image.save(buf, "WEBP", quality=quality)
    else:
        image.save(buf, "PNG", compress_level=_PNG_LEVEL)
    return buf.getvalue()


def decode_files(kind: str, data: memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """The (N, C, H, W) uint8 pixels of a file payload, each file checked against ``shape``."""
    n, c, h, w = shape
    if data.nbytes < 4 * n:
        raise _bad(f"{kind} payload", f"{data.nbytes} bytes",
                   f"{n} image(s) need at least {4 * n} bytes of lengths")
    lengths = struct.unpack_from(f"<{n}I", data)
    if sum(lengths) != data.nbytes - 4 * n:
        raise _bad(f"{kind} file lengths", f"{sum(lengths)} bytes in all",
                   f"the payload holds {data.nbytes - 4 * n} bytes after the lengths")
    out = np.empty((n, h, w, c), np.uint8)
    at = 4 * n
    for i, length in enumerate(lengths):
        file = data[at:at + length]
        at += length
        try:
            if kind == "jpeg":
                _decode_jpeg(file, out[i], i)
            else:
                _decode_pil(kind, file, out[i], i)
        except CodecError:
            raise
        except Exception as exc:  # a decoder's own error on hostile bytes, whatever its class
            raise _bad(f"{kind} image {i}", "corrupt",
                       f"{type(exc).__name__}: {exc}") from None
    return out.transpose(0, 3, 1, 2)


def _check_size(kind: str, i: int, got: tuple[int, int], want: tuple[int, int]) -> None:
    if got != want:
        raise CodecError(f"codec frame: {kind} image {i} is {got[0]}x{got[1]} pixels (WxH) but "
                         f"the header's shape says {want[0]}x{want[1]}")


def _decode_jpeg(file: memoryview, out: np.ndarray, i: int) -> None:
    h, w, colorspace, _ = simplejpeg.decode_jpeg_header(file)
    _check_size("jpeg", i, (w, h), (out.shape[1], out.shape[0]))
    gray = out.shape[2] == 1
    if (colorspace == "Gray") != gray:
        raise CodecError(f"codec frame: jpeg image {i} is {colorspace} but the header's shape "
                         f"has {out.shape[2]} channel(s)")
    simplejpeg.decode_jpeg(file, colorspace="GRAY" if gray else "RGB", buffer=out, strict=True)


def _decode_pil(kind: str, file: memoryview, out: np.ndarray, i: int) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(file), formats=[_PIL_FORMAT[kind]])  # reads the header only
    _check_size(kind, i, image.size, (out.shape[1], out.shape[0]))
    c = out.shape[2]
    # libwebp has no grayscale: a 1-channel image comes back as RGB
    accepted = {"RGB"} if kind == "webp" and c == 1 else {_PIL_MODE[c]}
    if image.mode not in accepted:
        raise CodecError(f"codec frame: {kind} image {i} has mode {image.mode}; the header's "
                         f"shape has {c} channel(s) ({' or '.join(sorted(accepted))})")
    image.load()
    if image.mode != _PIL_MODE[c]:
        image = image.convert(_PIL_MODE[c])
    out[...] = np.asarray(image).reshape(out.shape)
