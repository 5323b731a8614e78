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
    text_encoder/           a stand-in BERT, copied; FinBERT is referenced (hub id or local path)
    <asr>.yaml asr_*.ckpt   the ASR that turns audio into text for systems with a text branch, and
    asr/tokenizer/          its SentencePiece model (hyperparams.yaml also records its segment limit
                            of long-form decoding, asr_max_segment_seconds: a little over the
                            90th percentile of its training durations, read from its manifest
                            at export time)
    custom_interface.py     for foreign_class
    export.json             what was exported from where; the file list checked before loading

Which ASR a text or hybrid system gets: ``--asr RUN`` when given; else the run that transcribed the
system's manifests (``<data_folder>/asr_words.json``, written by recipes/transcribe.py: the standalone
``asr`` row for ``needs=asr_words`` rows and for rows trained on a transcribed corpus, the multi-task
stage 1 for ``own_asr:<row>`` rows); else an ``init_from`` run with ASR modules; else none (the
model then classifies text only).
"""

import json
import logging
import re
import shutil
from pathlib import Path

import yaml

from corpus_tools.files import atomic_write, replace_dir, temporary_sibling
from topic_id.models.chunked_encoding import CHUNK_SECONDS
from topic_id.training.run_folder import TOPICS, Run, is_run_folder

logger = logging.getLogger(__name__)

EXPORT_SPEC = "export.json"
ASR_PREFIX = "asr_"
ASR_TOKENIZER_DIR = "asr/tokenizer"
TEXT_ENCODER_DIR = "text_encoder"
_INCLUDE = re.compile(r"!include:(\S+)")
# Training-only objects of a system YAML: not built at inference (no folders created, no seeding).
_TRAINING_ONLY = ("checkpointer", "train_logger", "__set_seed")


class ExportError(ValueError):
    """A run cannot be exported, or a model folder cannot be loaded; the message says why."""


def find_asr(run, asr=None):
    """The ASR run (and checkpoint) that turns audio into text for ``run``, or ``(None, None)``.

    Arguments
    ---------
    run : Run
        A system with a text branch.
    asr : str or Path, optional
        An explicit ASR run.

    Returns
    -------
    tuple
        ``(Run or None, checkpoint directory or None)``.
    """
    if asr is not None:
        return Run(asr, run.hparams_dir), None
    record = Path(run["data_folder"]) / "asr_words.json"
    if record.is_file():
        entries = json.loads(record.read_text(encoding="utf-8"))
        entry = entries.get("test.csv") or next(iter(entries.values()), None)
        # A Hugging Face ASR's summary (recipes/transcribe.py --asr-model) names no run ("asr").
        if entry and entry.get("asr") and Path(entry["asr"]).is_dir():
            ckpt = Path(entry["checkpoint"])
            return Run(entry["asr"], run.hparams_dir), ckpt if ckpt.is_dir() else None
    init = run.get("init_from")
    if init and is_run_folder(init):
        from topic_id.training.transcription import DECODE_MODULES

        earlier = Run(init, run.hparams_dir)
        if all(name in earlier.modules for name in DECODE_MODULES):
            return earlier, None
    return None, None


def _yaml_line(key, value):
    """``key: value`` as one line of YAML."""
    text = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.strip()[1:-1]


def _include_block(key, yaml_name, overrides):
    return [f"{key}: !include:{yaml_name}"] + [f"    {_yaml_line(k, v)}" for k, v in overrides.items()]


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
    for key in ("init_from", "text_cache"):
        if key in run.doc:
            out[key] = None  # training-time inputs: stage transfer and the embedding cache
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
    if "head" not in run.modules:
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
    ckpt_dir, paramfiles = run.checkpoint()
    loadables = [name for name in run.modules if name in paramfiles]
    for name in loadables:
        shutil.copyfile(paramfiles[name], out / f"{name}.ckpt")
    shutil.copyfile(run.topics_file, out / TOPICS)

    overrides = _system_overrides(run, ".")
    uses_text = "text_encoder" in run.doc
    uses_audio = "audio_encoder" in run.modules
    text_info = None
    if uses_text:
        source = str(run.get("text_encoder_source", ""))
        bundled = bool(source) and (Path(source) / standin_marker).is_file()
        if bundled:
            # A stand-in is small and specific to its corpus: it travels with the model.
            shutil.copytree(source, out / TEXT_ENCODER_DIR)
            overrides["text_encoder_source"] = TEXT_ENCODER_DIR
        text_info = {"source": source, "bundled": bundled, "standin": bundled}

    asr_run, asr_ckpt = find_asr(run, asr) if uses_text else (None, None)
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
    asr_info = None
    if asr_run is not None:
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
        "checkpoint": str(ckpt_dir),
        "selected_by": run["ckpt_select"],
        "inputs": inputs,
        "text_encoder": text_info,
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
    return is_run_folder(folder, trained=True) and not (Path(folder) / EXPORT_SPEC).is_file()


CUSTOM_INTERFACE = '''"""The interface of this exported topic-id model, for SpeechBrain's foreign_class:

    from speechbrain.inference.interfaces import foreign_class
    model = foreign_class(source="<this folder>", pymodule_file="custom_interface.py",
                          classname="TopicIdentifier")
    posteriors, index, labels = model.classify_file("recording.flac")

The class lives in the topic_id package, which also defines the modules hyperparams.yaml builds.
"""

from topic_id.serving.inference import TopicIdentifier

__all__ = ["TopicIdentifier"]
'''
