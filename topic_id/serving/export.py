"""Export a trained run as a self-contained model folder (``topic-id export RUN_DIR OUT_DIR``).

The folder loads offline with ``TopicIdentifier.from_hparams(source=OUT_DIR)`` and with SpeechBrain's
``foreign_class(source=OUT_DIR, pymodule_file="custom_interface.py", classname="TopicIdentifier")``,
from wherever it is moved. It holds::

    hyperparams.yaml        inference YAML: !includes the training YAML with the run's overrides
                            (paths rewritten), lists the modules and a Pretrainer over the *.ckpt,
                            sets ``chunk_seconds`` (longer recordings are encoded in chunks)
    <system>.yaml modules/  the training YAML and the modules/*.yaml it includes, unchanged (so the
                            inference model cannot drift from the trained one)
    <module>.ckpt           the run's best-checkpoint weights of its modules (normaliser included;
                            no optimizer, counter or scheduler)
    topics.txt              the label order
    text_encoder/           a stand-in BERT, copied; FinBERT is referenced (hub id or local path);
                            a fine-tuned encoder's weights are its text_model.ckpt (the
                            folder or hub id then gives only its config and tokenizer)
    ssl_encoder/            a stand-in speech encoder (the Wav2vec2 row's, or the front end of
                            features: ssl), copied (topic_id.serving.bundled); a real one is
                            referenced; frozen features are computed from the waveform (no cache)
    <asr>.yaml asr_*.ckpt   the ASR that turns audio into text for systems with a text branch, and
    asr/tokenizer/          its SentencePiece model (hyperparams.yaml also records its segment limit
                            of long-form decoding, asr_max_segment_seconds: a little over the
                            90th percentile of its training durations, read from its manifest
                            at export time)
    asr_model/              or, where a pretrained Hugging Face ASR wrote the system's text
                            (recipes/transcribe.py --asr-model), that model: a local folder is
                            copied, a hub id referenced at the commit it transcribed with;
                            hyperparams.yaml's hf_asr holds it with its settings (language, task,
                            segment limit, dtype)
    bow.ckpt                a bag-of-words row's fitted model (topic_id.models.bow), in place of
                            the module checkpoints
    custom_interface.py     for foreign_class
    export.json             what was exported from where; the file list checked before loading

Which ASR a text or hybrid system gets: ``--asr RUN`` when given; else the ASR that wrote the text
the system reads, by the record its writer left beside the manifests (``<data_folder>/<column>.json``
of its ``eval_text``, then ``train_text`` columns, then ``asr_words``; recipes/transcribe.py writes
it: our ASR run, e.g. the standalone ``asr`` row for ``needs=asr_words`` rows and for rows trained on
a transcribed corpus, the multi-task stage 1 for ``own_asr:<row>`` rows, or a Hugging Face ASR);
else an ``init_from`` run with ASR modules; else none (the model then classifies text only).
"""

import json
import logging
import re
import shutil
from pathlib import Path

import yaml

from corpus_tools.files import atomic_write, replace_dir, temporary_sibling
from topic_id.models.chunked_encoding import CHUNK_SECONDS
from topic_id.serving.bundled import YamlTag, bundle_ssl_encoder
from topic_id.training.run_folder import TOPICS, Run, is_run_folder

logger = logging.getLogger(__name__)

EXPORT_SPEC = "export.json"
ASR_PREFIX = "asr_"
ASR_TOKENIZER_DIR = "asr/tokenizer"
TEXT_ENCODER_DIR = "text_encoder"
FINETUNED_TEXT = "text_model"
"""The module of a text encoder trained with the head (hparams/text_finetune.yaml)."""
HF_ASR_DIR = "asr_model"
BOW_CKPT = "bow.ckpt"
_INCLUDE = re.compile(r"!include:(\S+)")
# Training-only objects of a system YAML: not built at inference (no folders created, no seeding).
_TRAINING_ONLY = ("checkpointer", "train_logger", "__set_seed")


class ExportError(ValueError):
    """A run cannot be exported, or a model folder cannot be loaded; the message says why."""


def text_columns(run):
    """The manifest columns whose writer transcribes audio for ``run``: its ``eval_text``, then
    ``train_text`` columns, then ``asr_words``; ``words`` (manual) left out.

    Example
    -------
    >>> text_columns({"eval_text": "words,hf_words", "train_text": "asr_words"})
    ['hf_words', 'asr_words']
    """
    columns = []
    for key in ("eval_text", "train_text"):
        for column in str(run.get(key) or "").split(","):
            if column.strip() and column.strip() != "words" and column.strip() not in columns:
                columns.append(column.strip())
    return columns + ["asr_words"] * ("asr_words" not in columns)


def find_asr(run, asr=None):
    """The ASR that turns audio into text for ``run`` (see the module docstring).

    Arguments
    ---------
    run : Run
        A system with a text branch.
    asr : str or Path, optional
        An explicit ASR run.

    Returns
    -------
    tuple
        ``(Run or None, checkpoint directory or None, Hugging Face record or None)``: our ASR run
        (and the checkpoint that transcribed), or the summary a Hugging Face ASR wrote
        (:func:`topic_id.training.hf_transcription.transcribe_with`, its path added as ``record``).
    """
    if asr is not None:
        return Run(asr, run.hparams_dir), None, None
    for column in text_columns(run):
        record = Path(run["data_folder"]) / f"{column}.json"
        if not record.is_file():
            continue
        entries = json.loads(record.read_text(encoding="utf-8"))
        if isinstance(entries.get("asr_model"), dict):
            return None, None, {**entries, "record": str(record)}
        entry = entries.get("test.csv") or next(iter(entries.values()), None)
        if isinstance(entry, dict) and entry.get("asr") and Path(entry["asr"]).is_dir():
            ckpt = Path(entry["checkpoint"])
            return Run(entry["asr"], run.hparams_dir), ckpt if ckpt.is_dir() else None, None
    init = run.get("init_from")
    if init and is_run_folder(init):
        from topic_id.training.transcription import DECODE_MODULES

        earlier = Run(init, run.hparams_dir)
        if all(name in earlier.modules for name in DECODE_MODULES):
            return earlier, None, None
    return None, None, None


def is_bow_run(run):
    """Whether ``run`` is a bag-of-words row (a scikit-learn model, no Brain); ExportError for one
    trained before its model was saved."""
    from topic_id.models.bow import MODEL_FILE

    if (run.dir / MODEL_FILE).is_file():
        return True
    if "trainer" in run.doc and "vectorizer" in run.doc:
        raise ExportError(f"{run.dir} holds no {MODEL_FILE}: it was trained before bag-of-words runs "
                          "saved their model; train it again (it takes seconds)")
    return False


def _hf_asr_block(record, out):
    """Bundle (a folder) or reference (a hub id, at its commit) a Hugging Face ASR; its YAML lines."""
    model = record["asr_model"]
    source, name = str(model.get("source")), str(model.get("name"))
    hub = bool(model.get("revision")) and name.startswith(f"{source}@")
    if hub:
        reference = source  # resolved offline from the Hugging Face cache, at this commit
    else:
        folder = Path(model.get("path") or source)
        if not (folder / "config.json").is_file():
            raise ExportError(f"{folder}, the ASR model that wrote {Path(record['record']).stem} "
                              f"(recorded in {record['record']}), is gone: put it back, or export "
                              "with --asr ASR_RUN")
        shutil.copytree(folder, out / HF_ASR_DIR)
        reference = HF_ASR_DIR
    try:  # the rate its feature extractor takes: audio is read at it before the model is loaded
        from transformers import AutoFeatureExtractor

        rate = int(AutoFeatureExtractor.from_pretrained(model.get("path") or source,
                                                        local_files_only=True).sampling_rate)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        rate = None
    settings = {"source": reference, "revision": model.get("revision") if hub else None, "sample_rate": rate,
                "type": model.get("type"), "language": model.get("language"), "task": model.get("task"),
                "max_segment_seconds": model.get("max_segment_seconds"),
                "dtype": model.get("dtype") or "float32",
                "text_normalisation": record.get("text_normalisation") or {}}
    lines = ["# The Hugging Face ASR that wrote this system's text (recipes/transcribe.py --asr-model),",
             "# with its settings: audio is transcribed by it, then normalised as that text was.",
             "hf_asr:", *[f"    {_yaml_line(k, v)}" for k, v in settings.items()], "asr: null", ""]
    info = {"hf_asr": settings, "name": name, "bundled": not hub, "record": record["record"],
            "wer": record.get("wer")}
    return lines, info


def _yaml_line(key, value):
    """``key: value`` as one line of YAML."""
    text = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.strip()[1:-1]


def _include_block(key, yaml_name, overrides):
    return [f"{key}: !include:{yaml_name}"] + [
        f"    {k}: {v}" if isinstance(v, YamlTag) else f"    {_yaml_line(k, v)}" for k, v in overrides.items()]


def _copy_yaml_tree(yaml_file, out, copied):
    """Copy a YAML and, recursively, the files it ``!include``s, keeping their relative layout."""
    yaml_file = Path(yaml_file)
    base = yaml_file.parent
    todo = [Path(yaml_file.name)]
    while todo:
        rel = todo.pop()
        src = base / rel
        if not src.is_file():
            raise ExportError(f"{src}, included by the system YAML, is missing")
        dst = out / rel
        text = src.read_text(encoding="utf-8")
        if rel in copied:
            if copied[rel] != text:
                raise ExportError(f"two different YAML files would be exported as {rel}")
            continue
        copied[rel] = text
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text, encoding="utf-8")
        todo += [rel.parent / name for name in _INCLUDE.findall(text)]
    return yaml_file.name


def _system_overrides(run, folder):
    """The run's overrides with paths rewritten for the export (``folder`` relative to it)."""
    out = dict(run.overrides)
    out.update({"data_folder": ".", "output_folder": folder})
    for key in ("init_from", "text_cache", "ssl_cache"):
        if key in run.doc:
            out[key] = None  # training-time inputs: stage transfer and the embedding/feature caches
    for key in _TRAINING_ONLY:
        out[key] = None
    return out


def export_run(run_dir, out_dir, asr=None, overwrite=False, hparams_dir=None):
    """Write the model folder of a finished run (see the module docstring).

    Arguments
    ---------
    run_dir : str or Path
        A run written by ``recipes/train.py`` with a topic head.
    out_dir : str or Path
        The folder to create (it must not exist, unless ``overwrite`` and it is an earlier export).
    asr : str or Path, optional
        The ASR run for a text or hybrid system (default: see :func:`find_asr`).
    overwrite : bool
        Replace an earlier export at ``out_dir``.
    hparams_dir : str or Path, optional
        Where to find the system YAMLs by name when the paths recorded at training time are gone
        (the checkout moved or was deleted): that checkout's ``hparams/`` folder.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from topic_id.models.piecewise_decoding import segment_limit
    from topic_id.training.transcription import DECODE_MODULES
    from topic_id.models.text_encoder import STANDIN_MARKER

    run = Run(run_dir, hparams_dir)
    if "head" not in run.modules and not is_bow_run(run):
        raise ExportError(f"{run.dir} has no topic head (modules: {run.modules}): nothing to export")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (overwrite and (out_dir / EXPORT_SPEC).is_file()):
            raise ExportError(f"{out_dir} exists and is not empty; choose a new folder (or "
                              "--overwrite an earlier export)")
    tmp = temporary_sibling(out_dir)
    tmp.mkdir(parents=True)
    try:
        info = _write_export(run, tmp, asr, DECODE_MODULES, STANDIN_MARKER, segment_limit)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported %s (%s) to %s", run.dir, info["inputs"], out_dir)
    return out_dir


def _write_export(run, out, asr, decode_modules, standin_marker, segment_limit):
    copied = {}
    system_yaml = _copy_yaml_tree(run.yaml, out, copied)
    bow = is_bow_run(run)
    if bow:
        from topic_id.models.bow import MODEL_FILE

        ckpt_dir, loadables = None, ["bow"]
        shutil.copyfile(run.dir / MODEL_FILE, out / BOW_CKPT)
    else:
        ckpt_dir, paramfiles = run.checkpoint()
        loadables = [name for name in run.modules if name in paramfiles]
        for name in loadables:
            shutil.copyfile(paramfiles[name], out / f"{name}.ckpt")
    shutil.copyfile(run.topics_file, out / TOPICS)

    overrides = _system_overrides(run, ".")
    finetuned = FINETUNED_TEXT in run.modules
    uses_text = "text_encoder" in run.doc or bow or finetuned
    uses_audio = "audio_encoder" in run.modules
    text_info = None
    if "text_encoder" in run.doc or finetuned:
        source = str(run.get("text_encoder_source", ""))
        bundled = bool(source) and (Path(source) / standin_marker).is_file()
        if bundled:
            # A stand-in is small and specific to its corpus: it travels with the model.
            shutil.copytree(source, out / TEXT_ENCODER_DIR)
            overrides["text_encoder_source"] = TEXT_ENCODER_DIR
        text_info = {"source": source, "bundled": bundled, "standin": bundled}
        if finetuned:
            # The fine-tuned weights are text_model.ckpt: the source gives only the architecture
            # and the tokenizer, and its pretrained weights are never loaded.
            overrides["text_encoder_pretrained"] = False
            text_info["weights"] = f"{FINETUNED_TEXT}.ckpt"
    ssl_info = bundle_ssl_encoder(run, out, overrides, standin_marker)

    asr_run, asr_ckpt, hf_record = find_asr(run, asr) if uses_text else (None, None, None)
    lines = [
        "# Inference hyperparameters of a topic-id run, written by `topic-id export`.",
        f"# Run: {run.dir}",
        "# Load: topic_id.serving.inference.TopicIdentifier.from_hparams(source=<this folder>), or",
        "# speechbrain.inference.interfaces.foreign_class(source=<this folder>,",
        '#     pymodule_file="custom_interface.py", classname="TopicIdentifier").',
        "# The system is its training YAML, included with the run's overrides; relative paths",
        "# below are relative to this folder.",
        "",
        *_include_block("system", system_yaml, overrides),
        "",
        "# Recordings longer than this (seconds) are encoded in chunks at inference, with bounded",
        "# memory (topic_id.models.chunked_encoding); shorter ones in one pass, as in training.",
        f"chunk_seconds: {CHUNK_SECONDS}",
        "",
    ]
    modules = {name: f"<system[modules][{name}]>" for name in run.modules}
    weights = {name: f"<system[modules][{name}]>" for name in loadables}
    if bow:
        lines += ["# The fitted bag-of-words model (scikit-learn), loaded from bow.ckpt.",
                  "bow: !new:topic_id.models.bow.BagOfWords", ""]
        modules, weights = {"bow": "<bow>"}, {"bow": "<bow>"}
    if uses_text:
        from data_prep.prepared import text_normalisation

        lines += ["# How the training text was normalised: text given to predict is normalised the same way.",
                  _yaml_line("text_normalisation", text_normalisation(run["data_folder"])), ""]
    asr_info = None
    if hf_record is not None:
        block, asr_info = _hf_asr_block(hf_record, out)
        lines += block
    elif asr_run is not None:
        missing = [n for n in decode_modules if n not in asr_run.modules]
        if missing:
            raise ExportError(f"the ASR run {asr_run.dir} has no {missing} modules")
        asr_yaml = _copy_yaml_tree(asr_run.yaml, out, copied)
        if asr_ckpt is None:
            asr_ckpt, asr_files = asr_run.checkpoint()
        else:
            asr_files = {p.stem: p for p in asr_ckpt.glob("*.ckpt")}
        for name in decode_modules:
            if name not in asr_files:
                raise ExportError(f"{asr_ckpt} has no {name}.ckpt")
            shutil.copyfile(asr_files[name], out / f"{ASR_PREFIX}{name}.ckpt")
            modules[ASR_PREFIX + name] = weights[ASR_PREFIX + name] = f"<asr[modules][{name}]>"
        tokenizer = Path(str(asr_run["tokenizer"]["model_dir"]))
        if not tokenizer.is_absolute():
            tokenizer = asr_run.dir / tokenizer
        models = sorted(tokenizer.glob("*.model"))
        if not models:
            raise ExportError(f"the ASR run's tokenizer ({tokenizer}/*.model) is missing")
        (out / ASR_TOKENIZER_DIR).mkdir(parents=True)
        for f in models + sorted(tokenizer.glob("*.vocab")):
            shutil.copyfile(f, out / ASR_TOKENIZER_DIR / f.name)
        max_segment_seconds = segment_limit(asr_run, str(asr_run.dir))
        lines += [
            "# The ASR that turns audio into this system's text, and its SentencePiece model.",
            *_include_block("asr", asr_yaml, _system_overrides(asr_run, "asr")),
            f"asr_tokenizer_dir: {ASR_TOKENIZER_DIR}",
            "# Longer recordings are transcribed in pieces of at most this many seconds (a little",
            "# over the 90th percentile of its training durations: topic_id.models.piecewise_decoding.segment_limit).",
            _yaml_line("asr_max_segment_seconds", max_segment_seconds),
            "",
        ]
        asr_info = {"run": str(asr_run.dir), "checkpoint": str(asr_ckpt), "yaml": asr_yaml,
                    "max_segment_seconds": max_segment_seconds}
    else:
        lines += ["asr: null", ""]

    lines.append("modules:")
    lines += [f"    {name}: !ref {ref}" for name, ref in modules.items()]
    lines += [
        "",
        "# Weights: <name>.ckpt in this folder (the Pretrainer's default_source).",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
    ]
    lines += [f"        {name}: !ref {ref}" for name, ref in weights.items()]
    (out / "hyperparams.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "custom_interface.py").write_text(CUSTOM_INTERFACE, encoding="utf-8")

    inputs = "+".join(k for k, used in (("audio", uses_audio), ("text", uses_text)) if used)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    info = {
        "format": 1,
        "run": str(run.dir),
        "system_yaml": system_yaml,
        "checkpoint": None if ckpt_dir is None else str(ckpt_dir),
        "selected_by": run.get("ckpt_select"),
        "inputs": inputs,
        "text_encoder": text_info,
        "ssl_encoder": ssl_info,
        "asr": asr_info,
        "chunk_seconds": CHUNK_SECONDS,
        "files": files + [EXPORT_SPEC],
    }
    with atomic_write(out / EXPORT_SPEC) as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
    return info


def check_export(folder):
    """Raise ExportError naming the first problem of a model folder (missing folder or file).

    Arguments
    ---------
    folder : str or Path
        A folder written by :func:`export_run`.

    Returns
    -------
    dict
        Its ``export.json``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"model folder {folder} does not exist")
    spec = folder / EXPORT_SPEC
    if not spec.is_file():
        what = "hyperparams.yaml" if not (folder / "hyperparams.yaml").is_file() else EXPORT_SPEC
        raise ExportError(f"{folder} is not an exported topic-id model (no {what}); "
                          "create one with: topic-id export RUN_DIR OUT_DIR")
    try:
        info = json.loads(spec.read_text(encoding="utf-8"))
        files = info["files"]
    except (ValueError, KeyError) as err:
        raise ExportError(f"{spec} is unreadable ({err}); export the run again") from None
    for name in files:
        if not (folder / name).is_file():
            raise ExportError(f"model folder {folder} is missing {name}; export the run again")
    return info


def is_run_dir(folder):
    """True for a training run folder (as opposed to an export)."""
    from topic_id.models.bow import MODEL_FILE

    trained = is_run_folder(folder, trained=True) or (
        is_run_folder(folder) and (Path(folder) / MODEL_FILE).is_file())
    return trained and not (Path(folder) / EXPORT_SPEC).is_file()


CUSTOM_INTERFACE = '''"""The interface of this exported topic-id model, for SpeechBrain's foreign_class:

    from speechbrain.inference.interfaces import foreign_class
    model = foreign_class(source="<this folder>", pymodule_file="custom_interface.py",
                          classname="TopicIdentifier")
    posteriors, index, labels = model.classify_file("recording.flac")

The class lives in the topic_id package, which also defines the modules hyperparams.yaml builds.
"""

from pathlib import Path

from topic_id.serving.bundled import loading_from
from topic_id.serving.inference import TopicIdentifier

# foreign_class imports this file just before it loads hyperparams.yaml: the models this folder
# carries (topic_id.serving.bundled) are read from here.
loading_from(Path(__file__).resolve().parent)

__all__ = ["TopicIdentifier"]
'''
