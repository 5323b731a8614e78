"""Classify new recordings (or transcripts) with a trained system: :class:`TopicIdentifier`.

A SpeechBrain ``Pretrained`` interface over an exported run (``topic-id export``, topic_id/serving/export.py)::

    from topic_id.serving.inference import TopicIdentifier
    model = TopicIdentifier.from_hparams(source="exports/audio_only")
    posteriors, index, labels = model.classify_file("recording.flac")

What a system takes: audio-only systems audio; text systems (the bag-of-words rows too) text, or
audio that their bundled ASR (ours, or the Hugging Face ASR that wrote their training text)
transcribes first; hybrids audio, transcribed by their ASR unless text is given. The forward pass is
the system's own Brain (``embed`` then ``classify``: features, normaliser, encoder, pooling over real
frames only, text branch, head), the code that wrote the run's ``predictions.csv``, so an utterance
gets the same posteriors here, alone or in any batch. Audio of any rate and channel count is read with
soundfile, downmixed and resampled to the system's rate.

``topic-id predict --model DIR a.wav b.flac [--json] [--text "..."]`` (topic_id/cli.py) runs it on
files; DIR is an export or a run folder (exported to a temporary folder first).
"""

import json
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

import soundfile
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedData
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.data_utils import batch_pad_right

from data_prep.prepared import read_topics
from topic_id.models.chunked_encoding import CHUNK_SECONDS, LongInput
from topic_id.serving.export import FINETUNED_TEXT, ExportError, check_export, export_run, is_run_dir
from topic_id.serving.bundled import loading

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """An input file or text the model cannot take; the message names it."""


class TopicIdentifier(Pretrained):
    """Topic posteriors of recordings and/or transcripts from an exported topic-id system.

    Built by ``from_hparams(source=EXPORT_DIR)`` or SpeechBrain's ``foreign_class``; the export's
    ``hyperparams.yaml`` provides ``system`` (the training hyperparameters), ``asr`` (or null),
    ``modules`` and ``pretrainer``.
    """

    HPARAMS_NEEDED = ["system", "pretrainer"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hparams = self.hparams
        # The folder the weights came from (symlinks resolved when a savedir was used): relative
        # paths of the export are relative to it, wherever it was moved.
        self.source = Path(next(iter(hparams.pretrainer.paths.values()))).resolve().parent
        self.labels = read_topics(self.source)
        system = hparams.system
        if system.get("n_topics", len(self.labels)) != len(self.labels):
            raise ExportError(f"{self.source}/topics.txt lists {len(self.labels)} topics, the model "
                              f"has {system['n_topics']}")
        self.uses_audio = "audio_encoder" in (system.get("modules") or {})
        self.text_encoder = system.get("text_encoder")
        # A bag-of-words row: a scikit-learn model in place of a Brain (topic_id.models.bow).
        self.bow = self.mods["bow"] if "bow" in self.mods else None
        self.uses_text = self.text_encoder is not None or self.bow is not None
        if self.bow is not None and self.bow.labels != self.labels:
            raise ExportError(f"{self.source}/topics.txt lists {self.labels}, the bag-of-words model "
                              f"{self.bow.labels}")
        if self.text_encoder is not None:
            source = Path(self.text_encoder.source)
            if not source.is_absolute() and (self.source / source).is_dir():
                self.text_encoder.source = str(self.source / source)
            self.text_encoder.cache_dir = None
            self.text_encoder.device = str(self.device)
        # A text encoder trained with the head (hparams/text_finetune.yaml): built now that the
        # folder of its config and tokenizer is known, with the weights the Pretrainer gave it.
        self.text_model = self.mods[FINETUNED_TEXT] if FINETUNED_TEXT in self.mods else None
        if self.text_model is not None:
            self.uses_text = True
            if not self.text_model.materialized:
                source = Path(self.text_model.source)
                if not source.is_absolute() and (self.source / source).is_dir():
                    self.text_model.source = str(self.source / source)
                self.text_model.materialize()
            self.text_model.to(self.device).eval().requires_grad_(False)
        self.asr = getattr(hparams, "asr", None)
        if self.asr is not None:
            from topic_id.models.piecewise_decoding import DEFAULT_MAX_SEGMENT_SECONDS

            self.asr["tokenizer"].model_dir = self.source / hparams.asr_tokenizer_dir
            # The long-form segment limit (topic_id.training.transcription.decode); exports written before it was
            # recorded get the default.
            limit = getattr(hparams, "asr_max_segment_seconds", None)
            self.asr["max_segment_seconds"] = float(limit or DEFAULT_MAX_SEGMENT_SECONDS)
        # Exports written before the corpus language was recorded are Finnish, as every corpus then was.
        self.text_normalisation = dict(getattr(hparams, "text_normalisation", None) or {})
        self._hf_asr, self.hf_asr_spec = None, getattr(hparams, "hf_asr", None)
        rate = system.get("sample_rate") if self.uses_audio else None
        if self.asr is not None:
            rate = rate or self.asr["sample_rate"]
        elif self.hf_asr_spec is not None:
            rate = rate or self.hf_asr_spec.get("sample_rate") or self.hf_asr.sample_rate
        self.sample_rate = rate
        # The system's own Brain computes the embedding and posteriors, as in training (quietly:
        # its "no trainable parameters" warning is expected of frozen inference modules).
        core = logging.getLogger("speechbrain.core")
        level = core.level
        core.setLevel(logging.ERROR)
        try:
            if self.bow is not None:
                from topic_id.models.bow import BagOfWordsBrain

                self.brain = BagOfWordsBrain(self.bow)
            else:
                self.brain = system["brain_class"](
                    modules={name: self.mods[name] for name in system["modules"]},
                    hparams=system,
                    run_opts={"device": str(self.device)},
                )
        finally:
            core.setLevel(level)
        self.chunk_seconds = getattr(hparams, "chunk_seconds", CHUNK_SECONDS)

    @property
    def hf_asr(self):
        """The Hugging Face ASR of the export (``hf_asr``), loaded when first needed (classifying
        text does not load it); None for a system without one."""
        if self._hf_asr is None and self.hf_asr_spec is not None:
            self._hf_asr = _load_hf_asr(self.hf_asr_spec, self.source, str(self.device))
        return self._hf_asr

    @property
    def chunk_seconds(self):
        """Recordings longer than this (s) are encoded in chunks (:mod:`topic_id.models.chunked_encoding`);
        None: always in one pass. Set it to change it; exports carry a default (``chunk_seconds``)."""
        long_input = self.brain.long_input
        return None if long_input is None else long_input.chunk_seconds

    @chunk_seconds.setter
    def chunk_seconds(self, seconds):
        audio = self.uses_audio and seconds is not None
        self.brain.long_input = LongInput(self.sample_rate, seconds) if audio else None

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """Load an export folder, checking first that it holds every file it lists."""
        text = str(source)
        if Path(text).is_dir() or text.startswith(("/", ".", "~")) or text.count("/") != 1:
            check_export(source)  # a local folder (anything but an org/name hub id)
        # The models the folder carries are built from it while hyperparams.yaml loads.
        with loading(source):
            return super().from_hparams(source, hparams_file=hparams_file, **kwargs)

    @property
    def needs(self):
        """What :meth:`classify_batch` requires: ``audio``, ``text``, or ``audio+text``."""
        return "+".join(k for k, used in (("audio", self.uses_audio), ("text", self.uses_text)) if used)

    def load_audio(self, path, savedir=None):
        """A file as a mono float tensor at :attr:`sample_rate` (any rate, any channel count).

        Raises
        ------
        InputError
            When the file is missing, not audio soundfile can read, or holds no samples.
        """
        from topic_id.training.dataio import load_audio

        if self.sample_rate is None:
            raise InputError(f"this system reads text ({self.needs}) and has no ASR to transcribe "
                             "audio: give the text, or export the run again with --asr ASR_RUN")
        check_audio(path)
        return load_audio(str(path), self.sample_rate)

    def transcribe_batch(self, wavs, wav_lens=None, max_segment_seconds=None):
        """The bundled ASR's hypotheses (beam search, loops cut) of a padded batch [B, T].

        Recordings longer than the ASR's segment limit are transcribed long-form: cut at pauses
        into pieces within it, decoded in batches, hypotheses joined (:func:`topic_id.training.transcription.decode`).
        A Hugging Face ASR (``hf_asr`` of the export) decodes as it did when it wrote the system's
        text (:meth:`topic_id.models.hf_asr.HFASR.transcribe`), and its text is normalised as that
        text was (:func:`data_prep.text_norm.normalize_transcript`).

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate`, zero-padded.
        wav_lens : torch.Tensor, optional
            Relative lengths [B].
        max_segment_seconds : float, optional
            The segment limit (default: the export's ``asr_max_segment_seconds``, a little over the
            90th percentile of the ASR's training durations).

        Returns
        -------
        list of str
        """
        from topic_id.training.transcription import decode
        from corpus_tools.audio import resampler

        if self.asr is None and self.hf_asr_spec is None:
            raise InputError("this model has no ASR to transcribe audio: give the text, or export "
                             "the run again with --asr ASR_RUN")
        wavs, wav_lens = _batch(wavs, wav_lens)
        n = torch.round(wav_lens * wavs.shape[1]).long().clamp(min=1)
        signals = [wavs[i, : n[i]].cpu() for i in range(len(n))]
        asr_rate = self.asr["sample_rate"] if self.asr is not None else self.hf_asr.sample_rate
        if asr_rate != self.sample_rate:
            resample = resampler(self.sample_rate, asr_rate)
            signals = [resample(s.unsqueeze(0)).squeeze(0) for s in signals]
        if self.hf_asr is not None:
            from data_prep.text_norm import normalize_transcript

            limit = self.hf_asr.max_segment_seconds
            if max_segment_seconds is not None:
                self.hf_asr.max_segment_seconds = max_segment_seconds
            try:
                settings = self.hf_asr_spec.get("text_normalisation") or {}
                return [normalize_transcript(t, **settings)
                        for t in self.hf_asr.transcribe(signals, len(signals))]
            finally:
                self.hf_asr.max_segment_seconds = limit
        return decode(self.asr, signals, self.device, max_segment_seconds)

    def classify_batch(self, wavs=None, wav_lens=None, texts=None):
        """Topic posteriors of a batch.

        Arguments
        ---------
        wavs : torch.Tensor, optional
            Waveforms [B, T] (or [T]) at :attr:`sample_rate`, zero-padded; needed by systems with
            an audio branch, and by text systems when no ``texts`` are given.
        wav_lens : torch.Tensor, optional
            Relative lengths [B] (default: no padding).
        texts : list of str, optional
            Transcripts for a text branch, normalised as the training text was (lowercase words;
            ``data_prep.text_norm.normalize_transcript``); default: the ASR's.

        Returns
        -------
        tuple
            ``(posteriors [B, n_topics], index [B], labels)``.
        """
        batch = SimpleNamespace()
        if wavs is not None:
            wavs, wav_lens = _batch(wavs, wav_lens)
            batch.sig = (wavs.to(self.device), wav_lens.to(self.device))
        elif self.uses_audio:
            raise InputError(f"this system classifies audio ({self.needs}): give wavs")
        if self.uses_text:
            if texts is None:
                if wavs is None:
                    raise InputError("give audio or text")
                texts = self.transcribe_batch(wavs, wav_lens)
            texts = ["" if t is None else str(t) for t in texts]
            if wavs is not None and len(texts) != len(wavs):
                raise InputError(f"{len(texts)} texts for {len(wavs)} recordings")
            if self.bow is not None:
                batch.texts = texts
            elif self.text_model is not None:
                ids, lens = batch_pad_right([self.text_model.tokenize(t) for t in texts])
                batch.text_ids = PaddedData(ids.to(self.device), lens.to(self.device))
            elif "text_branch" in self.mods:
                tokens, lens = batch_pad_right(self.text_encoder.embed_tokens(texts))
                batch.text_tokens = (tokens.to(self.device), lens.to(self.device))
            else:
                emb = self.text_encoder.embed(texts).to(self.device)
                batch.text_emb = PaddedData(emb, torch.ones(len(texts), device=self.device))
        with torch.no_grad():
            logprobs = self.brain.classify(self.brain.embed(batch, sb.Stage.TEST))["logprobs"]
        posteriors = logprobs.exp().float()
        index = posteriors.argmax(dim=-1)
        return posteriors, index, [self.labels[i] for i in index.tolist()]

    def classify_file(self, path=None, text=None):
        """Topic posteriors of one recording (and/or its transcript): as :meth:`classify_batch`."""
        wav = self.load_audio(path).unsqueeze(0) if path is not None and (
            self.uses_audio or text is None) else None
        return self.classify_batch(wav, None, None if text is None else [text])

    def forward(self, wavs, wav_lens=None, texts=None):
        """Same as :meth:`classify_batch`."""
        return self.classify_batch(wavs, wav_lens, texts)


def _load_hf_asr(spec, folder, device):
    """The Hugging Face ASR of an export's ``hf_asr`` (a folder in the export, or a hub id at its
    commit, from the local cache: offline)."""
    from topic_id.models.hf_asr import load_hf_asr
    from topic_id.models.hub import ModelNotFound

    source = str(spec["source"])
    if (folder / source).is_dir():
        source = str(folder / source)
    try:
        return load_hf_asr(source, revision=spec.get("revision"), device=device,
                           language=spec.get("language"), task=spec.get("task") or "transcribe",
                           max_segment_seconds=spec.get("max_segment_seconds"),
                           dtype=spec.get("dtype") or "float32")
    except ModelNotFound as err:
        raise ExportError(f"this model's ASR: {err}") from None


def _batch(wavs, wav_lens):
    wavs = wavs.float()
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)
    if wav_lens is None:
        wav_lens = torch.ones(wavs.shape[0])
    return wavs, wav_lens.float().to(wavs.device)


def check_audio(path):
    """Raise InputError unless ``path`` is an audio file with at least one sample."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not an audio file soundfile can read ({reason})") from None
    if info.frames == 0:
        raise InputError(f"{path}: the file holds no audio samples")


def load_model(model, device=None, chunk_seconds=None):
    """A TopicIdentifier from an export folder, or from a run folder (exported to a temporary
    folder first, removed with the model).

    Arguments
    ---------
    model : str or Path
        Export or run folder.
    device : str, optional
        ``cpu``, ``cuda``, ``cuda:1``; default: a GPU when there is one.
    chunk_seconds : float, optional
        Encode recordings longer than this in chunks (0: never); default: the export's
        (:attr:`TopicIdentifier.chunk_seconds`).

    Returns
    -------
    TopicIdentifier
    """
    model = Path(model)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tmp = None
    if model.is_dir() and is_run_dir(model):
        tmp = tempfile.TemporaryDirectory(prefix="topic-id-export-")
        model = export_run(model, Path(tmp.name) / "model")
    check_export(model)
    identifier = TopicIdentifier.from_hparams(source=str(model), run_opts={"device": device})
    identifier.tmp_export = tmp  # kept alive as long as the model
    if chunk_seconds is not None:
        identifier.chunk_seconds = chunk_seconds or None
    return identifier


def predict(model, files, texts=None, device=None, batch_size=8, chunk_seconds=None):
    """Classify files (and/or texts) with a model folder; the rows ``topic-id predict`` prints.

    Every file is checked before the model is loaded, so bad input fails fast.

    Arguments
    ---------
    model : str or Path
        Export or run folder.
    files : list of str
        Audio files (may be empty for a text system given ``texts``).
    texts : list of str, optional
        One text for every file, or one for all; normalised as the system's training text was
        (the corpus language recorded in the export).
    device : str, optional
        Inference device.
    batch_size : int
        Files per forward pass.
    chunk_seconds : float, optional
        As :func:`load_model`.

    Returns
    -------
    list of dict
        ``{"file", "topic", "posteriors": {label: p}}`` and ``"text"`` for systems that read text.
    """
    from data_prep.text_norm import normalize_transcript

    for path in files:
        check_audio(path)
    if texts:
        if not files:
            files = [None] * len(texts)
        elif len(texts) == 1:
            texts = texts * len(files)
        elif len(texts) != len(files):
            raise InputError(f"{len(texts)} --text values for {len(files)} files: give one, or one per file")
    elif not files:
        raise InputError("nothing to classify: give audio files (or --text)")
    identifier = load_model(model, device, chunk_seconds)
    if texts:
        texts = [normalize_transcript(t, **identifier.text_normalisation) for t in texts]
    if texts and not identifier.uses_text:
        raise InputError(f"this system reads no text ({identifier.needs}); leave out --text")
    if files[0] is None and identifier.uses_audio:
        raise InputError(f"this system classifies audio ({identifier.needs}): give audio files")
    rows = []
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        signals = None
        batch_texts = texts[start : start + batch_size] if texts else None
        if batch[0] is not None and (identifier.uses_audio or batch_texts is None):
            signals = [identifier.load_audio(p) for p in batch]
        rows += classify_signals(identifier, batch, signals, batch_texts)
    return rows


def classify_signals(identifier, files, signals=None, texts=None):
    """``predict`` rows of one batch: the files' signals (and/or texts) through the model.

    Arguments
    ---------
    identifier : TopicIdentifier
        The model.
    files : list
        What each row is of (its ``file`` value).
    signals : list of torch.Tensor, optional
        Mono waveforms at the model's rate (from :meth:`TopicIdentifier.load_audio`).
    texts : list of str, optional
        Transcripts; default for systems that read text: the bundled ASR's.

    Returns
    -------
    list of dict
        ``{"file", "topic", "posteriors": {label: p}}`` and ``"text"`` for systems that read text.
    """
    wavs = lens = None
    if signals is not None:
        wavs, lens = batch_pad_right(signals)
    if identifier.uses_text and texts is None:
        texts = identifier.transcribe_batch(wavs, lens)
    posteriors, _, labels = identifier.classify_batch(wavs, lens, texts)
    rows = []
    for i, path in enumerate(files):
        row = {"file": path, "topic": labels[i],
               "posteriors": dict(zip(identifier.labels, posteriors[i].tolist()))}
        if identifier.uses_text:
            row["text"] = texts[i]
        rows.append(row)
    return rows


def format_rows(rows, as_json=False):
    """``predict`` rows as JSON, or as a tab-separated table with one posterior column per topic."""
    if as_json:
        return json.dumps(rows, indent=2, ensure_ascii=False)
    labels = list(rows[0]["posteriors"]) if rows else []
    has_text = any("text" in r for r in rows)
    lines = ["\t".join(["file", "topic"] + [f"p({label})" for label in labels] + (["text"] if has_text else []))]
    for r in rows:
        cells = [r["file"] or "-", r["topic"]] + [f"{r['posteriors'][label]:.4f}" for label in labels]
        lines.append("\t".join(cells + ([r.get("text", "")] if has_text else [])))
    return "\n".join(lines)


__all__ = ["TopicIdentifier", "InputError", "ExportError", "load_model", "predict", "classify_signals"]
