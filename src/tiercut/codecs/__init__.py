"""How a tensor crosses a link (``codec``: encode, decode, max_error; one frame per tensor) and
the codec tables calibrated on real data per cut (``calibrate``).

Imports only ``tiercut.errors``, and in ``calibrate`` also ``tiercut.graph`` and
``tiercut.measure``; never the planner or the runtime, which build on it.
The parts of a frame: the codec names (``spec``), the header and ``Limits`` (``frame``), the
value stages' arithmetic (``quant``), the model's input as pixels and image files (``image``)
and the lossless stage (``entropy``).
"""
from .codec import decode, encode, max_error
from .frame import DEFAULT_LIMITS, Limits
from .spec import CODECS, IMAGE_CODECS, CodecError, CodecSpec, parse_codec

__all__ = ["CODECS", "DEFAULT_LIMITS", "IMAGE_CODECS", "CodecError", "CodecSpec", "Limits",
           "decode", "encode", "max_error", "parse_codec"]
