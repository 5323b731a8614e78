#!/usr/bin/env python3
"""The one trainer of every system.

    python recipes/train.py hparams/<system>.yaml --data_folder=DIR --output_folder=DIR \
        [--profile=demo] [--any_top_level_key=value]

The YAML names its Brain class (``brain_class``), or a ``trainer`` function for a model that is
not a Brain (the bag-of-words baseline, hparams/bow.yaml), which fits and writes the outputs of
every run itself after the set-up all runs share (folder, logs, label order). A second run of
the same command resumes from the last checkpoint; after a finished run it goes straight to
evaluation. Under ``torchrun --nproc_per_node=N`` preparation and file writes happen on the main
process only.
Outputs: ``hyperparams.yaml run.json log.txt save/ metrics.json predictions.csv confusion.png``
(the run folder's layout: topic_id/training/run_folder.py). ``hyperparams.yaml`` is the record of
what trained, every override applied, ``n_topics``, ``text_dim`` and ``wav2vec2_dim`` included
where they were read from the corpus and the models (logged once per run).
"""

import logging
import shutil
import sys
from pathlib import Path

import speechbrain as sb
import transformers
from hyperpyyaml import load_hyperpyyaml

from topic_id.training import dataio

from topic_id.training import transfer
from topic_id.training.base import selection
from topic_id.config.checks import check_config
from topic_id.errors import ConfigError, exit_with
from topic_id.config.overrides import resolve_overrides, split_profile
from topic_id.training.run_folder import write_run_record

logger = logging.getLogger(__name__)


def save_transferred(hparams):
    """Make the transferred weights this run's checkpoint (an evaluation-only row).

    A row with ``--number_of_epochs=0`` and ``init_from`` evaluates another row's model under other
    settings: audio+text with ASR test text is audio+text's model fed ``asr_words`` at dev/test,
    so the two rows differ only in the test text (recipes/systems.csv). Every trainable module must
    be transferred, or part of the evaluated model would be a random initialisation. The checkpoint
    keeps the source's selection scores, so evaluation and ``topic-id export`` find it
    (:func:`load` has checked that every trainable module is transferred).
    """
    source = transfer.best_checkpoint(hparams["init_from"], hparams["init_select"])
    sb.utils.distributed.run_on_main(hparams["checkpointer"].save_checkpoint,
                                     kwargs={"meta": dict(source.meta)})


def main(argv=None):
    """Train, select the best checkpoint on dev, evaluate on dev and test, write the outputs.

    A configuration problem (:class:`~topic_id.errors.ConfigError`: an unknown key or option value,
    a text column the corpus lacks, a missing earlier stage) stops the run before anything is
    written, as one ``error:`` line and exit status 2.
    """
    try:
        run(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as err:
        exit_with(err)


def _quiet_torchvision(record):
    # SpeechBrain's train_logger warns at import that torchvision (which we do not use: figures are
    # matplotlib's) is missing; on stderr it would break the one-line error of a config problem.
    return not str(record.msg).startswith("torchvision is not available")


def _remove_empty_dirs(folder):
    """Remove ``folder`` if it holds nothing but empty folders (what loading the YAML creates)."""
    folder = Path(folder)
    if folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        shutil.rmtree(folder)


def load(argv):
    """``(hparams_file, run_opts, overrides, derived, hparams)`` from train.py's arguments, checked.

    ``derived`` is ``{key: where it was read}`` of the keys the corpus and the models fixed
    (:func:`topic_id.config.overrides.derived_keys`).

    Nothing is left on disk when a check fails: the folders the YAML's checkpointer creates on
    loading are removed again if they are empty.
    """
    # --profile is ours; taken out first, as SpeechBrain's parser would read it as --profile_training.
    profile, argv = split_profile(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if not Path(hparams_file).is_file():
        raise ConfigError(f"{hparams_file} does not exist: give a system YAML, e.g. hparams/text.yaml")
    overrides, derived = resolve_overrides(hparams_file, overrides, profile, with_derived=True)
    logging.getLogger("speechbrain.utils.train_logger").addFilter(_quiet_torchvision)
    # transformers' "Loading weights" bar: a frozen encoder loads in a second, and the bar would
    # sit on stderr above a configuration error.
    transformers.utils.logging.disable_progress_bar()
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    try:
        check_loaded(hparams)
    except ConfigError:
        _remove_empty_dirs(hparams["output_folder"])
        raise
    return hparams_file, run_opts, overrides, derived, hparams


def _takes_units(hparams):
    """Whether this run starts its ASR decoder from another run, whose units it must then use."""
    return "tokenizer" in hparams and "embedding" in hparams.get("init_modules", ())


def check_loaded(hparams):
    """:func:`topic_id.config.checks.check_config`, the label count, and the stage a run starts from."""
    check_config(hparams)
    labels_file = Path(hparams["data_folder"]) / "topics.txt"
    n_labels = len(dataio.label_encoder(hparams["data_folder"]))
    if "n_topics" in hparams and n_labels != hparams["n_topics"]:
        raise ConfigError(f"{labels_file} lists {n_labels} topics but n_topics is {hparams['n_topics']}; "
                          "drop the --n_topics override or prepare the corpus again")
    if hparams.get("warm_start_asr") and not hparams.get("init_from"):
        raise ConfigError("warm_start_asr starts this stage from a trained ASR: give its run folder as "
                          "--init_from=<results/asr/SEED>, or set --warm_start_asr=False")
    if hparams.get("init_from") and hparams["checkpointer"].find_checkpoint() is None:
        transfer.source_checkpoint(hparams["init_from"], hparams["checkpointer"].recoverables,
                                   hparams["init_modules"], hparams["init_select"], labels_file=labels_file)
        if _takes_units(hparams):
            transfer.asr_units(hparams["init_from"], hparams["tokenizer"])
        if hparams["epoch_counter"].limit == 0:
            trainable = {name for name, module in hparams["modules"].items()
                         if any(p.requires_grad for p in module.parameters())}
            missing = sorted(trainable - set(hparams["init_modules"]))
            if missing:
                raise ConfigError(f"number_of_epochs=0 evaluates the init_from model, but init_modules "
                                  f"leaves {missing} untransferred")


def run(argv):
    """:func:`main` without the error handling."""
    hparams_file, run_opts, overrides, derived, hparams = load(argv)
    # Joins the process group under torchrun (a no-op in a plain run).
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
        save_env_desc=False,  # pip freeze in a subprocess, ~2 s a run: run.json holds the versions
    )
    # SpeechBrain logs everything at DEBUG into log.txt; matplotlib's font search (confusion.png)
    # would add some 200 lines of it to every run's log.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    output = Path(hparams["output_folder"])
    for key, origin in derived.items():
        logger.info("%s: %s, read from %s (an override of %s wins)", key, hparams[key], origin, key)
    # The system YAML and override keys, for `topic-id export`; the environment, for reports.
    device = run_opts.get("device") or sb.utils.distributed.infer_device()
    sb.utils.distributed.run_on_main(write_run_record, args=[output, hparams_file, overrides, derived, device])
    labels_file = Path(hparams["data_folder"]) / "topics.txt"
    labels = dataio.label_encoder(hparams["data_folder"])
    # The run keeps its own copy of the label order, checked by later stages, so an
    # inherited classifier's rows keep their topics.
    sb.utils.distributed.run_on_main(shutil.copyfile, args=[labels_file, output / "topics.txt"])
    if "trainer" in hparams:
        sb.utils.distributed.run_on_main(hparams["trainer"], args=[hparams, labels])
        return
    if dataio.text_encoder_of(hparams) is not None:
        # The frozen encoder runs once, on the main process, before any dataloader exists:
        # not once per utterance per epoch, and never inside a loader worker.
        sb.utils.distributed.run_on_main(dataio.precompute_texts, args=[hparams])
    fresh_transfer = bool(hparams.get("init_from")) and hparams["checkpointer"].find_checkpoint() is None
    if fresh_transfer and _takes_units(hparams):
        sb.utils.distributed.run_on_main(transfer.take_units, args=[hparams["init_from"], hparams["tokenizer"]])
    # A frozen SSL front end computes the features it caches here, on the run's device.
    datasets = dataio.dataio_prepare(hparams, labels, device=device)
    # Fixed-size batches, or dynamic ones when the YAML (or the paper profile) says so.
    loaders = dataio.loader_kwargs(hparams, datasets)

    brain = hparams["brain_class"](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    transferred = False
    if fresh_transfer:
        # A fresh later stage starts from the earlier stage's best checkpoint with its own optimizer
        # and epoch counter (docs/published_recipes.md, 'Stage transfer through a shared output
        # folder'); a restarted one resumes its own checkpoints instead.
        transfer.init_from(
            hparams["init_from"],
            hparams["checkpointer"].recoverables,
            hparams["init_modules"],
            hparams["init_select"],
            labels_file=labels_file,
        )
        transferred = True

    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["dev"],
        train_loader_kwargs=loaders["train"],
        valid_loader_kwargs=loaders["dev"],
    )
    if transferred and hparams["epoch_counter"].limit == 0:
        # After fit, so that the checkpoint holds the optimizer fit() registered, as every other does.
        save_transferred(hparams)
    results = {}
    for split in ("dev", "test"):
        brain.evaluate(
            datasets[split],
            test_loader_kwargs=loaders[split],
            **selection(hparams["ckpt_select"]),
        )
        results[split] = brain.eval_result
    sb.utils.distributed.run_on_main(brain.write_outputs, args=[results, labels])


if __name__ == "__main__":
    main()
