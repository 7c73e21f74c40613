"""The optional lossless stage after the value stage: zstd (level 1), or an lz4 block that
does not store its size (the frame header implies it, and decompression is held to it).
"""
from __future__ import annotations

import lz4.block
import numpy as np
import zstandard

from .spec import CodecError, _bad

_LZ4_MAX = 0x7E000000  # LZ4_MAX_INPUT_SIZE


def _compress(entropy: str, payload: np.ndarray) -> bytes:
    if entropy == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(payload)
    if payload.nbytes > _LZ4_MAX:
        raise CodecError(f"lz4 blocks hold at most {_LZ4_MAX} bytes, this payload has "
                         f"{payload.nbytes}; use zstd for it")
    return lz4.block.compress(payload, store_size=False)


def _decompress(entropy: str, data: memoryview, size: int) -> bytes:
    """Decompress to exactly ``size`` bytes; the size is checked before any output is made."""
    try:
        if entropy == "zstd":
            declared = zstandard.frame_content_size(data)
            if declared != size:
                raise _bad("zstd content size", declared, f"the header implies {size} bytes")
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size,
                                                          allow_extra_data=False)
        else:
            out = lz4.block.decompress(data, uncompressed_size=size)
    except (zstandard.ZstdError, lz4.block.LZ4BlockError) as exc:
        raise _bad(f"{entropy} payload", "corrupt", f"decompression failed: {exc}") from None
    if len(out) != size:
        raise _bad(f"{entropy} payload", f"{len(out)} bytes decompressed", f"expected {size}")
    return out
