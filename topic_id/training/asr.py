"""The attention-based ASR (paper Sec. III) and its transcription stage.

:class:`ASRBrain` trains the CRDNN + location-aware GRU decoder + CTC of ``hparams/asr.yaml``:
``ctc_weight`` CTC + (1 - ``ctc_weight``) attention NLL for the first ``number_of_ctc_epochs``
epochs, attention NLL only afterwards; greedy decoding on dev every ``valid_search_interval`` epochs, beam search at test.
:class:`Tokenizer` trains SentencePiece on the transcribed training rows into the run's folder (no path outside the run).
:func:`transcribe` decodes whole manifests with a trained run and fills their ``asr_words`` column,
the input of the text pipeline and semi-supervised systems. Every hypothesis goes through
:func:`filter_repetitions`, the paper's post-processing of attention loops. :func:`decode` is
long-form: recordings longer than the ASR's segment limit (:func:`segment_limit`: a little over the
90th percentile of its training durations) are cut at pauses (:mod:`topic_id.models.piecewise_decoding`), decoded in pieces and the
hypotheses joined.
"""

import csv
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.tokenizers.SentencePiece import SentencePiece
from speechbrain.utils.data_utils import batch_pad_right

from corpus_tools.files import atomic_write
from topic_id.training import metrics
from topic_id.training.brains import TopicBrain, encode_frames
from topic_id.models.encoders import frame_lengths

logger = logging.getLogger(__name__)

DECODE_MODULES = ("normalize", "audio_encoder", "embedding", "decoder", "seq_lin")
"""The checkpointed modules beam search needs; any system that names its ASR parts alike (the
multi-task system) can be transcribed with :func:`transcribe`."""


def filter_repetitions(words, max_repetition_length=3):
    """Cut attention-decoder loops: an n-gram may repeat back to back at most ``⌊3/n⌋`` times.

    The paper's post-processing (``filter_repetitions(seq, 3)`` in the published recipes), written
    anew: runs of one repeated n-gram are shortened to ``max(1, max_repetition_length // n)``
    copies, for every n, until no such run is left.

    Arguments
    ---------
    words : list of str
        A hypothesis, as words.
    max_repetition_length : int
        The allowed number of back-to-back repeats of a single word.

    Returns
    -------
    list of str

    Example
    -------
    >>> filter_repetitions("no no no no no joo".split())
    ['no', 'no', 'no', 'joo']
    >>> filter_repetitions("mä meen mä meen mä meen kotiin".split())
    ['mä', 'meen', 'kotiin']
    """
    seq = list(words)
    changed = True
    while changed:
        changed = False
        for n in range(1, len(seq) // 2 + 1):
            shorter = _collapse(seq, n, max(1, max_repetition_length // n))
            if len(shorter) < len(seq):
                seq, changed = shorter, True
                break
    return seq


def _collapse(seq, n, keep):
    """Shorten every run of a repeated n-gram in ``seq`` to ``keep`` copies (left to right)."""
    out, i = [], 0
    while i < len(seq):
        repeats = 1
        while i + (repeats + 1) * n <= len(seq) and (
            seq[i + repeats * n] == seq[i] and seq[i + repeats * n : i + (repeats + 1) * n] == seq[i : i + n]
        ):
            repeats += 1
        if repeats > keep:
            out.extend(seq[i : i + n] * keep)
            i += repeats * n
        else:
            out.append(seq[i])
            i += 1
    return out


class Tokenizer:
    """SentencePiece units of the ASR, trained on the transcribed training rows of a manifest.

    Settings as the paper's model: ``<unk>`` at id 0 and no bos/eos/pad
    pieces, so id 0 doubles as CTC blank, bos and eos. Trained once, on the main process, into
    ``model_dir`` (the run's own folder) through SpeechBrain's ``SentencePiece``; loaded lazily,
    so building a model from the YAML needs no data.

    Arguments
    ---------
    model_dir : str
        Where ``<vocab_size>_<model_type>.model`` lives.
    train_csv : str
        Training manifest; rows with ``subset == transcribed`` and a non-empty ``words`` are used.
    vocab_size : int
        Number of units (the decoder's ``output_neurons``).
    model_type : str
        ``unigram`` (paper), ``bpe`` or ``char``.
    character_coverage : float
        SentencePiece ``character_coverage``.
    max_sentencepiece_length : int
        Longest piece, in characters.
    bos_index, eos_index : int
        The ids the decoder starts and ends a sequence with (0, as ``<unk>`` and the CTC blank).
    """

    def __init__(self, model_dir, train_csv, vocab_size, model_type="unigram",
                 character_coverage=1.0, max_sentencepiece_length=10, bos_index=0, eos_index=0):
        self.model_dir = Path(model_dir)
        self.train_csv = train_csv
        self.vocab_size = int(vocab_size)
        self.model_type = model_type
        self.character_coverage = character_coverage
        self.max_sentencepiece_length = max_sentencepiece_length
        self.bos_index = bos_index
        self.eos_index = eos_index
        self._sp = None

    @property
    def model_file(self):
        """The SentencePiece model file."""
        return self.model_dir / f"{self.vocab_size}_{self.model_type}.model"

    def train(self):
        """Train the model unless it exists; the files appear in ``model_dir`` only when complete."""
        if self.model_file.is_file():
            return
        with open(self.train_csv, encoding="utf-8", newline="") as f:
            texts = [r["words"].strip() for r in csv.DictReader(f)
                     if r.get("subset") == "transcribed" and (r.get("words") or "").strip()]
        if not texts:
            raise ValueError(f"{self.train_csv}: no transcribed row with words to train the tokenizer on")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.model_dir, prefix=".train-") as tmp:
            text_file = Path(tmp) / "train_text.txt"
            text_file.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
            try:
                SentencePiece(
                    model_dir=tmp, vocab_size=self.vocab_size, text_file=str(text_file),
                    model_type=self.model_type, character_coverage=self.character_coverage,
                    max_sentencepiece_length=self.max_sentencepiece_length,
                    bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
                )
            except RuntimeError as err:
                raise ValueError(
                    f"cannot train a {self.vocab_size}-unit {self.model_type} SentencePiece model on "
                    f"the {len(texts)} transcripts of {self.train_csv} ({err}); lower output_neurons"
                ) from err
            stem = self.model_file.stem
            for name in ("train_text.txt", f"{stem}.vocab", f"{stem}.model"):  # model last: marks done
                os.replace(Path(tmp) / name, self.model_dir / name)
        logger.info("trained %s on %d transcripts", self.model_file, len(texts))

    @property
    def sp(self):
        """The loaded ``SentencePieceProcessor``."""
        if self._sp is None:
            import sentencepiece

            if not self.model_file.is_file():
                raise FileNotFoundError(f"{self.model_file} is missing: train the ASR run first")
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        return self._sp

    def encode_as_ids(self, text):
        """Unit ids of a transcript."""
        return self.sp.encode_as_ids(text)

    def words(self, ids):
        """Words of a decoded unit sequence, loops cut by :func:`filter_repetitions`."""
        return " ".join(filter_repetitions(self.sp.decode_ids([int(i) for i in ids]).split()))


class ASRBrain(TopicBrain):
    """CRDNN encoder + attentional decoder + CTC; evaluates WER/CER and keeps the hypotheses."""

    def compute_forward(self, batch, stage):
        """Decoder log-probabilities; CTC log-probabilities while CTC trains; hypotheses in eval."""
        batch = batch.to(self.device)
        encoded, lens = encode_frames(self.modules.audio_encoder, *self.audio_features(batch, stage))
        return self.asr_forward(encoded, lens, batch, stage)

    def asr_forward(self, encoded, lens, batch, stage):
        """The ASR branch on encoder frames [B, T', D] with relative lengths ``lens``."""
        tokens_bos, _ = batch.tokens_bos
        decoded, _ = self.modules.decoder(self.modules.embedding(tokens_bos), encoded, lens)
        out = {"p_seq": torch.log_softmax(self.modules.seq_lin(decoded), dim=-1), "lens": lens}
        if stage == sb.Stage.TRAIN:
            if self.hparams.epoch_counter.current <= self.hparams.number_of_ctc_epochs:
                out["p_ctc"] = torch.log_softmax(self.modules.ctc_lin(encoded), dim=-1)
        elif stage == sb.Stage.TEST:
            out["words"] = self.test_hypotheses(encoded, lens, batch)
        elif self.search_on_dev():
            out["hyps"] = self.hparams.greedy_search(encoded, lens)[0]
        return out

    def test_hypotheses(self, encoded, lens, batch):
        """Beam-search words of a test batch, decoded as :func:`transcribe` decodes it.

        A batch within the segment limit (:func:`segment_limit`) is decoded whole from the
        encoder frames at hand; one with a longer recording goes through long-form
        :func:`decode`, so the WER the run reports is that of the text the pipeline rows read.
        """
        if getattr(self, "_segment_limit", None) is None:
            self._segment_limit = segment_limit(vars(self.hparams), self.hparams.output_folder)
        wavs, wav_lens = batch.sig
        samples = (wav_lens * wavs.shape[1]).round().long().tolist()
        if all(n <= self._segment_limit * self.hparams.sample_rate for n in samples):
            return [self.hparams.tokenizer.words(h) for h in self.hparams.beam_search(encoded, lens)[0]]
        signals = [wav[:n] for wav, n in zip(wavs, samples)]
        return decode(vars(self.hparams), signals, self.device, self._segment_limit)

    def search_on_dev(self):
        """Whether this epoch's dev pass decodes (every ``valid_search_interval`` epochs and the last).

        Greedy decoding of dev is a large share of a small ASR's epoch; an epoch without it logs the
        dev loss only, and its checkpoint, having no WER, is no candidate for selection by WER.
        """
        epoch = self.hparams.epoch_counter.current
        return epoch % self.hparams.valid_search_interval == 0 or epoch >= self.hparams.number_of_epochs

    def compute_objectives(self, outputs, batch, stage):
        """The ASR loss (:meth:`asr_loss`)."""
        return self.asr_loss(outputs, batch, stage)

    def asr_loss(self, outputs, batch, stage):
        """Attention NLL (label smoothing), mixed with CTC while CTC trains.

        CTC enters the training loss only, so the dev loss that anneals the LR measures the same
        thing before and after ``number_of_ctc_epochs``.
        """
        tokens_eos, eos_lens = batch.tokens_eos
        loss = self.hparams.seq_cost(outputs["p_seq"], tokens_eos, length=eos_lens)
        if "p_ctc" in outputs:
            tokens, token_lens = batch.tokens
            ctc = self.hparams.ctc_cost(outputs["p_ctc"], tokens, outputs["lens"], token_lens)
            loss = self.hparams.ctc_weight * ctc + (1 - self.hparams.ctc_weight) * loss
        if "words" in outputs:
            self.records["ref"].extend(batch.words)
            self.records["hyp"].extend(outputs["words"])
        elif "hyps" in outputs:
            self.records["ref"].extend(batch.words)
            self.records["hyp"].extend(self.hparams.tokenizer.words(h) for h in outputs["hyps"])
        return loss

    def stage_metrics(self, stage_loss):
        """WER and CER (percent) of the evaluation pass, its loss, and topic metrics if any."""
        stats = super().stage_metrics(stage_loss)
        if self.records["hyp"]:
            stats.update(metrics.error_rates(self.records["ref"], self.records["hyp"]))
        return stats

    def write_outputs(self, results, labels):
        """Write ``metrics.json`` (WER/CER per split, parameter count) and ``hyps_<split>.csv``.

        Arguments
        ---------
        results : dict
            ``{split: self.eval_result}`` for dev and test.
        labels : CategoricalEncoder
            Unused: the ASR predicts no topic.
        """
        self.write_hyps(results)
        summary = {split: result["metrics"] for split, result in results.items()}
        summary["params"] = sum(p.numel() for p in self.modules.parameters())
        summary["trainable_params"] = sum(
            p.numel() for p in self.modules.parameters() if p.requires_grad
        )
        summary["tokenizer"] = str(self.hparams.tokenizer.model_file)
        summary["decoding"] = {"dev": "beam", "test": "beam", "beam_size": self.hparams.beam_search.beam_size}
        metrics.write_json(Path(self.hparams.output_folder) / "metrics.json", summary)

    def write_hyps(self, results):
        """Write ``hyps_<split>.csv`` (ID, reference, beam-search hypothesis) of each split.

        ``hyps.json`` records the checkpoint that decoded them and which audio each split held, so
        :func:`transcribe` can take these hypotheses instead of decoding the same audio again.
        """
        from topic_id.training.transfer import best_checkpoint

        ckpt = best_checkpoint(self.hparams.output_folder, self.hparams.ckpt_select)
        record = {"checkpoint": str(Path(ckpt.path).resolve()), "audio": {}}
        for split in results:
            manifest = Path(getattr(self.hparams, f"{split}_csv"))
            record["audio"][split] = audio_fingerprint(_read_rows(manifest)[1], manifest.parent)
        for split, result in results.items():
            records = result["records"]
            path = Path(self.hparams.output_folder) / f"hyps_{split}.csv"
            with atomic_write(path, newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["ID", "ref", "hyp"])
                writer.writerows(zip(records["id"], records["ref"], records["hyp"]))
        metrics.write_json(Path(self.hparams.output_folder) / "hyps.json", record)


def load_asr(run_dir, device="cpu", max_segment_seconds=None):
    """Load a trained ASR run: its hyperparameters and, from its best checkpoint, the modules
    beam search needs (:data:`DECODE_MODULES`, by name, whatever Brain trained them).

    Arguments
    ---------
    run_dir : str or Path
        The run's output folder (``hyperparams.yaml``, ``save/``, ``tokenizer/``).
    device : str
        Where to decode.
    max_segment_seconds : float, optional
        The segment limit of long-form decoding (default: a little over the run's longest
        training utterance, :func:`segment_limit`); :func:`decode` finds it as
        ``hparams["max_segment_seconds"]``.

    Returns
    -------
    tuple
        ``(hparams, checkpoint_path)``.
    """
    from topic_id.training import transfer
    from topic_id.training.run_folder import Run

    run = Run(run_dir)
    run_dir = run.dir
    hparams = run.load()
    ckpt = transfer.init_from(run_dir, hparams["checkpointer"].recoverables, DECODE_MODULES,
                              run.selection_metric)
    # The saved paths are those of training time; the run folder may have moved since.
    tokenizer = hparams["tokenizer"]
    tokenizer.model_dir = run_dir / os.path.relpath(tokenizer.model_dir, hparams["output_folder"])
    for name in DECODE_MODULES:
        hparams["modules"][name].to(device).eval()
    if max_segment_seconds is None:
        max_segment_seconds = segment_limit(hparams, str(run_dir))
    hparams["max_segment_seconds"] = float(max_segment_seconds)
    return hparams, ckpt


def _read_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def audio_fingerprint(rows, root):
    """A digest of which audio file each row ID names (``$data_root`` resolved against ``root``).

    A transcribed corpus copy links the original's audio, so both give the same digest.
    """
    lines = sorted(f"{r['ID']}\t{Path(r['wav'].replace('$data_root', str(root))).resolve()}" for r in rows)
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def _run_hyps(asr_dir, ckpt, split, rows, root):
    """The run's own beam-search hypotheses of ``rows`` (``{ID: hyp}``), if it decoded exactly
    this audio with this checkpoint during its evaluation; else None."""
    asr_dir = Path(asr_dir)
    try:
        record = json.loads((asr_dir / "hyps.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("checkpoint") != str(Path(ckpt).resolve()):
        return None
    if record.get("audio", {}).get(split) != audio_fingerprint(rows, root):
        return None
    _, hyps = _read_rows(asr_dir / f"hyps_{split}.csv")
    hyps = {h["ID"]: h["hyp"] for h in hyps}
    return hyps if all(r["ID"] in hyps for r in rows) else None


DEFAULT_MAX_SEGMENT_SECONDS = 10.0
"""The segment limit of an ASR whose training durations cannot be read (its manifest moved or
is gone): about twice the utterances of common read-speech corpora."""

SEGMENT_HEADROOM = 1.25
"""The segment limit over the usual length of a training utterance (:data:`SEGMENT_QUANTILE`). An
attention decoder copes with input a little longer than it was trained on (it fails at about twice
as long), and dev, test and untranscribed recordings run a little past the transcribed
training rows: those are decoded whole, as before long-form decoding, rather than cut in two."""

SEGMENT_QUANTILE = 0.9
"""Which training duration the segment limit scales: the 90th percentile, not the longest. A
handful of long training recordings does not teach the decoder to read to the end of input that
long, so a limit scaled from the longest one lets through pieces the decoder stops short on; the
usual length does not move with a few outliers (on the built-in corpus, a lower WER than a limit
from the longest). Where the training durations are even, as on a corpus of one sentence per
recording, the two agree."""


def training_duration(train_csv, train_subset="all", avoid_if_longer_than=None, quantile=1.0):
    """A training duration (seconds) of an ASR: the ``quantile`` (1: the longest) of the
    ``duration`` column of the rows of ``train_csv`` it trained on (``subset == train_subset``
    unless ``all``, and not longer than ``avoid_if_longer_than``); None when the manifest cannot be
    read.

    Arguments
    ---------
    train_csv : str or Path
        The run's training manifest.
    train_subset : str
        The run's ``train_subset``.
    avoid_if_longer_than : float, optional
        The run's limit on training durations (:func:`topic_id.training.dataio.read_split`).
    quantile : float
        Between 0 and 1 (linear interpolation between rows, NumPy's default).

    Returns
    -------
    float or None
    """
    try:
        _, rows = _read_rows(train_csv)
        durations = [float(r["duration"]) for r in rows
                     if train_subset in (None, "all") or r.get("subset") == train_subset]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if avoid_if_longer_than:
        durations = [d for d in durations if d <= avoid_if_longer_than]
    return float(np.quantile(durations, quantile)) if durations else None


def segment_limit(hparams, where="the ASR"):
    """The segment limit of long-form decoding for an ASR run's hyperparameters (``train_csv``,
    ``train_subset``): :data:`SEGMENT_HEADROOM` times the :data:`SEGMENT_QUANTILE` of its training
    durations (input the attention decoder has learnt to decode to the end), rounded to 0.1 s;
    :data:`DEFAULT_MAX_SEGMENT_SECONDS`, with a warning, when the training manifest cannot be
    read.

    Arguments
    ---------
    hparams : dict-like
        The run's hyperparameters (built, or as read by :class:`topic_id.training.run_folder.Run`).
    where : str
        Names the run in the warning.

    Returns
    -------
    float
    """
    limit = training_duration(hparams.get("train_csv"), hparams.get("train_subset", "all"),
                              hparams.get("avoid_if_longer_than"), SEGMENT_QUANTILE)
    if limit is None:
        logger.warning("%s: no durations in its training manifest %s; segmenting long audio at %.0f s",
                       where, hparams.get("train_csv"), DEFAULT_MAX_SEGMENT_SECONDS)
        return DEFAULT_MAX_SEGMENT_SECONDS
    return round(SEGMENT_HEADROOM * limit, 1)


@torch.no_grad()
def decode(hparams, wavs, device="cpu", max_segment_seconds=None, batch_size=8):
    """Beam-search transcripts of a batch of waveforms (16 kHz float tensors of any lengths).

    Long-form: a recording longer than the segment limit is cut into pieces within it
    (:func:`topic_id.models.piecewise_decoding.segment`: at pauses, else overlapping fixed windows); the pieces of
    all recordings of the batch are decoded together, ``batch_size`` at a time in order of length
    (little padding), and each recording's hypotheses are joined in order
    (:func:`topic_id.models.piecewise_decoding.join_hypotheses`). A batch whose recordings are all within the limit
    is decoded as one batch, whole, exactly as without a limit.

    Arguments
    ---------
    hparams : dict
        From :func:`load_asr`.
    wavs : list of torch.Tensor
        One 1-D waveform per utterance.
    device : str
        Where the modules are.
    max_segment_seconds : float, optional
        The segment limit (default: ``hparams["max_segment_seconds"]``, set by :func:`load_asr`;
        without either, no recording is cut).
    batch_size : int
        Pieces per beam-search batch in long-form decoding.

    Returns
    -------
    list of str
        Hypotheses, repetitions filtered.
    """
    from topic_id.models.piecewise_decoding import join_hypotheses, segment

    limit = max_segment_seconds if max_segment_seconds is not None else hparams.get("max_segment_seconds")
    rate = hparams["sample_rate"]
    if limit is None or all(len(w) <= limit * rate for w in wavs):
        return _decode_batch(hparams, wavs, device)
    ranges = [segment(w.cpu(), rate, limit) for w in wavs]
    pieces = [(i, k) for i, r in enumerate(ranges) for k in range(len(r))]
    pieces.sort(key=lambda p: ranges[p[0]][p[1]][1] - ranges[p[0]][p[1]][0])
    hyps = [[None] * len(r) for r in ranges]
    for start in range(0, len(pieces), batch_size):
        chunk = pieces[start : start + batch_size]
        signals = [wavs[i][slice(*ranges[i][k])] for i, k in chunk]
        for (i, k), hyp in zip(chunk, _decode_batch(hparams, signals, device)):
            hyps[i][k] = hyp
    return [join_hypotheses(h, r) for h, r in zip(hyps, ranges)]


def _decode_batch(hparams, wavs, device):
    """Beam search over one padded batch of waveforms, whole."""
    modules = hparams["modules"]
    padded, lens = batch_pad_right(wavs)
    padded, lens = padded.to(device), lens.to(device)
    feats = hparams["compute_features"](padded)
    # The encoder is called as in training (ASRBrain.compute_forward): exact frame lengths, so a
    # padding-aware encoder sees each utterance as if it were alone.
    lens = frame_lengths(hparams["compute_features"], lens, padded.shape[1], feats.shape[1])
    encoded, lens = encode_frames(modules["audio_encoder"], modules["normalize"](feats, lens), lens)
    hyps = hparams["beam_search"](encoded, lens)[0]
    return [hparams["tokenizer"].words(h) for h in hyps]


def transcribe(asr_dir, manifests, column="asr_words", device="cpu", batch_size=8, force=False,
               max_segment_seconds=None):
    """Fill ``column`` of every row of ``train.csv``, ``dev.csv`` and ``test.csv`` with ASR text.

    Each manifest is rewritten atomically (all other columns and the row order unchanged), then
    recorded in ``<manifests>/<column>.json`` with the run and checkpoint that filled it; a rerun
    skips a manifest recorded with the same run, checkpoint, segment limit and rows, unless
    ``force``. A split the run itself decoded with this checkpoint when it was evaluated (its
    ``hyps_<split>.csv``, same audio, no recording beyond the segment limit) takes those
    hypotheses: the text its reported WER was measured on, without decoding the same audio twice.
    Recordings longer than the limit are decoded long-form (:func:`decode`).

    Arguments
    ---------
    asr_dir : str or Path
        A trained run whose modules are named as :data:`DECODE_MODULES`.
    manifests : str or Path
        A prepared corpus folder; ``$data_root`` in ``wav`` stands for this folder.
    column : str
        The column to fill.
    device : str
        Decoding device.
    batch_size : int
        Utterances (or pieces of long ones) per beam-search batch.
    force : bool
        Decode even manifests already filled by this checkpoint.
    max_segment_seconds : float, optional
        The segment limit of long-form decoding (default: the run's, :func:`load_asr`).

    Returns
    -------
    dict
        ``{manifest name: "decoded" | "reused" | "skipped"}``.
    """
    from data_prep.manifest import write_csv
    from topic_id.training.dataio import load_audio

    manifests = Path(manifests)
    record_file = manifests / f"{column}.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    hparams, ckpt = load_asr(asr_dir, device, max_segment_seconds)
    limit = hparams["max_segment_seconds"]
    done = {}
    for split in ("train", "dev", "test"):
        path = manifests / f"{split}.csv"
        header, rows = _read_rows(path)
        ids = hashlib.sha1("\n".join(r["ID"] for r in rows).encode()).hexdigest()
        wanted = {"asr": str(Path(asr_dir).resolve()), "checkpoint": str(Path(ckpt).resolve()), "ids": ids,
                  "max_segment_seconds": limit}
        if record.get(path.name) == wanted and not force:
            done[path.name] = "skipped"
            continue
        # The run decoded its own splits whole: that is long-form decoding only within the limit.
        within = all(float(r["duration"]) <= limit for r in rows)
        reused = _run_hyps(asr_dir, ckpt, split, rows, manifests) if within else None
        if reused is not None:
            for row in rows:
                row[column] = reused[row["ID"]]
            logger.info("%s: the run's own hypotheses (hyps_%s.csv), decoded by %s", path, split, ckpt)
        order = [] if reused is not None else sorted(range(len(rows)), key=lambda i: float(rows[i]["duration"]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            wavs = [load_audio(rows[i]["wav"].replace("$data_root", str(manifests)),
                               hparams["sample_rate"]) for i in chunk]
            for i, hyp in zip(chunk, decode(hparams, wavs, device, batch_size=batch_size)):
                rows[i][column] = hyp
        if column not in header:
            header.append(column)
        write_csv(path, header, rows)
        record[path.name] = wanted
        with atomic_write(record_file) as f:
            json.dump(record, f, indent=2)
        done[path.name] = "decoded" if reused is None else "reused"
        logger.info("%s: %d rows transcribed by %s", path, len(rows), ckpt)
    return done
