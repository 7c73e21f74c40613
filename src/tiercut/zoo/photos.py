"""Real photos as a camera hands them over: the photographs bundled with scikit-image, scaled
and cropped to a model's input size, as 8-bit pixels (a float frame of k / 255, which the
``u8`` input codec carries bit for bit).

They are what the image models are calibrated on (``tiercut calibrate --data photos``) and what
``benchmarks/input_codecs.py`` measures the input codecs on. Grey photos are repeated on three
channels. Each photo gives ``crops`` frames: its centre at the input size, then corners of the
photo scaled 1.6 times larger, so that neighbouring frames differ as a moving camera's do.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import TiercutError

COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina")
GREY = ("camera", "moon", "coins", "clock", "brick", "grass", "gravel", "cell", "page", "text")
_CORNERS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))


class PhotosError(TiercutError, ValueError):
    """The photos cannot be given: scikit-image is missing, or the size asked is unusable."""


def _library():
    try:
        from skimage import data, transform
    except ImportError:
        raise PhotosError("the photos come with scikit-image: pip install -e '.[photos]' (or "
                          "pip install scikit-image)") from None
    return data, transform


def _scaled(img: np.ndarray, side: int, transform) -> np.ndarray:  # noqa: ANN001
    """The photo with its shorter side at ``side`` pixels, float in 0..1."""
    h, w = img.shape[:2]
    scale = side / min(h, w)
    return transform.resize(img, (max(side, round(h * scale)), max(side, round(w * scale))),
                            anti_aliasing=True)


def _crop(small: np.ndarray, height: int, width: int, at: tuple[float, float]) -> np.ndarray:
    top = round((small.shape[0] - height) * at[0])
    left = round((small.shape[1] - width) * at[1])
    return np.round(small[top:top + height, left:left + width] * 255).astype(np.uint8)


def photo(name: str, height: int = 224, width: int = 224) -> np.ndarray:
    """One photo's centre, (height, width, 3) uint8."""
    data, transform = _library()
    if name not in COLOUR + GREY:
        raise PhotosError(f"unknown photo {name!r}; the photos are {', '.join(COLOUR + GREY)}")
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return _crop(_scaled(img, max(height, width), transform), height, width, (0.5, 0.5))


def photo_frames(height: int = 224, width: int = 224, crops: int = 5,
                 names: tuple[str, ...] = COLOUR + GREY) -> torch.Tensor:
    """(len(names) * crops, 3, height, width) float32 frames of k / 255, photo by photo."""
    for label, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 4096:
            raise PhotosError(f"photo {label} {v!r}: accepted a whole number of pixels, 8..4096")
    if isinstance(crops, bool) or not isinstance(crops, int) or not 1 <= crops <= 5:
        raise PhotosError(f"crops {crops!r}: accepted 1..5 (the centre, then four corners)")
    data, transform = _library()
    frames = []
    for name in names:
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        side = max(height, width)
        frames.append(_crop(_scaled(img, side, transform), height, width, (0.5, 0.5)))
        if crops > 1:
            big = _scaled(img, round(side * 1.6), transform)
            frames += [_crop(big, height, width, at) for at in _CORNERS[:crops - 1]]
    pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    return pixels.float() / 255
