"""Manifests -> SpeechBrain datasets, with only the pipelines a system's encoders need.

Training never reads the corpus tree, only the manifests of ``data_prep`` (DESIGN.md "The manifest
contract"). The label order comes from the corpus' ``topics.txt`` and is shared by every stage
(fixes B8). The audio pipeline exists only when the system has an audio encoder and the text pipeline
only when it has a text encoder (no audio loading in text systems, no text requirement in audio
systems: B7, B14).
"""

import functools
import logging

import numpy as np
import soundfile
import speechbrain as sb
import torch
import torchaudio

from data_prep.manifest import read_topics

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


def label_encoder(data_folder):
    """A CategoricalEncoder with the fixed label order of ``<data_folder>/topics.txt``.

    Arguments
    ---------
    data_folder : str
        A prepared corpus folder.

    Returns
    -------
    speechbrain.dataio.encoder.CategoricalEncoder
    """
    encoder = sb.dataio.encoder.CategoricalEncoder()
    topics = read_topics(data_folder)
    encoder.update_from_iterable(topics)
    encoder.expect_len(len(topics))
    return encoder


@functools.lru_cache(maxsize=16)
def _resampler(orig, new):
    return torchaudio.transforms.Resample(orig, new)


def load_audio(path, sample_rate):
    """Read an audio file as a mono float tensor at ``sample_rate``.

    Files of any rate and channel count are accepted: the LP release mixes device rates, and the
    published recipes declared 22.05 kHz without resampling (B3).

    Arguments
    ---------
    path : str
        wav/flac/ogg file (read with soundfile; torchaudio.load would need FFmpeg).
    sample_rate : int
        Target rate.

    Returns
    -------
    torch.Tensor
        [samples] float32.
    """
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != sample_rate:
        wav = _resampler(rate, sample_rate)(wav.unsqueeze(0)).squeeze(0)
    return wav


def pick_text(row, columns):
    """The first non-empty of the given manifest columns of a row.

    Arguments
    ---------
    row : dict
        A manifest row.
    columns : str
        Column names separated by ``,``; ``words,asr_words`` gives the manual transcript where
        there is one and the ASR hypothesis elsewhere (the semi-supervised text system).

    Returns
    -------
    str
    """
    for column in columns.split(","):
        text = row.get(column.strip(), "") or ""
        if text.strip():
            return text.strip()
    return ""


def read_split(hparams, split):
    """Load one manifest as a DynamicItemDataset, filtered for the system's training subset."""
    csv_path = {"train": hparams["train_csv"], "dev": hparams["dev_csv"], "test": hparams["test_csv"]}
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path[split], replacements={"data_root": hparams["data_folder"]}
    )
    if split == "train" and hparams.get("train_subset", "all") != "all":
        subset = hparams["train_subset"]
        dataset = dataset.filtered_sorted(key_test={"subset": lambda s: s == subset})
    return dataset


def texts_of(datasets, hparams):
    """All texts each split feeds the text encoder, keyed by split (for caching up front)."""
    out = {}
    for split, dataset in datasets.items():
        column = hparams["train_text"] if split == "train" else hparams["eval_text"]
        with dataset.output_keys_as(["words", "asr_words"]):
            rows = [dict(item) for item in dataset]
        out[split] = [pick_text(row, column) for row in rows]
    return out


def precompute_texts(hparams):
    """Fill the text encoder's cache with every text the system will read (main process only)."""
    datasets = {split: read_split(hparams, split) for split in SPLITS}
    texts = sorted({t for split_texts in texts_of(datasets, hparams).values() for t in split_texts})
    hparams["text_encoder"].precompute(texts, tokens=hparams.get("text_tokens", False))


def dataio_prepare(hparams, labels):
    """Create the train/dev/test datasets of a system.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters. Keys read: ``data_folder``, ``{train,dev,test}_csv``,
        ``train_subset``, ``sorting``, ``sample_rate`` (audio systems), ``train_text`` and
        ``eval_text`` (text systems), ``text_encoder`` and ``text_tokens`` (text systems),
        ``tokenizer`` (systems with an ASR decoder).
    labels : CategoricalEncoder
        The fixed label order.

    Returns
    -------
    dict
        ``{"train": ds, "dev": ds, "test": ds}``.
    """
    datasets = {split: read_split(hparams, split) for split in SPLITS}
    keys = ["id", "topic_encoded"]

    @sb.utils.data_pipeline.takes("topic")
    @sb.utils.data_pipeline.provides("topic_encoded")
    def topic_pipeline(topic):
        return torch.LongTensor([labels.encode_label(topic)])

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), topic_pipeline)

    if "audio_encoder" in hparams["modules"]:
        sample_rate = hparams["sample_rate"]

        @sb.utils.data_pipeline.takes("wav")
        @sb.utils.data_pipeline.provides("sig")
        def audio_pipeline(wav):
            return load_audio(wav, sample_rate)

        sb.dataio.dataset.add_dynamic_item(list(datasets.values()), audio_pipeline)
        keys.append("sig")

    if "text_encoder" in hparams:
        keys += _add_text_pipeline(datasets, hparams)

    if "tokenizer" in hparams:
        keys += _add_token_pipeline(datasets, hparams["tokenizer"])

    sb.dataio.dataset.set_output_keys(list(datasets.values()), keys)
    datasets["train"] = _sort(datasets["train"], hparams.get("sorting", "random"))
    return datasets


def _add_text_pipeline(datasets, hparams):
    """Attach cached text-encoder outputs: the frozen encoder runs once per distinct text (B13)."""
    encoder = hparams["text_encoder"]
    tokens = hparams.get("text_tokens", False)
    key = "text_tokens" if tokens else "text_emb"
    for split, texts in texts_of(datasets, hparams).items():
        unique = sorted(set(texts))
        vectors = encoder.embed_tokens(unique) if tokens else list(encoder.embed(unique))
        lookup = dict(zip(unique, vectors))
        column = hparams["train_text"] if split == "train" else hparams["eval_text"]
        empty = sum(1 for t in texts if not t)
        if texts and empty == len(texts):
            raise ValueError(
                f"{split}: no row has text in {column!r}; for asr_words run recipes/transcribe.py "
                "first, or choose another train_text/eval_text"
            )
        if empty:
            logger.warning("%s: %d of %d rows have no text in %r", split, empty, len(texts), column)

        @sb.utils.data_pipeline.takes("words", "asr_words")
        @sb.utils.data_pipeline.provides("text", key)
        def text_pipeline(words, asr_words, lookup=lookup, column=column):
            text = pick_text({"words": words, "asr_words": asr_words}, column)
            yield text
            yield lookup[text]

        datasets[split].add_dynamic_item(text_pipeline)
    return ["text", key]


def _add_token_pipeline(datasets, tokenizer):
    """Attach the transcript's units for an ASR decoder; rows without a transcript are dropped.

    The tokenizer is trained (once, on the main process) on the transcribed training rows. Ids:
    ``tokens_bos`` = [bos] + units, ``tokens_eos`` = units + [eos], ``tokens`` = units (the
    paper's bos = eos = 0, original_recipes.md §3.1).
    """
    sb.utils.distributed.run_on_main(tokenizer.train)
    for split, dataset in datasets.items():
        kept = dataset.filtered_sorted(key_test={"words": lambda words: bool(words.strip())})
        if len(kept) == 0:
            raise ValueError(f"{split}: no row has a manual transcript (words) to train or score the ASR")
        if len(kept) < len(dataset):
            logger.warning("%s: %d of %d rows have no transcript and are left out", split,
                           len(dataset) - len(kept), len(dataset))
        datasets[split] = kept

    @sb.utils.data_pipeline.takes("words")
    @sb.utils.data_pipeline.provides("tokens_bos", "tokens_eos", "tokens")
    def token_pipeline(words):
        units = tokenizer.encode_as_ids(words)
        yield torch.LongTensor([tokenizer.bos_index] + units)
        yield torch.LongTensor(units + [tokenizer.eos_index])
        yield torch.LongTensor(units)

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), token_pipeline)
    return ["words", "tokens_bos", "tokens_eos", "tokens"]


def _sort(dataset, sorting):
    """Order the training set; ``random`` reshuffles every epoch in the dataloader."""
    if sorting == "ascending":
        return dataset.filtered_sorted(sort_key="duration")
    if sorting == "descending":
        return dataset.filtered_sorted(sort_key="duration", reverse=True)
    if sorting != "random":
        raise ValueError(f"sorting must be ascending, descending or random, not {sorting!r}")
    return dataset
