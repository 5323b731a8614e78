"""Manifests -> SpeechBrain datasets, with only the pipelines a system's encoders need.

Training never reads the corpus tree, only the manifests of ``data_prep`` (their columns:
:mod:`data_prep.manifest`). The label order comes from the corpus' ``topics.txt`` and is shared by
every stage, so a classifier a later stage inherits keeps its rows' topics. The audio pipeline
exists only when the system has an audio encoder and the text pipeline only when it has a text
encoder (no audio loading in text systems, no text requirement in audio systems).
"""

import collections
import functools
import logging
import multiprocessing
import random
from pathlib import Path

import numpy as np
import soundfile
import speechbrain as sb
import torch

from corpus_tools.audio import resampler
from data_prep.prepared import read_topics
from topic_id.config.checks import text_columns
from topic_id.training.aligned_rows import LONG_TRAINING, segment_long_rows, segment_of
from topic_id.errors import ConfigError
from topic_id.models.ssl_features import feature_cache_of

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


def load_audio(path, sample_rate):
    """Read an audio file as a mono float tensor at ``sample_rate``.

    Files of any rate and channel count are accepted: the LP release mixes device rates, and the
    published recipes declared 22.05 kHz without resampling, which put
    every other rate's frames and mel bands in the wrong place.

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
    # Downmix only what has several channels (a mean over one channel costs a tenth of a read).
    wav = torch.from_numpy(np.ascontiguousarray(data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)))
    if rate != sample_rate:
        wav = resampler(rate, sample_rate)(wav.unsqueeze(0)).squeeze(0)
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
    """Load one manifest as a DynamicItemDataset; training rows filtered by ``train_subset``,
    ``avoid_if_longer_than`` (seconds, None for no limit; with ``long_training: segment`` an
    aligned longer row becomes its segments, :mod:`topic_id.training.aligned_rows`) and
    ``train_hours``."""
    csv_path = {"train": hparams["train_csv"], "dev": hparams["dev_csv"], "test": hparams["test_csv"]}
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path[split], replacements={"data_root": hparams["data_folder"]}
    )
    if split == "train" and hparams.get("train_subset", "all") != "all":
        subset = hparams["train_subset"]
        dataset = dataset.filtered_sorted(key_test={"subset": lambda s: s == subset})
    if split == "train" and hparams.get("avoid_if_longer_than"):
        if hparams.get("long_training", "drop") not in LONG_TRAINING:
            raise ConfigError(f"long_training must be one of {', '.join(LONG_TRAINING)}, "
                              f"not {hparams['long_training']!r}")
        if hparams.get("long_training", "drop") == "segment":
            # Long transcribed recordings train as their word-aligned segments (aligned_rows).
            rows = {rec_id: dataset.data[rec_id] for rec_id in dataset.data_ids}
            data, counts = segment_long_rows(rows, hparams["data_folder"], hparams["avoid_if_longer_than"])
            logger.info("train: %s", counts)
            dataset = sb.dataio.dataset.DynamicItemDataset(data)
        # As SpeechBrain's CommonVoice recipes: an attention decoder trained on few long
        # recordings learns worse on all of them (docs/demo_profile.md, 'ASR').
        dataset = dataset.filtered_sorted(key_max_value={"duration": hparams["avoid_if_longer_than"]})
    if split == "train" and hparams.get("train_hours"):
        dataset = hours_subset(
            dataset, hparams["train_hours"], hparams.get("train_hours_sampling", "stratified"),
            seed=hparams.get("seed", 0),
        )
    return dataset


def hours_subset(dataset, hours, sampling="stratified", seed=0):
    """About ``hours`` of audio from a training set, drawn per topic.

    The paper fine-tuned Wav2vec2 on a 100-hour subset whose samples "would reflect the class
    distribution of the whole dataset" (Sec. III-B): ``stratified`` gives each topic its share of
    the hours. ``balanced`` gives every topic the same hours instead (a topic with fewer keeps all
    it has). Within a topic, rows are taken in a seeded random order until its quota is reached, so
    the subset is the same for a given manifest, budget and seed.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Rows with ``topic`` and ``duration`` (seconds).
    hours : float
        The budget; a budget above the data's total keeps everything.
    sampling : str
        ``stratified`` or ``balanced``.
    seed : int
        Seed of the order within each topic.

    Returns
    -------
    DynamicItemDataset
    """
    if sampling not in ("stratified", "balanced"):
        raise ValueError(f"train_hours_sampling must be stratified or balanced, not {sampling!r}")
    by_topic = collections.defaultdict(list)
    with dataset.output_keys_as(["id", "topic", "duration"]):
        for row in dataset:
            by_topic[row["topic"]].append((row["id"], float(row["duration"])))
    total = sum(d for rows in by_topic.values() for _, d in rows)
    rng = random.Random(seed)
    keep, kept = set(), 0.0
    for topic in sorted(by_topic):
        rows = sorted(by_topic[topic])
        rng.shuffle(rows)
        share = sum(d for _, d in rows) / total if sampling == "stratified" else 1 / len(by_topic)
        quota, taken = hours * 3600 * share, 0.0
        for utt_id, duration in rows:
            if taken >= quota:
                break
            keep.add(utt_id)
            taken += duration
        kept += taken
    logger.info("train_hours=%s (%s): %d rows, %.2f of %.2f h", hours, sampling, len(keep),
                kept / 3600, total / 3600)
    return dataset.filtered_sorted(key_test={"id": lambda utt_id: utt_id in keep})


def texts_of(datasets, hparams):
    """All texts each split feeds the text encoder, keyed by split (for caching up front)."""
    out = {}
    for split, dataset in datasets.items():
        column = hparams["train_text"] if split == "train" else hparams["eval_text"]
        with dataset.output_keys_as(text_columns(column)):
            rows = [dict(item) for item in dataset]
        out[split] = [pick_text(row, column) for row in rows]
    return out


def text_encoder_of(hparams):
    """The frozen text encoder whose cached vectors a system reads, or None.

    ``text_encoder`` feeds the head (text and hybrid systems); ``text_target`` is only a training
    target (emb transfer stage A's L1 loss), so a system with it still classifies audio alone.
    """
    if "text_encoder" in hparams:
        return hparams["text_encoder"]
    return hparams.get("text_target")


def precompute_texts(hparams):
    """Fill the text encoder's cache with every text the system will read (main process only)."""
    datasets = {split: read_split(hparams, split) for split in SPLITS}
    texts = sorted({t for split_texts in texts_of(datasets, hparams).values() for t in split_texts})
    text_encoder_of(hparams).precompute(texts, tokens=hparams.get("text_tokens", False))


def dataio_prepare(hparams, labels, device="cpu"):
    """Create the train/dev/test datasets of a system.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters. Keys read: ``data_folder``, ``{train,dev,test}_csv``,
        ``train_subset``, ``train_hours`` and ``train_hours_sampling``, ``seed``, ``sorting``,
        ``sample_rate`` (audio systems), ``train_text`` and
        ``eval_text`` (text systems), ``text_encoder`` or ``text_target`` and ``text_tokens`` (text systems),
        ``tokenizer`` (systems with an ASR decoder), ``keep_in_memory`` (serve the items from
        memory after one pass: :class:`InMemoryDataset`).
    labels : CategoricalEncoder
        The fixed label order.
    device : str
        Where a frozen SSL front end computes the features it caches (``features: ssl``).

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

        @sb.utils.data_pipeline.takes("wav", "start", "stop")
        @sb.utils.data_pipeline.provides("sig")
        def span_pipeline(wav, start, stop):
            return segment_of(load_audio(wav, sample_rate), start, stop, sample_rate)

        for dataset in datasets.values():
            spans = any("start" in row for row in dataset.data.values())
            sb.dataio.dataset.add_dynamic_item([dataset], span_pipeline if spans else audio_pipeline)
        cache = feature_cache_of(hparams)
        # Cached frozen SSL features replace the waveforms, except where an ASR decodes long test
        # recordings in pieces from the waveform.
        keys += ["sig"] if cache is None or "tokenizer" in hparams else []
        if cache is not None:
            keys += _add_feature_pipeline(datasets, hparams, cache, device)

    if text_encoder_of(hparams) is not None:
        keys += _add_text_pipeline(datasets, hparams)
    elif "text_model" in hparams["modules"]:
        keys += _add_text_ids_pipeline(datasets, hparams, hparams["modules"]["text_model"])

    if "tokenizer" in hparams:
        keys += _add_token_pipeline(datasets, hparams["tokenizer"])

    sb.dataio.dataset.set_output_keys(list(datasets.values()), keys)
    datasets["train"] = _sort(datasets["train"], hparams.get("sorting", "random"))
    # Evaluation does not depend on padding, so dev and test go by duration: a batch with a long
    # recording then pads only recordings of about its length (an unsorted pass spends most of its
    # time on padding when durations spread as LP's do).
    for split in ("dev", "test"):
        datasets[split] = _sort(datasets[split], "ascending")
    if hparams.get("keep_in_memory", False):
        datasets = {split: InMemoryDataset(dataset) for split, dataset in datasets.items()}
    return datasets


class InMemoryDataset(torch.utils.data.Dataset):
    """The items of a dataset, computed once and then served from memory in every epoch.

    A text system's item is a cached vector, a label and two strings, yet SpeechBrain's
    ``DynamicItemDataset`` recomputes its pipelines for every item of every epoch, which is most
    of a cached text epoch (benchmarks/, text cache). The items are the same whatever the epoch
    (no pipeline here draws random numbers), so computing them once changes nothing but the time.
    For audio systems it keeps the decoded, resampled signals: only for corpora that fit in memory
    (the demo's 0.7 h is ~160 MB as float32).

    Arguments
    ---------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        With its output keys set and, for the training set, its final order.
    """

    def __init__(self, dataset):
        # ``data``/``data_ids`` keep the manifest rows visible (durations, DynamicBatchSampler).
        self.data, self.data_ids = dataset.data, dataset.data_ids
        self.items = [dataset[i] for i in range(len(dataset))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def stack_or_pad(tensors, **padding_kwargs):
    """SpeechBrain's right padding, except that tensors of one shape are just stacked.

    ``batch_pad_right`` pads every tensor of a batch one by one even when nothing needs padding
    (a text vector, a label); stacking gives the same batch (relative lengths 1) in one call. The
    result is always a new tensor, never a view of an item, so nothing done to a batch can reach
    an :class:`InMemoryDataset`'s stored items.
    """
    shape = tensors[0].shape
    if all(t.shape == shape for t in tensors):
        return torch.stack(tensors), torch.ones(len(tensors))
    return sb.utils.data_utils.batch_pad_right(tensors, **padding_kwargs)


collate = functools.partial(sb.dataio.batch.PaddedBatch, padding_func=stack_or_pad)
"""The collate function of every split: SpeechBrain's ``PaddedBatch`` with :func:`stack_or_pad`."""


def _add_text_pipeline(datasets, hparams):
    """Attach cached text-encoder outputs: the frozen encoder runs once per distinct text."""
    encoder = text_encoder_of(hparams)
    tokens = hparams.get("text_tokens", False)
    key = "text_tokens" if tokens else "text_emb"
    for split, texts in texts_of(datasets, hparams).items():
        unique = sorted(set(texts))
        vectors = encoder.embed_tokens(unique) if tokens else list(encoder.embed(unique))
        lookup = dict(zip(unique, vectors))
        column = _check_texts(hparams, split, texts)
        columns = text_columns(column)

        # Any manifest column a corpus has (recipes/transcribe.py --column writes new ones).
        @sb.utils.data_pipeline.takes(*columns)
        @sb.utils.data_pipeline.provides("text", key)
        def text_pipeline(*values, lookup=lookup, column=column, columns=columns):
            text = pick_text(dict(zip(columns, values)), column)
            yield text
            yield lookup[text]

        datasets[split].add_dynamic_item(text_pipeline)
    return ["text", key]


def _check_texts(hparams, split, texts):
    """The text column(s) of ``split``; ConfigError when none of its rows has text, else a warning
    for the rows without."""
    column = hparams["train_text"] if split == "train" else hparams["eval_text"]
    empty = sum(1 for t in texts if not t)
    # recipes/transcribe.py records each column it filled in <data_folder>/<column>.json: an
    # empty column without that record is a forgotten step; with it, an ASR that heard nothing.
    records = [c for c in column.split(",") if (Path(hparams["data_folder"]) / f"{c.strip()}.json").is_file()]
    if texts and empty == len(texts) and not records:
        raise ConfigError(
            f"{split}: no row has text in {column!r}; for asr_words run recipes/transcribe.py "
            "first, or choose another train_text/eval_text"
        )
    if empty:
        logger.warning("%s: %d of %d rows have no text in %r%s", split, empty, len(texts), column,
                       f" (filled by the ASR recorded in {records[0]}.json)" if records else "")
    return column


def _add_text_ids_pipeline(datasets, hparams, text_model):
    """Attach each row's text and its token ids (``text_ids``) for an encoder trained here.

    The ids are padded per batch (to the batch's longest text) by the collate function; the
    encoder runs in the training step, not here.
    """
    for split, texts in texts_of(datasets, hparams).items():
        column = _check_texts(hparams, split, texts)
        columns = text_columns(column)

        @sb.utils.data_pipeline.takes(*columns)
        @sb.utils.data_pipeline.provides("text", "text_ids")
        def text_ids_pipeline(*values, column=column, columns=columns):
            text = pick_text(dict(zip(columns, values)), column)
            yield text
            yield text_model.tokenize(text)

        datasets[split].add_dynamic_item(text_ids_pipeline)
    return ["text", "text_ids"]


def _add_feature_pipeline(datasets, hparams, cache, device):
    """Attach cached frozen SSL features (``ssl_feats``), computing the missing ones first (main process).

    Features cached from the waveform cannot see what augmentation would do to it, so a waveform
    augmentation (``speed_perturb`` with a speed other than 100 %) is refused rather than skipped.
    """
    perturb = hparams.get("speed_perturb")
    if perturb is not None and any(s != 100 for s in perturb.speeds):
        raise ConfigError("speed_perturb acts on the waveform, but frozen SSL features are cached once per "
                          "recording: set --speeds=[100], or --ssl_freeze=False to run the encoder in the loop")
    extractor = hparams["compute_features"]
    for dataset in datasets.values():
        sb.utils.distributed.run_on_main(cache.fill, args=[dataset, extractor, device])
    cache.store.refresh()  # shards another process wrote
    logger.info("features: cached %s hidden states (%s) from %s; waveform augmentation does not apply",
                extractor.name, extractor.layers, cache.store.folder)

    @sb.utils.data_pipeline.takes("id", "wav")
    @sb.utils.data_pipeline.provides("ssl_feats")
    def feature_pipeline(utt_id, wav):
        return cache.get(utt_id, wav)

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), feature_pipeline)
    return ["ssl_feats"]


def _add_token_pipeline(datasets, tokenizer):
    """Attach the transcript's units for an ASR decoder; rows without a transcript are dropped.

    The tokenizer is trained (once, on the main process) on the transcribed training rows. Ids:
    ``tokens_bos`` = [bos] + units, ``tokens_eos`` = units + [eos], ``tokens`` = units (the
    paper's bos = eos = 0).
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


def loader_kwargs(hparams, datasets):
    """DataLoader keyword arguments of each split: fixed-size or dynamic batches.

    Without ``dynamic_batching`` these are ``train_dataloader_opts`` for train and
    ``test_dataloader_opts`` for dev and test. With it, each split gets SpeechBrain's
    :class:`~speechbrain.dataio.sampler.DynamicBatchSampler` (:func:`dynamic_batch_sampler`) in
    place of ``batch_size``/``shuffle``; other options (``num_workers``, ...) are kept. The training
    batches follow ``sorting`` (random order, or ascending/descending duration) and are rebuilt
    every epoch when ``shuffle_buckets``; under DDP SpeechBrain splits them between processes.
    Every split collates with :data:`collate` unless the options name another ``collate_fn``;
    worker processes are set up by :func:`worker_options`.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters. Keys read: ``train_dataloader_opts``, ``test_dataloader_opts``,
        ``dynamic_batching``, ``max_batch_length`` (seconds of padded audio per batch),
        ``num_buckets``, ``shuffle_buckets``, ``sorting``, ``seed``.
    datasets : dict
        ``{"train": ds, "dev": ds, "test": ds}`` of :func:`dataio_prepare`.

    Returns
    -------
    dict
        ``{"train": kwargs, "dev": kwargs, "test": kwargs}``.
    """
    out = {split: dict(hparams["test_dataloader_opts"]) for split in datasets}
    out["train"] = dict(hparams["train_dataloader_opts"])
    for opts in out.values():
        opts.setdefault("collate_fn", collate)
        worker_options(opts)
    if not hparams.get("dynamic_batching", False):
        return out
    ordering = hparams.get("sorting", "random")
    for split, opts in out.items():
        for key in ("batch_size", "shuffle", "drop_last", "sampler"):
            opts.pop(key, None)
        train = split == "train"
        opts["batch_sampler"] = dynamic_batch_sampler(
            datasets[split],
            max_batch_length=hparams["max_batch_length"],
            num_buckets=hparams["num_buckets"],
            shuffle=train and hparams["shuffle_buckets"],
            batch_ordering=ordering if train else "ascending",
            seed=hparams.get("seed", 0),
        )
    return out


def worker_options(opts):
    """Make DataLoader options valid for their ``num_workers``, in place.

    ``prefetch_factor`` only means something with worker processes (torch raises if it is given
    without), so it is dropped at 0 workers, and when null (torch's default then). Workers are
    forked: the datasets' pipelines are closures over this run's label encoder, tokenizer and
    text vectors, which a ``spawn``/``forkserver`` worker would have to pickle (and cannot).

    Example
    -------
    >>> opts = {"num_workers": 0, "pin_memory": False, "prefetch_factor": 4}
    >>> worker_options(opts); opts
    {'num_workers': 0, 'pin_memory': False}
    >>> opts = {"num_workers": 2, "prefetch_factor": 4}
    >>> worker_options(opts); opts["prefetch_factor"], opts["multiprocessing_context"]
    (4, 'fork')
    """
    if not opts.get("num_workers") or opts.get("prefetch_factor") is None:
        opts.pop("prefetch_factor", None)
    if opts.get("num_workers") and "fork" in multiprocessing.get_all_start_methods():
        opts.setdefault("multiprocessing_context", "fork")


def durations(dataset):
    """The ``duration`` column (seconds) of a dataset's rows, in dataset order."""
    return [float(dataset.data[data_id]["duration"]) for data_id in dataset.data_ids]


TAIL_BUCKET_RATIO = 1.25
"""Growth of the bucket boundaries above the last inner quantile (:func:`bucket_boundaries`)."""


def bucket_boundaries(lengths, num_buckets):
    """Upper boundaries of duration buckets: the inner equal-count quantiles of ``lengths``, then
    steps of :data:`TAIL_BUCKET_RATIO` up to the longest, which is the last boundary.

    Arguments
    ---------
    lengths : list of float
        Row durations (seconds), at least one.
    num_buckets : int
        Equal-count buckets below the tail (fewer when durations repeat).

    Returns
    -------
    list of float
        Increasing boundaries, the last the longest duration.

    Example
    -------
    Ninety-six 4-5 s rows and four of 20 s: the 20 s rows do not set the boundary of the 5 s ones.

    >>> lengths = [4 + i / 100 for i in range(96)] + [20.0] * 4
    >>> [round(b, 2) for b in bucket_boundaries(lengths, 4)]
    [4.25, 4.5, 4.74, 5.93, 7.41, 9.26, 11.58, 14.47, 18.09, 20.0]

    Where the longest is within the ratio of the last quantile, the boundaries are the quantiles.

    >>> [round(b, 2) for b in bucket_boundaries([4.0, 4.2, 4.4, 4.6, 4.8, 5.0], 2)]
    [4.5, 5.0]
    """
    inner = np.quantile(lengths, np.linspace(0, 1, int(num_buckets) + 1)[1:-1]) if num_buckets > 1 else []
    boundaries = sorted({float(b) for b in inner if b > 0})
    longest = float(max(lengths))
    top = boundaries[-1] if boundaries else longest
    while longest > top * TAIL_BUCKET_RATIO:
        top *= TAIL_BUCKET_RATIO
        boundaries.append(top)
    return [b for b in boundaries if b < longest] + [longest]


def dynamic_batch_sampler(dataset, max_batch_length, num_buckets, shuffle=True,
                          batch_ordering="random", seed=0):
    """SpeechBrain's DynamicBatchSampler over ``duration``, with equal-count duration buckets.

    The bucket boundaries are quantiles of the dataset's durations, so every bucket holds about the
    same number of rows whatever the duration distribution (SpeechBrain's default boundaries warp a
    log-normal up to ``max_batch_length``, which leaves short corpora in one or two buckets). A
    bucket's batches hold ``max_batch_length / boundary`` rows (at least one), so a batch never
    has more than ``max_batch_length`` seconds of padded audio unless one row alone is longer.
    Above the last inner quantile the boundaries climb by :data:`TAIL_BUCKET_RATIO` up to the
    longest row (:func:`bucket_boundaries`): a few long recordings get buckets of their own rather
    than setting the boundary of the top bucket's ordinary rows. Without that, on the built-in
    corpus with LP-like durations, the top seventh of the training rows (4.9-5.2 s) shared a
    bucket with the 8 recordings of 10-24 s and went one per batch (109 batches an epoch instead
    of ~55 for the audio-only CRDNN), and the CRDNN rows trained to barely above chance.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Rows with a ``duration`` column (seconds).
    max_batch_length : float
        Seconds of padded audio per batch.
    num_buckets : int
        Number of duration buckets (fewer when durations repeat).
    shuffle : bool
        Reshuffle rows into new batches every epoch.
    batch_ordering : str
        ``random``, ``ascending`` or ``descending`` order of the batches.
    seed : int
        Seed of the shuffling.

    Returns
    -------
    speechbrain.dataio.sampler.DynamicBatchSampler
    """
    if batch_ordering not in ("random", "ascending", "descending"):
        raise ValueError(f"batch ordering must be random, ascending or descending, not {batch_ordering!r}")
    lengths = durations(dataset)
    if not lengths:
        raise ValueError("dynamic batching needs a non-empty dataset")
    return sb.dataio.sampler.DynamicBatchSampler(
        dataset,
        max_batch_length=float(max_batch_length),
        bucket_boundaries=bucket_boundaries(lengths, num_buckets),
        lengths_list=lengths,
        shuffle=shuffle,
        batch_ordering=batch_ordering,
        seed=int(seed),
    )
