"""The CPU sections: text-encoder cache, data-pipeline overhead, dynamic batching, inference RTF."""

import copy
import importlib.util
import time
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch

from benchmarks.common import (ROOT, Row, best, load_system, make_brain, quiet_logs, subset_corpus,
                               train_epochs)
from benchmarks.long_input import long_recording_rows
from data_prep.prepared import read_manifest
from topic_id.training import dataio
from topic_id.training.brains import TopicBrain


class RecomputeBrain(TopicBrain):
    """The text system without the cache: the frozen encoder runs on every batch of every epoch.

    ``encoder`` is a :class:`topic_id.models.text_encoder.TextEncoder` without a cache. With ``per_utterance``
    it runs once per transcript, as the published recipes did inside the data pipeline (see
    docs/published_recipes.md, 'Frozen BERT inside the data pipeline');
    otherwise once per batch.
    """

    encoder = None
    per_utterance = False

    def text_embedding(self, batch):
        """Utterance vectors computed now from the batch's transcripts."""
        if self.per_utterance:
            return torch.cat([self.encoder.embed([text]) for text in batch.text]).to(self.device)
        return self.encoder.embed(batch.text).to(self.device)


def _params(modules):
    """Parameter count of a ``modules`` dict, for the table (``1.0 k``, ``20.76 M``)."""
    n = sum(p.numel() for module in modules.values() for p in module.parameters())
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def text_cache(corpus, work, encoder_dir, label, repeats, baselines=("batch",), batch_size=None,
               whole_run=False):
    """Text-system training epoch with cached vectors vs recomputing the frozen encoder.

    Arguments
    ---------
    corpus : Path
        A prepared corpus (its transcribed train rows are the epoch).
    work : Path
        Scratch folder (a fresh embedding cache is made there).
    encoder_dir : Path
        The text encoder (HF format).
    label : str
        The encoder's name in the table.
    repeats : int
        Timed cached epochs before and after the baselines (the fastest counts); each baseline
        is timed for one epoch.
    baselines : tuple of str
        ``batch`` (encoder once per batch) and/or ``utterance`` (once per transcript, published).
    batch_size : int, optional
        Instead of the demo profile's.
    whole_run : bool
        Add a row for a whole run of the profile's epochs, the one-time cache fill included.

    Returns
    -------
    list of Row
    """
    from transformers import AutoConfig
    from transformers.models.bert import modeling_bert  # noqa: F401 (import time is not cache time)

    dim = AutoConfig.from_pretrained(encoder_dir, local_files_only=True).hidden_size
    sizes = {"batch_size": batch_size} if batch_size else {}
    hp = load_system("hparams/text.yaml", corpus, work, profile="demo",
                     text_encoder_source=str(encoder_dir), text_dim=int(dim),
                     text_cache=str(work / "cache"), train_subset="transcribed", **sizes)
    labels = dataio.label_encoder(corpus)
    start = time.perf_counter()
    dataio.precompute_texts(hp)
    once = time.perf_counter() - start
    datasets = dataio.dataio_prepare(hp, labels)
    train = datasets["train"]
    kwargs = dataio.loader_kwargs(hp, datasets)["train"]
    cached = make_brain(hp)
    t_cached = train_epochs(cached, train, kwargs, 1 + repeats)[1:]
    t_base = {}
    for kind in baselines:
        brain = make_brain(hp, brain_class=RecomputeBrain)
        brain.encoder = copy.copy(hp["text_encoder"])
        brain.encoder.cache_dir, brain.encoder._caches = None, {}
        brain.per_utterance = kind == "utterance"
        t_base[kind] = best(train_epochs(brain, train, kwargs))
    t_cached += train_epochs(cached, train, kwargs, repeats)
    c = best(t_cached)
    n, size = len(train), kwargs["batch_size"]
    what = f"text epoch, {label}: {n} utt. in {-(-n // size)} batches of {size}"
    names = {"batch": "encoder recomputed once per batch",
             "utterance": "encoder recomputed per utterance (published recipes)"}
    rows = []
    for kind, r in t_base.items():
        rows.append(Row("text cache", what, names[kind],
                        f"{c * 1000:.0f} ms cached vs {r * 1000:.0f} ms", r / c, "≥ 20×", r / c >= 20))
    if whole_run:
        epochs, r = hp["number_of_epochs"], t_base["batch"]
        rows.append(Row("text cache", f"whole {epochs}-epoch run, {label}, batches of {size}, "
                        "one-time cache fill (all splits) included", names["batch"],
                        f"{once:.2f} s + {epochs} × {c * 1000:.0f} ms vs {epochs} × {r * 1000:.0f} ms",
                        epochs * r / (once + epochs * c)))
    return rows


def pipeline_overhead(corpus, work, repeats, workers=(0, 2)):
    """Training-loop step time vs the forward+backward+update inside it, in the same epochs.

    The audio-only CRDNN system, fixed batches of the demo profile's ``batch_size`` without
    shuffling. Each epoch is ``Brain.fit`` with the system's dataloader, and every ``fit_batch``
    call in it is timed, so the loop's time per step (the epoch over its steps) and the pure
    forward+backward+update time come from the same batches at the same moment; what separates
    them is the data pipeline (reading, resampling, padding, worker hand-over) and the loop's
    bookkeeping. One Brain trains through every configuration, round after round, because
    separately timed epochs, and separate Brains of the same model, drifted by up to 25 % on
    this 2-core VM: more than the overhead measured. The configurations: the audio decoded
    every epoch (``keep_in_memory: False``, the system YAML's default) with each number of
    dataloader workers in ``workers``, and the demo profile's ``keep_in_memory: True``. Ratios
    are medians over ``repeats`` rounds; the last row compares the epochs of the two kinds of
    items (the fastest of each).

    Returns
    -------
    list of Row
    """
    hp = load_system("hparams/audio_crdnn.yaml", corpus, work, profile="demo", keep_in_memory=False,
                     dynamic_batching=False)
    labels = dataio.label_encoder(corpus)
    prepare, trains = {}, {}
    for in_memory in (False, True):
        start = time.perf_counter()
        trains[in_memory] = dataio.dataio_prepare(dict(hp, keep_in_memory=in_memory), labels)["train"]
        prepare[in_memory] = time.perf_counter() - start
    configs = [(False, n) for n in workers] + [(True, 0)]
    brain = make_brain(hp)
    fit_batch, inside = brain.fit_batch, []

    def timed_fit_batch(batch):
        start = time.perf_counter()
        loss = fit_batch(batch)
        inside.append(time.perf_counter() - start)
        return loss

    brain.fit_batch = timed_fit_batch
    opts = dataio.loader_kwargs(hp, {"train": trains[False]})["train"]
    kwargs = {c: dict(opts, shuffle=False, num_workers=c[1]) for c in configs}
    loop, pure = {c: [] for c in configs}, {c: [] for c in configs}
    for round_ in range(1 + repeats):  # the first round warms up (and starts workers), untimed
        for config in configs:
            inside.clear()
            epoch = train_epochs(brain, trains[config[0]], kwargs[config])[0]
            if round_:
                loop[config].append(epoch)
                pure[config].append(sum(inside))
    steps = len(inside)
    rows = []
    for in_memory, n_workers in configs:
        c = (in_memory, n_workers)
        ratio = float(np.median([t / p for t, p in zip(loop[c], pure[c])]))
        items = "items from memory (keep_in_memory)" if in_memory else "audio decoded every epoch"
        rows.append(Row(
            "data pipeline", f"audio-only CRDNN (demo profile, {_params(hp['modules'])} params), {steps} "
            f"steps of {opts['batch_size']}, num_workers={n_workers}, {items}; median of {repeats} epochs",
            "forward+backward+update (fit_batch) of the same steps",
            f"{float(np.median(loop[c])) / steps * 1000:.0f} vs {float(np.median(pure[c])) / steps * 1000:.0f} "
            "ms/step", ratio, "≤ 1.15", ratio <= 1.15))
    memory, decoded = best(loop[True, 0]), best(loop[False, 0])
    rows.append(Row(
        "data pipeline", f"audio-only CRDNN epoch (demo profile, {len(trains[True])} utt.), items from memory "
        "(keep_in_memory), num_workers=0", "audio decoded and resampled every epoch, num_workers=0",
        f"{memory:.1f} vs {decoded:.1f} s (decoding all splits once before the first epoch: "
        f"{prepare[True] - prepare[False]:.1f} s)", decoded / memory))
    return rows


def padding(batches, lengths):
    """Share of a padded batch tensor that is padding, over all batches.

    Arguments
    ---------
    batches : list of list of int
        Row indices of each batch.
    lengths : list of float
        Duration of each row.

    Returns
    -------
    float
    """
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - real / padded


def _fixed(order, size):
    return [order[i:i + size] for i in range(0, len(order), size)]


def _padding_rows(lengths, dataset, batch_size, max_batch_length, num_buckets, epochs):
    """Padding of fixed shuffled, fixed sorted and dynamic batches over ``epochs`` epochs."""
    gen = torch.Generator().manual_seed(0)
    shuffled = [b for _ in range(epochs) for b in _fixed(torch.randperm(len(lengths), generator=gen).tolist(),
                                                         batch_size)]
    ordered = _fixed(list(np.argsort(lengths, kind="stable")), batch_size)
    sampler = dataio.dynamic_batch_sampler(dataset, max_batch_length, num_buckets, shuffle=True)
    dynamic = [b for _ in range(epochs) for b in sampler]
    per_epoch = len(dynamic) / epochs
    return {
        "shuffled": padding(shuffled, lengths),
        "sorted": padding(ordered, lengths),
        "dynamic": padding(dynamic, lengths),
        "batches": (len(ordered), per_epoch),
    }, sampler


def batching(corpus, work, repeats):
    """Padded-frame fraction and epoch time: DynamicBatchSampler vs fixed-size batches.

    The dynamic batches hold ``batch_size`` × the mean duration seconds of padded audio, so they
    carry as much audio as the fixed batches on average. Besides the corpus, the padding alone is
    computed for simulated LP-like durations (log-normal, median 8 s, 1-50 s) at the paper
    profile's settings.

    Returns
    -------
    list of Row
    """
    # Audio decoded every epoch (the system YAML's default), so each batching pays its own padding.
    hp = load_system("hparams/audio_crdnn.yaml", corpus, work, profile="demo", keep_in_memory=False)
    datasets = dataio.dataio_prepare(hp, dataio.label_encoder(corpus))
    train = datasets["train"]
    lengths = dataio.durations(train)
    size = hp["batch_size"]
    max_len = size * float(np.mean(lengths))
    # Each bucket ends an epoch with one partial batch: on a small corpus, fewer buckets keep the
    # number of batches (and so the per-step cost) close to the fixed batches'.
    buckets = int(min(hp["num_buckets"], max(2, len(lengths) // (4 * size))))
    pad, sampler = _padding_rows(lengths, train, size, max_len, buckets, 5)
    brain = make_brain(hp)
    sorted_train = train.filtered_sorted(sort_key="duration")
    runs = {
        "shuffled": (train, {"batch_size": size, "shuffle": True}),
        "sorted": (sorted_train, {"batch_size": size, "shuffle": False}),
        "dynamic": (train, {"batch_sampler": sampler}),
    }
    train_epochs(brain, train, runs["shuffled"][1])
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (dataset, kwargs) in runs.items():
            times[name] += train_epochs(brain, dataset, kwargs)
    t = {name: best(v) for name, v in times.items()}
    rows = [
        Row("batching", f"DynamicBatchSampler, ≤ {max_len:.1f} s padded audio per batch, "
            f"{buckets} buckets ({pad['batches'][1]:.0f} batches/epoch), {len(lengths)} utt.",
            f"fixed batches of {size}, shuffled ({pad['batches'][0]} batches/epoch)",
            f"padding {pad['dynamic']:.1%} vs {pad['shuffled']:.1%}; epoch {t['dynamic']:.1f} vs "
            f"{t['shuffled']:.1f} s", t["shuffled"] / t["dynamic"], "padding ≤ 10 %",
            pad["dynamic"] <= 0.10),
        Row("batching", "same DynamicBatchSampler", f"fixed batches of {size}, sorted by duration, "
            "never shuffled (published)", f"padding {pad['dynamic']:.1%} vs {pad['sorted']:.1%}; "
            f"epoch {t['dynamic']:.1f} vs {t['sorted']:.1f} s", t["sorted"] / t["dynamic"]),
    ]
    rows[0].measurement += "; audio-only CRDNN (demo profile); ratio = epoch-time speed-up"
    rng = np.random.default_rng(0)
    lp = np.clip(rng.lognormal(np.log(8.0), 0.8, 4000), 1.0, 49.9).tolist()
    lp_set = sb.dataio.dataset.DynamicItemDataset({f"u{i}": {"duration": d} for i, d in enumerate(lp)})
    paper = load_system("hparams/audio_crdnn.yaml", corpus, work / "paper", profile="paper")
    sim, _ = _padding_rows(lp, lp_set, 8, paper["max_batch_length"], paper["num_buckets"], 3)
    rows.append(Row(
        "batching", f"padding only, simulated LP-like durations (log-normal, median 8 s, 1-50 s, "
        f"4000 utt.): paper profile ({paper['max_batch_length']:.0f} s, {paper['num_buckets']} buckets, "
        f"{sim['batches'][1]:.0f} batches/epoch)", f"fixed batches of 8, shuffled ({sim['batches'][0]} "
        "batches/epoch)", f"padding {sim['dynamic']:.1%} vs {sim['shuffled']:.1%} (sorted: "
        f"{sim['sorted']:.1%})", None, "padding ≤ 10 %", sim["dynamic"] <= 0.10))
    return rows


def _test_rows(corpus, n):
    return read_manifest(Path(corpus) / "test.csv")[:n]


PREDICT_SYSTEMS = (
    ("audio BL (TDNN)", "hparams/audio_tdnn.yaml", False),
    ("audio-only, emb transfer (CRDNN)", "hparams/audio_crdnn.yaml", False),
    ("Wav2vec2 (stand-in)", "hparams/audio_wav2vec2.yaml", False),
    ("text man trn (stand-in BERT), transcript given", "hparams/text.yaml", True),
)
"""Systems timed through ``topic-id predict``'s model: (name, YAML, reads the transcript)."""
PAPER_SYSTEMS = (
    ("audio BL (TDNN)", "hparams/audio_tdnn.yaml"),
    ("audio-only, emb transfer (CRDNN)", "hparams/audio_crdnn.yaml"),
)
"""Systems also timed at the paper's sizes (untrained: the forward pass only)."""


def asr_rtf(small, work, files, asr_run=None):
    """Real-time factor of the ASR beam search that the ASR-backed systems run on new audio.

    The text pipeline fed audio, audio+text with ASR text and the multi-task system (its own ASR,
    the same architecture) each transcribe a file before classifying it: this is their extra
    time, one file at a time, at the demo's beam. ``asr_run`` names a trained ASR run (e.g.
    ``demo_out/results/asr/1``); without one, an ASR is trained one epoch at the demo profile's
    sizes, and an ASR that has not learned to stop decodes every file to the length cap, so its
    figure is an upper bound.

    Returns
    -------
    Row
    """
    from topic_id.training.transcription import DECODE_MODULES, decode, load_asr

    trained = asr_run is not None
    if not trained:
        asr_run = work / "asr"
        _train_one_epoch("hparams/asr.yaml", small, asr_run)
    hparams, _ = load_asr(asr_run)
    wavs = [dataio.load_audio(row["wav"], hparams["sample_rate"]) for row in files]
    audio = sum(len(w) for w in wavs) / hparams["sample_rate"]
    with torch.no_grad():
        decode(hparams, wavs[:1])
        start = time.perf_counter()
        for wav in wavs:
            decode(hparams, [wav])
        rtf = (time.perf_counter() - start) / audio
    params = _params({name: hparams["modules"][name] for name in DECODE_MODULES})
    what = (f"trained ({asr_run})" if trained else
            "trained 1 epoch: decodes to the length cap, an upper bound")
    return Row("inference", f"ASR transcription for the text pipeline (from audio), audio+text (ASR "
               f"text), multi-task: beam {hparams['beam_size']}, demo ASR ({params} params), {what}, "
               f"{len(files)} files one at a time", "real time (RTF = processing s / audio s)",
               f"RTF {rtf:.4f}", rtf)


def inference_rtf(corpus, work, n_files, paper_sizes=True, asr_run=None, long_seconds=120.0):
    """Real-time factor from audio file to topic posteriors, per system, on this CPU.

    Each system of :data:`PREDICT_SYSTEMS` is trained for one epoch at the demo profile's sizes on
    a few rows (a model's speed does not depend on its training), then loaded as ``topic-id
    predict`` loads it (:func:`topic_id.serving.inference.load_model`, exported from the run) and timed on
    test files one at a time: reading, resampling, features, model, posteriors. The text system is
    given the manual transcript; the systems that transcribe audio first add the ASR's time, timed
    by :func:`asr_rtf`. The audio systems then classify one long recording of ``long_seconds``
    (:func:`benchmarks.long_input.long_recording_rows`: chunked). With ``paper_sizes``,
    :data:`PAPER_SYSTEMS` at the paper's sizes are timed through the system's Brain without
    training (the same forward pass, random weights).

    Arguments
    ---------
    corpus : Path
        A prepared corpus with the demo's stand-in encoders.
    work : Path
        Scratch folder.
    n_files : int
        Test files per system.
    paper_sizes : bool
        Add the paper-size rows.
    asr_run : Path, optional
        A trained ASR run for :func:`asr_rtf`.
    long_seconds : float
        Length of the long recording (0: no long-recording rows).

    Returns
    -------
    list of Row
    """
    from topic_id.serving import inference

    from transformers import AutoConfig

    from topic_id.config.overrides import top_level_keys

    files = _test_rows(corpus, n_files)
    audio = sum(r["duration"] for r in files)
    small = subset_corpus(corpus, work / "corpus", 16, 8)
    # The widths of the corpus's stand-ins (the demo profile assumes the demo's own).
    dims = {key: AutoConfig.from_pretrained(corpus / folder, local_files_only=True).hidden_size
            for key, folder in (("text_dim", "standin_bert"), ("wav2vec2_dim", "standin_wav2vec2"))}
    rows, audio_models = [], []
    for i, (name, yaml_file, reads_text) in enumerate(PREDICT_SYSTEMS):
        run = work / f"run{i}"
        keys = top_level_keys(ROOT / yaml_file)
        _train_one_epoch(yaml_file, small, run, *(f"--{key}={dim}" for key, dim in dims.items() if key in keys))
        model = inference.load_model(run, device="cpu")
        params = _params(dict(model.mods.items()))

        def classify(row, model=model, reads_text=reads_text):
            if reads_text:
                return model.classify_batch(texts=[row["words"]])
            return model.classify_batch(model.load_audio(row["wav"]).unsqueeze(0))

        classify(files[0])
        start = time.perf_counter()
        for row in files:
            classify(row)
        rtf = (time.perf_counter() - start) / audio
        rows.append(Row("inference", f"topic-id predict: {name}, demo profile ({params} "
                        f"params), {len(files)} files of {audio / len(files):.1f} s, one at a time",
                        "real time (RTF = processing s / audio s)", f"RTF {rtf:.4f}", rtf))
        if not reads_text:
            audio_models.append((name, model))
    if long_seconds:
        rows += long_recording_rows(audio_models, corpus, work / "long", long_seconds)
    rows.append(asr_rtf(small, work, files, asr_run))
    for i, (name, yaml_file) in enumerate(PAPER_SYSTEMS if paper_sizes else ()):
        hp = load_system(yaml_file, corpus, work / f"paper{i}")
        brain = make_brain(hp)
        # One pass in training mode gives the untrained feature normaliser its statistics.
        brain.modules.train()
        _classify(brain, files[0], hp["sample_rate"], sb.Stage.TRAIN)
        brain.modules.eval()
        _classify(brain, files[0], hp["sample_rate"])
        start = time.perf_counter()
        for row in files:
            _classify(brain, row, hp["sample_rate"])
        rtf = (time.perf_counter() - start) / audio
        rows.append(Row("inference", f"forward pass (read, features, model): {name}, paper sizes "
                        f"({_params(hp['modules'])} params, untrained), {len(files)} "
                        "files, one at a time", "real time", f"RTF {rtf:.4f}", rtf))
    return rows


def _train_one_epoch(yaml_file, data_folder, output_folder, *overrides):
    """Train a system one epoch at the demo profile's sizes with ``recipes/train.py``, in this process."""
    spec = importlib.util.spec_from_file_location("topic_id_train", ROOT / "recipes" / "train.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    trainer.main([str(ROOT / yaml_file), f"--data_folder={data_folder}", f"--output_folder={output_folder}",
                  "--profile=demo", "--device=cpu", "--number_of_epochs=1", *overrides])
    quiet_logs()  # train.py set SpeechBrain's logging up again


def _classify(brain, row, sample_rate, stage=sb.Stage.TEST):
    """Posteriors of one file through a Brain: read, resample, features, model."""
    wav = dataio.load_audio(row["wav"], sample_rate)
    batch = sb.dataio.batch.PaddedBatch([{"id": row["ID"], "sig": wav}])
    with torch.no_grad():
        return brain.compute_forward(batch, stage)["logprobs"].exp()
