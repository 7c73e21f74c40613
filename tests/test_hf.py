"""Hugging Face models from their configs, random weights, no downloads (issue 23): GPT-2 and
a Llama (RoPE, grouped-query attention) captured without the user turning the cache off,
BERT with its pooler; each split equals the model bit for bit at every cut, and the output
comes back as the model's own ModelOutput."""
import logging
import re

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiercut.errors import TraceError, UnknownModelError  # noqa: E402
from test_capture import every_cut_equals_whole  # noqa: E402
from tiercut.graph.trace import trace  # noqa: E402
from tiercut.zoo import hf_model, resolve  # noqa: E402
from tiercut.zoo.hf import wrap  # noqa: E402

logging.getLogger("transformers").setLevel(logging.ERROR)


def _every_cut(entry):
    """Every cut's two-stage run equals the model bit for bit, as a ModelOutput of the same
    type with the same keys (test_capture's check); the graph and the model's own output."""
    model, args = entry.build(), entry.example_inputs()
    graph = every_cut_equals_whole(model, args, trace(model, args, name=entry.name))
    with torch.inference_mode():
        return graph, model(*args)


@pytest.mark.parametrize("spec, output, keys", [
    ("hf:gpt2,n_layer=1,seq_len=8", "CausalLMOutputWithCrossAttentions", ["logits"]),
    ("hf:llama,num_hidden_layers=1,seq_len=8", "CausalLMOutputWithPast", ["logits"]),
    ("hf:bert,num_hidden_layers=1,seq_len=8", "BaseModelOutputWithPoolingAndCrossAttentions",
     ["last_hidden_state", "pooler_output"])])
def test_hf_models_split_bit_for_bit_at_every_cut(spec, output, keys):
    entry = resolve(spec)
    assert [s.name for s in entry.inputs] == ["input_ids", "attention_mask"]
    ids = entry.example_inputs()[0]
    assert ids.dtype == torch.int64 and int(ids.max()) < 1000  # the small configs' vocab
    graph, ref = _every_cut(entry)
    assert type(ref).__name__ == output and list(ref.keys()) == keys  # no cache in the output
    assert graph.inputs == ("input_ids", "attention_mask")
    assert graph.dead_removed > 0  # e.g. the causal mask's unused pieces


def test_two_builds_have_the_same_random_weights():
    """Each tier server builds its own copy: the weights must agree without a download."""
    entry = hf_model("gpt2", n_layer=1)
    a, b = entry.build(), entry.build()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                  b.state_dict().values()))


def test_hf_model_takes_a_config_object():
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50,
                                     n_positions=16)
    entry = hf_model(config, seq_len=4)
    assert entry.inputs[0].high == 50 and entry.inputs[0].shape == (1, 4)
    assert entry.name == "hf:gpt2"
    assert type(entry.build().model).__name__ == "GPT2LMHeadModel"
    assert type(hf_model("bert", num_hidden_layers=1).build().model).__name__ == "BertModel"


def test_gpt2_with_its_cache_says_what_to_pass():
    """Before: fx stopped in transformers' kwargs handling and export at DynamicCache, with
    nothing saying that use_cache=False (or a wrapper) is the way."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=16)).eval()
    ids = torch.randint(0, 50, (1, 4))
    with pytest.raises(TraceError, match=re.escape("use_cache=False")) as info:
        trace(model, (ids,))
    assert "tiercut.zoo.hf.wrap" in str(info.value)
    graph = trace(wrap(model), (ids, torch.ones_like(ids)))  # the way it names works
    assert graph.inputs == ("input_ids", "attention_mask")


@pytest.mark.parametrize("spec, fragment", [
    ("hf:", "give hf:NAME"), ("hf:gpt2,n_layer", "'n_layer' is not KEY=VALUE"),
    ("hf:gpt2,seq_len=0", "seq_len must be an integer >= 1"),
    ("hf:no_such_model_type", "unknown to transformers"),
    ("hf:gpt2,task=translate", "hf task 'translate' is not one of")])
def test_a_bad_hf_spec_is_named(spec, fragment):
    with pytest.raises(UnknownModelError, match=re.escape(fragment)):
        resolve(spec)


def test_input_flags_replace_an_hf_models_inputs():
    entry = resolve("hf:gpt2,n_layer=1", inputs=["input_ids:1x5:int64:0-1000",
                                                 "attention_mask:1x5:int64"])
    assert [tuple(t.shape) for t in entry.example_inputs()] == [(1, 5), (1, 5)]
