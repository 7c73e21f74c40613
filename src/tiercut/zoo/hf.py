"""Hugging Face transformers models from their configs, with random weights (no downloads).

``hf_model("gpt2", n_layer=4)`` or ``hf_model(LlamaConfig(...))`` -> a ZooEntry whose inputs
are ``input_ids`` (int64 in [0, vocab)) and ``attention_mask`` (ones), and whose module is
``HFInputs``: a small wrapper calling the model with keywords (GPT-2's second positional
argument is its cache, not the mask) and ``use_cache=False``. A cache is state carried
between calls, not part of one forward, and neither torch.fx nor torch.export captures one:
without the wrapper a user has to guess that. The output is the model's own ModelOutput.

The model spec ``hf:NAME[,KEY=VALUE...]`` (``hf:gpt2``, ``hf:llama,num_hidden_layers=4``,
``hf:bert,seq_len=32``) names the same from the command line; ``SMALL`` holds the small
default configs. transformers is imported only when one is built (``pip install tiercut[hf]``).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ..errors import UnknownModelError
from .registry import InputSpec, ZooEntry, register_scheme

# Small configs that build in well under a second; overrides are applied on top.
SMALL: dict[str, dict[str, Any]] = {
    "gpt2": dict(n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=1000,
                 bos_token_id=0, eos_token_id=0),
    "llama": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  vocab_size=1000, bos_token_id=0, eos_token_id=0, pad_token_id=0),
    "bert": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                 num_attention_heads=4, max_position_embeddings=128, vocab_size=1000,
                 pad_token_id=0),
}
TASKS = {"base": "AutoModel", "causal-lm": "AutoModelForCausalLM",
         "masked-lm": "AutoModelForMaskedLM",
         "sequence-classification": "AutoModelForSequenceClassification"}
_DECODERS = {"gpt2", "llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gemma2",
             "gpt_neox", "opt", "falcon", "bloom", "gptj", "olmo", "smollm3"}


class HFInputs(nn.Module):
    """Calls a transformers model with ``input_ids`` and ``attention_mask`` by keyword, and
    ``use_cache=False`` where its forward takes one: what one captured forward can hold."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.fixed = {"use_cache": False} if "use_cache" in params else {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **self.fixed)


def wrap(model: nn.Module) -> HFInputs:
    """A transformers model made capturable: ``trace(wrap(model), (input_ids, mask))``."""
    return HFInputs(model)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UnknownModelError("hf: models need transformers: pip install 'tiercut[hf]' "
                                "(or pip install transformers)") from None
    return transformers


def hf_model(config_or_name: Any, task: str | None = None, seq_len: int = 16,
             name: str | None = None, **config_overrides: Any) -> ZooEntry:
    """A ZooEntry building a transformers model from its config, with random weights.

    ``config_or_name``: a transformers config object, or a model type (``"gpt2"``,
    ``"llama"``, ``"bert"``, any ``AutoConfig.for_model`` type), built from ``SMALL`` where
    it has one, with ``config_overrides`` on top. ``task``: one of ``TASKS``; by default
    ``causal-lm`` for decoders (GPT-2, Llama, ...) and ``base`` for the others."""
    tf = _transformers()
    if isinstance(config_or_name, str):
        kind = config_or_name
        try:
            config = tf.AutoConfig.for_model(kind, **{**SMALL.get(kind, {}), **config_overrides})
        except (ValueError, KeyError) as exc:
            raise UnknownModelError(
                f"hf model type {kind!r} is unknown to transformers {tf.__version__} ({exc}); "
                f"small defaults exist for {', '.join(SMALL)}, and any AutoConfig model type "
                "works with its own defaults") from None
    else:
        config = config_or_name
        for key, value in config_overrides.items():
            setattr(config, key, value)
        kind = config.model_type
    task = task or ("causal-lm" if kind in _DECODERS or getattr(config, "is_decoder", False)
                    else "base")
    if task not in TASKS:
        raise UnknownModelError(f"hf task {task!r} is not one of {', '.join(TASKS)}")
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if vocab < 2:
        raise UnknownModelError(f"hf model {kind!r}: its config has no vocab_size; hf_model "
                                "builds text models taking token ids")
    auto = getattr(tf, TASKS[task])

    def build() -> nn.Module:
        return HFInputs(auto.from_config(config))

    inputs = (InputSpec("input_ids", (1, seq_len), torch.int64, vocab),
              InputSpec("attention_mask", (1, seq_len), torch.int64))
    return ZooEntry(name or f"hf:{kind}", build, inputs,
                    f"transformers {type(config).__name__} ({task}), random weights, "
                    f"{seq_len} tokens")


def hf_spec(spec: str) -> ZooEntry:
    """``hf:NAME[,KEY=VALUE...]``: keys are config fields, ``task`` and ``seq_len``."""
    body = spec.removeprefix("hf:")
    kind, *pairs = body.split(",")
    if not kind:
        raise UnknownModelError(f"model spec {spec!r}: give hf:NAME, e.g. hf:gpt2 or "
                                f"hf:llama,num_hidden_layers=4 (small defaults: "
                                f"{', '.join(SMALL)})")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UnknownModelError(f"model spec {spec!r}: {pair!r} is not KEY=VALUE (e.g. "
                                    "n_layer=4, seq_len=32, task=base)")
        options[key] = _value(value)
    task = options.pop("task", None)
    seq_len = options.pop("seq_len", 16)
    if not isinstance(seq_len, int) or seq_len < 1:
        raise UnknownModelError(f"model spec {spec!r}: seq_len must be an integer >= 1")
    return hf_model(kind, task=task, seq_len=seq_len, name=spec, **options)


def _value(text: str) -> Any:
    if text in ("true", "True", "false", "False"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


register_scheme("hf", hf_spec)
