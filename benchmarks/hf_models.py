"""Hugging Face transformers models from small configs (random weights, no downloads), as
``package.module:factory`` specs for benchmarks/model_table.py: the architectures whose
inputs are not token ids (images, audio), and encoders the ``hf:`` spec does not build.

Each factory carries its ``inputs`` (name, shape, dtype[, high]), which tiercut reads."""
import torch
import transformers as T

VOCAB = 1000


def vit():
    return T.ViTModel(T.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, image_size=32, patch_size=8))


vit.inputs = [("pixel_values", (1, 3, 32, 32), "float32")]


def segformer():
    return T.SegformerModel(T.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
        num_attention_heads=[1, 2], strides=[4, 2], patch_sizes=[7, 3], mlp_ratios=[2, 2],
        decoder_hidden_size=32))


segformer.inputs = [("pixel_values", (1, 3, 64, 64), "float32")]


def wav2vec2():
    return T.Wav2Vec2Model(T.Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4))


wav2vec2.inputs = [("input_values", (1, 4000), "float32")]


def whisper_encoder():
    cfg = T.WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1,
                          encoder_attention_heads=4, decoder_attention_heads=4,
                          encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=100,
                          num_mel_bins=80, vocab_size=VOCAB, pad_token_id=0, bos_token_id=0,
                          eos_token_id=0, decoder_start_token_id=0)
    return T.WhisperModel(cfg).encoder


whisper_encoder.inputs = [("input_features", (1, 80, 200), "float32")]


def t5_encoder():
    return T.T5EncoderModel(T.T5Config(d_model=64, num_layers=2, num_heads=4, d_ff=128,
                                       d_kv=16, vocab_size=VOCAB))


t5_encoder.inputs = [("input_ids", (1, 16), "int64", VOCAB)]


def distilbert():
    return T.DistilBertModel(T.DistilBertConfig(n_layers=2, dim=64, hidden_dim=128, n_heads=4,
                                                vocab_size=VOCAB, pad_token_id=0))


distilbert.inputs = [("input_ids", (1, 16), "int64", VOCAB)]

assert torch  # the factories build torch modules
