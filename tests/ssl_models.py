"""Tiny random speech encoders of every family the SSL row takes, saved as the hub would give them.

Each folder holds a model in Hugging Face format (``save_pretrained``) and its feature extractor:
HuBERT as ``facebook/hubert-base-ls960`` (group norm in the first conv layer, so no attention mask;
no waveform normalisation), WavLM as ``microsoft/wavlm-large`` (layer norm, stable layer norm,
attention mask, normalised waveform), data2vec-audio, and Whisper as ``openai/whisper-*``
(``WhisperForConditionalGeneration`` with its log-mel feature extractor; 2 s pieces instead of 30 s
to keep the tests fast). Hidden size 32, 2 layers, a 2-layer conv front end at a 320-sample hop.
"""

from pathlib import Path

import torch

FAMILIES = ("hubert", "wavlm", "data2vec-audio", "whisper")
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
# Two conv layers with XLS-R's 320-sample hop (50 frames/s at 16 kHz), cheap on CPU.
CONV = {"conv_dim": (16, 16), "conv_kernel": (80, 4), "conv_stride": (40, 8), "conv_bias": True}
WHISPER_SECONDS = 2


def build_tiny(family, folder, seed=0):
    """Write a tiny random ``family`` encoder (:data:`FAMILIES`) and its feature extractor to ``folder``."""
    import transformers as tf

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "whisper":
            config = tf.WhisperConfig(
                d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                max_source_positions=WHISPER_SECONDS * 16000 // 160 // 2, max_target_positions=16,
                vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
            )
            model = tf.WhisperForConditionalGeneration(config)
            extractor = tf.WhisperFeatureExtractor(feature_size=80, chunk_length=WHISPER_SECONDS)
        else:
            common = {**SIZES, **CONV, "layerdrop": 0.0, "mask_time_prob": 0.05}
            if family == "hubert":
                config, cls = tf.HubertConfig(**common, feat_extract_norm="group",
                                              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2), tf.HubertModel
                normalize = False
            elif family == "wavlm":
                config, cls = tf.WavLMConfig(**common, feat_extract_norm="layer", do_stable_layer_norm=True,
                                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2), tf.WavLMModel
                normalize = True
            elif family == "data2vec-audio":
                config, cls = tf.Data2VecAudioConfig(**common, num_conv_pos_embeddings=3, conv_pos_kernel_size=5,
                                                     num_conv_pos_embedding_groups=2), tf.Data2VecAudioModel
                normalize = True
            else:
                raise ValueError(f"no tiny {family}; the families are {', '.join(FAMILIES)}")
            model = cls(config)
            extractor = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                    do_normalize=normalize, return_attention_mask=normalize)
        model.save_pretrained(str(folder))
        extractor.save_pretrained(str(folder))
    return folder
