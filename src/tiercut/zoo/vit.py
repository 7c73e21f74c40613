"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021) at the
Tiny width of DeiT (Touvron et al., "Training data-efficient image transformers", ICML 2021).

The layout and parameter names follow timm's ``vit_tiny_patch16_224`` (pre-norm blocks, class
token, learned position embedding, LayerNorm eps 1e-6, exact GELU), so timm weights would load.
Everything is written so ``torch.fx.symbolic_trace`` sees plain tensor ops: no size queries,
no in-place ops, attention spelled out as matmul/softmax/matmul so each product is counted.
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register


class Attention(nn.Module):
    """Multi-head self-attention; the heads are split by ``unflatten`` so no size is asked."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, N, 3*C) -> (3, B, heads, N, head_dim), as timm lays it out
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1)).softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).flatten(2)  # heads back into channels
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as timm
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, image: int = 224, patch: int = 16, dim: int = 192, depth: int = 12,
                 heads: int = 3, mlp_dim: int = 768, classes: int = 1000) -> None:
        super().__init__()
        tokens = (image // patch) ** 2 + 1  # patches plus the class token
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, tokens, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        # timm's init for the two embeddings; the rest keeps PyTorch's seeded defaults
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 196, dim)
        # expand_as a one-token slice gives the class token a batch dim without a size query
        cls = self.cls_token.expand_as(x[:, :1])
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])  # classify from the class token


@register("vit_tiny", (1, 3, 224, 224), "ViT-Tiny/16 (Dosovitskiy et al. 2021; DeiT-Ti)",
          params=5_717_416, macs=1.26e9)
def vit_tiny() -> nn.Module:
    return VisionTransformer()
