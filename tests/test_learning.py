"""Learning checks: every system family must fit a small fixed set, and must fail to when broken.

A table of numbers that runs but does not learn is not a result. Each family's YAML, at
the tiny profile's sizes, trains on 16 utterances of the tiny built-in corpus (two per topic) that
are also its dev and test set, so ``metrics.json``'s dev accuracy is the training-set fit after
checkpoint selection, through the whole real path: manifests, item pipelines, Brain, checkpoints.

The check can fail: the same run on a corpus whose training labels are deranged (every utterance
carries another topic; dev/test keep the true ones) must score far below the fit threshold, as would
any model whose predictions do not depend on the utterance-label pairing it was given (a data bug
that misaligns labels, a head that sees no input, an encoder that outputs a constant).
"""

import csv
import json

import pytest

from data_prep.prepared import read_manifest

pytestmark = pytest.mark.training

FIT = 0.9
"""Training-set accuracy a family must reach on the fixed set."""
BROKEN = 0.5
"""Accuracy a run with deranged training labels must stay under (chance: 0.125)."""
PER_TOPIC = 2

# (family, YAML, overrides): one entry per system family of recipes/systems.csv. The overrides give
# each small model the steps and learning rate to fit 16 utterances.
FAMILIES = [
    ("text", "hparams/text.yaml",
     ["--train_subset=all", "--train_text=words", "--eval_text=words", "--number_of_epochs=30",
      "--lr=0.02"]),
    ("text_finetune", "hparams/text_finetune.yaml",
     ["--train_subset=all", "--train_text=words", "--eval_text=words", "--number_of_epochs=8",
      "--lr=0.02", "--encoder_lr=0.002", "--warmup_ratio=0"]),
    ("bag_of_words", "hparams/bow.yaml",
     ["--train_subset=all", "--train_text=words", "--eval_text=words"]),
    ("audio_tdnn", "hparams/audio_tdnn.yaml", ["--number_of_epochs=25", "--lr=0.005"]),
    ("audio_crdnn", "hparams/audio_crdnn.yaml", ["--number_of_epochs=25", "--lr=0.005"]),
    ("emb_transfer_stage_a", "hparams/audio_crdnn_embtransfer.yaml",
     ["--number_of_epochs=25", "--lr=0.005"]),
    ("wav2vec2", "hparams/audio_wav2vec2.yaml",
     ["--number_of_epochs=25", "--train_hours=null", "--lr=0.01", "--lr_wav2vec2=0.005",
      "--head_norm=True"]),
    ("audio_text_bl", "hparams/hybrid_tdnn_blstm.yaml",
     ["--train_subset=all", "--number_of_epochs=25", "--lr=0.005"]),
    ("audio_text", "hparams/hybrid_crdnn.yaml",
     ["--train_subset=all", "--train_text=words", "--eval_text=words", "--number_of_epochs=25",
      "--lr=0.005"]),
    ("multitask_stage_1", "hparams/multitask.yaml",
     ["--train_subset=all", "--number_of_epochs=25", "--lr=0.005"]),
]


def _fit_set(tiny_corpus, out, derange):
    """A corpus whose train, dev and test splits are the same 16 transcribed training utterances."""
    rows = [r for r in read_manifest(tiny_corpus / "train.csv") if r["words"]]
    topics = (tiny_corpus / "topics.txt").read_text(encoding="utf-8").split()
    chosen = [r for t in topics for r in [r for r in rows if r["topic"] == t][:PER_TOPIC]]
    assert len(chosen) == PER_TOPIC * len(topics)
    out.mkdir(parents=True)
    for name in ("topics.txt",):
        (out / name).write_text((tiny_corpus / name).read_text(encoding="utf-8"), encoding="utf-8")
    for item in ("audio", "standin_bert", "standin_wav2vec2"):
        (out / item).symlink_to(tiny_corpus / item)
    fields = list(chosen[0])
    for split in ("train", "dev", "test"):
        split_rows = [dict(r, asr_words=r["words"], subset="transcribed" if split == "train" else "")
                      for r in chosen]
        if split == "train" and derange:
            # Shift the labels by one topic block: no utterance keeps its own topic.
            labels = [r["topic"] for r in split_rows]
            shift = PER_TOPIC
            for r, label in zip(split_rows, labels[shift:] + labels[:shift]):
                r["topic"] = label
        with open(out / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(split_rows)
    return out


@pytest.fixture(scope="module")
def fit_sets(tiny_corpus, tmp_path_factory):
    """``{False: the fixed set, True: the same with deranged training labels}``."""
    root = tmp_path_factory.mktemp("fit_sets")
    return {derange: _fit_set(tiny_corpus, root / f"derange_{derange}", derange)
            for derange in (False, True)}


def _accuracy(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["dev"]["accuracy"]


# The default run checks the fit of the five families that train in seconds and the deranged runs of
# the bag of words and the fine-tuned text encoder; the other fit checks (19-30 s each: emb transfer stage A, audio+text, multi-task
# stage 1, wav2vec2, audio CRDNN) and deranged runs (about 20 s each) take about 6 minutes together,
# and run with -m slow.
FIT_BY_DEFAULT = ("text", "text_finetune", "bag_of_words", "audio_tdnn", "audio_text_bl")
DERANGED_BY_DEFAULT = ("text_finetune", "bag_of_words")


def _params(default):
    return [pytest.param(*f, marks=() if f[0] in default else pytest.mark.slow) for f in FAMILIES]


@pytest.mark.parametrize("family,hparams,overrides", _params(FIT_BY_DEFAULT),
                         ids=[f[0] for f in FAMILIES])
def test_family_fits_a_small_fixed_set(family, hparams, overrides, fit_sets, train, tmp_path):
    run_dir = train(hparams, fit_sets[False], tmp_path / "fit", *overrides, "--seed=3")
    assert _accuracy(run_dir) >= FIT, f"{family} did not fit 16 utterances"


@pytest.mark.parametrize("family,hparams,overrides", _params(DERANGED_BY_DEFAULT),
                         ids=[f[0] for f in FAMILIES])
def test_the_check_fails_with_deranged_labels(family, hparams, overrides, fit_sets, train, tmp_path):
    run_dir = train(hparams, fit_sets[True], tmp_path / "broken", *overrides, "--seed=3")
    assert _accuracy(run_dir) < BROKEN, f"{family} scored on labels it was never shown"
