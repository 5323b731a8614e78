"""A pretrained Hugging Face ASR as the cascade's external ASR: a CTC model or Whisper.

What a researcher would otherwise transcribe a Finnish corpus with before classifying its text:
Whisper (``openai/whisper-large-v3``), or a Finnish wav2vec2 CTC model. :func:`load_hf_asr`
resolves the model through :func:`topic_id.models.hub.resolve_model` (a local folder or a hub id
in the local cache; offline unless downloads are allowed) and tells the two kinds apart by their
config (:func:`asr_type`):

- **CTC** (any ``*ForCTC`` architecture: wav2vec2, HuBERT, WavLM, data2vec-audio, w2v-BERT):
  ``AutoModelForCTC`` with the model's feature extractor and CTC tokenizer, greedy decoding (the
  argmax of each frame, repeats and blanks collapsed by the tokenizer; a processor with a
  language model is decoded greedily too). A recording longer than the segment limit
  (:data:`CTC_MAX_SEGMENT_SECONDS`) is cut at pauses (:mod:`topic_id.models.piecewise_decoding`):
  self-attention over a whole long recording costs memory quadratic in its length.
- **Whisper** (``model_type: whisper``): ``WhisperForConditionalGeneration.generate`` with
  ``language`` and ``task`` (Finnish transcription by default). Recordings up to 30 s are decoded
  as one 30 s window each; a batch holding a longer one goes, whole and untruncated, through
  Whisper's own sequential long-form generation (timestamps predicted, the window moved to the last
  complete segment: the Whisper paper, Sec. 3.8).

:meth:`HFASR.transcribe` returns the text as the model writes it; the transcription stage
(:mod:`topic_id.training.hf_transcription`) normalises it as the corpus's transcripts are.
"""

import logging

import numpy as np
import torch

from topic_id.models.hub import ModelKind, ModelNotFound, load_config, refetch, resolve_model
from topic_id.models.piecewise_decoding import decode_in_pieces

logger = logging.getLogger(__name__)

HF_ASR = ModelKind("ASR model", "--asr-model DIR", "the published ASR")
ASR_TYPES = ("ctc", "whisper")
CTC_MAX_SEGMENT_SECONDS = 30.0
"""The longest piece a CTC model decodes at once (Whisper's window, and about what fine-tuning
corpora's longest utterances are)."""
WHISPER_TASKS = ("transcribe", "translate")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def asr_type(config):
    """``"whisper"`` or ``"ctc"`` for a Hugging Face config, else None (no ASR this module decodes).

    Arguments
    ---------
    config : transformers.PretrainedConfig or dict
        The model's config (``model_type``, ``architectures``).

    Example
    -------
    >>> asr_type({"model_type": "whisper"}), asr_type({"architectures": ["Wav2Vec2ForCTC"]})
    ('whisper', 'ctc')
    >>> asr_type({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForPreTraining"]}) is None
    True
    """
    fields = config if isinstance(config, dict) else config.to_dict()
    if fields.get("model_type") == "whisper":
        return "whisper"
    if any(str(a).endswith("ForCTC") for a in fields.get("architectures") or ()):
        return "ctc"
    return None


class HFASR:
    """A loaded Hugging Face ASR (:func:`load_hf_asr`): its model, feature extractor and tokenizer.

    Attributes
    ----------
    type : str
        One of :data:`ASR_TYPES`.
    name : str
        What reports print (``org/name@<commit>`` or the folder, :func:`topic_id.models.hub.resolve_model`).
    sample_rate : int
        The rate the model takes (its feature extractor's).
    """

    def __init__(self, model, feature_extractor, tokenizer, asr_kind, source, name, path, revision=None,
                 device="cpu", language=None, task="transcribe", max_segment_seconds=None, dtype="float32",
                 options=None):
        self.model = model
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.type = asr_kind
        self.source, self.name, self.path, self.revision = str(source), name, str(path), revision
        self.device = device
        self.language, self.task = language, task
        self.max_segment_seconds = max_segment_seconds
        self.dtype = dtype
        self.options = options  # the settings as given to load_hf_asr (see its ``options``)
        self.sample_rate = int(feature_extractor.sampling_rate)

    def describe(self):
        """What the transcription's summary records of the model (also what its output depends on).

        Returns
        -------
        dict
            ``source`` (as given), ``name``, ``path``, ``type``, ``revision`` (the commit of a hub
            snapshot, None for a folder), ``dtype``, and ``language`` and ``task`` (Whisper) or
            ``max_segment_seconds`` (CTC).
        """
        info = {"source": self.source, "name": self.name, "path": self.path, "type": self.type,
                "revision": self.revision, "dtype": self.dtype}
        if self.type == "whisper":
            info.update(language=self.language, task=self.task)
        else:
            info["max_segment_seconds"] = self.max_segment_seconds
        return info

    @torch.inference_mode()
    def transcribe(self, wavs, batch_size=8):
        """The model's text of each waveform (1-D float arrays or tensors at :attr:`sample_rate`).

        Arguments
        ---------
        wavs : list
            Waveforms of any lengths, decoded together (Whisper: as one batch; CTC: their pieces,
            ``batch_size`` at a time).
        batch_size : int
            Pieces per forward pass of a CTC model.

        Returns
        -------
        list of str
            As the tokenizer decodes them, special tokens and timestamps left out.
        """
        wavs = [torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(-1) for w in wavs]
        if not wavs:
            return []
        if self.type == "whisper":
            return self._whisper(wavs)
        return decode_in_pieces(wavs, self.sample_rate, self.max_segment_seconds, self._ctc, batch_size)

    def _inputs(self, features):
        """Feature-extractor output on the model's device, floats in the model's dtype."""
        return {k: v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in features.items()}

    def _ctc(self, wavs):
        """Greedy CTC decoding of one padded batch."""
        features = self.feature_extractor([w.numpy() for w in wavs], sampling_rate=self.sample_rate,
                                          return_tensors="pt", padding=True)
        logits = self.model(**self._inputs(features)).logits
        ids = logits.argmax(-1).cpu()
        # Frames of padding are cut off: a model without an attention mask (group-norm wav2vec2)
        # sees the zeros as audio, and its argmax there would add letters.
        frames = getattr(self.model, "_get_feat_extract_output_lengths", None)
        if frames is not None:
            lengths = frames(torch.tensor([len(w) for w in wavs])).tolist()
            return [self.tokenizer.decode(seq[: int(n)]) for seq, n in zip(ids, lengths)]
        return self.tokenizer.batch_decode(ids)

    def _whisper(self, wavs):
        """Whisper's generation over one batch: 30 s windows, or long-form beyond 30 s."""
        fe = self.feature_extractor
        audio = [w.numpy() for w in wavs]
        kwargs = {"language": self.language, "task": self.task} if self.language or self.task else {}
        if max(len(a) for a in audio) <= fe.n_samples:
            features = fe(audio, sampling_rate=self.sample_rate, return_tensors="pt")
            inputs = {"input_features": self._inputs(features)["input_features"]}
        else:
            # transformers' documented long-form call: all frames, untruncated, padded to the
            # longest recording, with the attention mask that tells each one's end.
            features = fe(audio, sampling_rate=self.sample_rate, return_tensors="pt", truncation=False,
                          padding="longest", return_attention_mask=True)
            inputs = self._inputs(features)
            kwargs["return_timestamps"] = True
        out = self.model.generate(**inputs, **kwargs)
        sequences = out if torch.is_tensor(out) else out["sequences"]
        return self.tokenizer.batch_decode(sequences.cpu(), skip_special_tokens=True)


def check_hf_asr(source, revision=None, download=False, cache_dir=None):
    """Resolve an ASR model and read its config, without its weights: what a table checks first.

    Returns
    -------
    tuple
        ``(path, name, config, type)`` (:func:`topic_id.models.hub.resolve_model`, :func:`asr_type`).

    Raises
    ------
    ModelNotFound
        The model is not available, or its config names no CTC or Whisper model.
    """
    path, name = resolve_model(source, revision, download, cache_dir, HF_ASR)
    config = load_config(path, str(source), HF_ASR)
    asr_kind = asr_type(config)
    if asr_kind is None:
        raise ModelNotFound(
            f"ASR model {str(source)!r} is neither a Whisper model nor a CTC model (its config names "
            f"model_type {config.model_type!r}, architectures {getattr(config, 'architectures', None)}): "
            "give a fine-tuned speech recognition model, e.g. an *ForCTC checkpoint or openai/whisper-*")
    return path, name, config, asr_kind


OPTION_KEYS = ("revision", "language", "task", "max_segment_seconds", "dtype")
"""The settings of :func:`load_hf_asr` its text depends on: what a transcription's summary records
as ``asr_options`` and a table compares before it skips a finished transcription."""


def add_options(parser):
    """Add the options of a Hugging Face ASR to an argparse parser (``recipes/transcribe.py
    --asr-model``, ``run_table.sh --external-asr-args``); :func:`options_of` reads them back.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _ = add_options(parser)
    >>> options_of(parser.parse_args(["--language", "sv", "--dtype", "bfloat16"]))
    {'revision': None, 'language': 'sv', 'task': 'transcribe', 'max_segment_seconds': None, 'dtype': 'bfloat16'}
    """
    group = parser.add_argument_group("--asr-model options")
    group.add_argument("--language", default=None,
                       help="Whisper's language (a code or name; auto: detect; default: the prepared "
                            "corpus's language, fi where none is recorded)")
    group.add_argument("--task", default="transcribe", choices=WHISPER_TASKS, help="Whisper's task")
    group.add_argument("--revision", default=None, help="branch, tag or commit of a hub id")
    group.add_argument("--hub_download", "--hub-download", action="store_true",
                       help="fetch a hub id missing from the local Hugging Face cache (off: offline)")
    group.add_argument("--dtype", default="float32", choices=tuple(DTYPES), help="weights' precision")
    if not any("--max-segment-seconds" in a.option_strings for a in parser._actions):
        group.add_argument("--max-segment-seconds", type=float, default=None, metavar="S",
                           help="a CTC model's longest piece, in seconds (default 30)")
    return group


def options_of(args):
    """The :data:`OPTION_KEYS` of parsed :func:`add_options` arguments, as :func:`load_hf_asr` takes them."""
    return {key: getattr(args, key) for key in OPTION_KEYS}


def load_hf_asr(source, revision=None, download=False, device="cpu", language="fi", task="transcribe",
                max_segment_seconds=None, dtype="float32", cache_dir=None):
    """Resolve and load a Hugging Face CTC or Whisper model for transcription.

    Arguments
    ---------
    source : str or Path
        A local folder in Hugging Face format or a hub id (looked up offline in the local cache).
    revision : str, optional
        Branch, tag or commit of a hub id.
    download : bool
        Fetch a hub id missing from the cache.
    device : str
        Where to decode (``cpu``, ``cuda``, ``cuda:1``).
    language : str, optional
        Whisper's language (a code, ``fi``, or a name, ``finnish``); None or ``auto``: Whisper
        detects it per recording. Ignored by CTC models and English-only Whisper models.
    task : str
        Whisper's task, one of :data:`WHISPER_TASKS`.
    max_segment_seconds : float, optional
        The longest piece of a CTC model (default :data:`CTC_MAX_SEGMENT_SECONDS`); Whisper windows
        its input itself.
    dtype : str
        The weights' precision, one of :data:`DTYPES` (half precision for a large model on a GPU).
    cache_dir : str, optional
        The Hugging Face hub cache (default ``HF_HUB_CACHE``).

    Returns
    -------
    HFASR
        Its ``options`` are the :data:`OPTION_KEYS` arguments as given here.

    Raises
    ------
    ModelNotFound
        The model is not available, or its config names no CTC or Whisper model.
    ValueError
        A task or dtype not known, or a model that does not load.
    """
    options = {"revision": revision, "language": language, "task": task,
               "max_segment_seconds": max_segment_seconds, "dtype": dtype}
    if task not in WHISPER_TASKS:
        raise ValueError(f"--task {task}: use one of {', '.join(WHISPER_TASKS)}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
    path, name, config, asr_kind = check_hf_asr(source, revision, download, cache_dir)
    snapshot = path.name if name.startswith(f"{source}@") else None
    try:
        if asr_kind == "whisper":
            model, feature_extractor, tokenizer = _load_whisper(path, config, dtype)
        else:
            model, feature_extractor, tokenizer = _load_ctc(path, config, dtype)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"ASR model {str(source)!r} ({path}) does not load as a {asr_kind} model: "
                         f"{' '.join(str(err).split())}" + refetch(str(source), HF_ASR)) from None
    model.to(device).eval()
    if asr_kind == "whisper":
        language, task = _whisper_prompt(model.generation_config, language, task, name)
        max_segment_seconds = None
    else:
        language, task = None, None
        max_segment_seconds = float(max_segment_seconds or CTC_MAX_SEGMENT_SECONDS)
    logger.info("ASR %s (%s) on %s", name, asr_kind, device)
    return HFASR(model, feature_extractor, tokenizer, asr_kind, source, name, path, snapshot or revision,
                 device, language, task, max_segment_seconds, dtype, options)


def _load_ctc(path, config, dtype):
    from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer

    model = AutoModelForCTC.from_pretrained(path, config=config, dtype=DTYPES[dtype], local_files_only=True)
    feature_extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    # The tokenizer alone, not AutoProcessor: a processor with a language model (pyctcdecode) would
    # need that package and decode by beam search; the tokenizer decodes the argmax greedily.
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, feature_extractor, tokenizer


def _load_whisper(path, config, dtype):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(path, config=config, dtype=DTYPES[dtype],
                                                            local_files_only=True)
    processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
    return model, processor.feature_extractor, processor.tokenizer


def _whisper_prompt(generation_config, language, task, name):
    """The ``language`` and ``task`` to pass to Whisper's ``generate`` (None: left to the model)."""
    if language in ("auto", ""):
        language = None
    if getattr(generation_config, "is_multilingual", True) is False:
        if language is not None or task != "transcribe":
            logger.warning("%s is an English-only Whisper model: language %s and task %s are not passed",
                           name, language, task)
        return None, None
    if language is not None and not hasattr(generation_config, "lang_to_id"):
        raise ValueError(f"{name}: its generation_config.json has no lang_to_id, so no language can be "
                         "chosen; pass --language auto")
    return language, task
