"""Bag-of-words baseline: word counts or TF-IDF -> logistic regression (scikit-learn).

Not a system of the paper: a calibration row of ours beside its text rows (registry rows
``bow_man`` and ``bow_asr``, ``hparams/bow.yaml``). It reads the same manifest columns as the
text systems (``train_subset``, ``train_text``, ``eval_text``: :func:`topic_id.training.dataio.read_split`
and :func:`topic_id.training.dataio.pick_text`) and writes the outputs every run writes, so that
``topic-id report`` puts it into Table I like any row. ``recipes/train.py`` calls :func:`train`
when the YAML names it as its ``trainer``.

The fitted model is saved in the run folder (:data:`MODEL_FILE`, scikit-learn's own persistence
through joblib, with the label order), so that ``topic-id export`` makes it a model folder like any
other: :class:`BagOfWords` is the module the export's Pretrainer loads it into, and
:class:`BagOfWordsBrain` what :class:`topic_id.serving.inference.TopicIdentifier` classifies with.
Like any pickle, load only a model folder you trust.

The model is deterministic: the L-BFGS solver of the logistic regression draws no random numbers,
so every seed of a row gives the same numbers (std 0 in Table I). The same model scores the
transcripts of the built-in corpus when it is prepared (``bow_logreg`` of its ``summary.json``,
:func:`data_prep.demo_corpus.bow_baseline`).
"""

import logging
from pathlib import Path

import numpy as np
import torch
from speechbrain.utils.checkpoints import (mark_as_loader, mark_as_saver, mark_as_transfer,
                                          register_checkpoint_hooks)

from corpus_tools.text_classifier import fit_model
from topic_id.training import metrics
from topic_id.training.hf_transcription import text_authors

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
MODEL_FILE = "bow_model.joblib"
"""The fitted model in a run folder: ``{"model": Pipeline, "labels": [...], "sklearn": version}``."""


def posteriors(model, texts, labels):
    """Class posteriors ``[N, len(labels)]`` in the given label order.

    A label the model never saw in training gets probability 0 (the logistic regression only
    knows its training classes).

    Arguments
    ---------
    model : sklearn.pipeline.Pipeline
        From :func:`fit_model`.
    texts : sequence of str
        Texts to classify (an empty text gets the class prior the intercepts learnt).
    labels : sequence of str
        The label order (``topics.txt``).

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> model = fit_model(["kissa", "auto"], ["b", "c"])
    >>> p = posteriors(model, ["kissa"], ["a", "b", "c"])
    >>> float(p[0, 0]), bool(p[0, 1] > p[0, 2]), round(float(p.sum()), 6)
    (0.0, True, 1.0)
    """
    labels = list(labels)
    unknown = sorted(set(model.classes_) - set(labels))
    if unknown:
        raise ValueError(f"the model knows topics {unknown} that the label list {labels} lacks")
    out = np.zeros((len(texts), len(labels)))
    out[:, [labels.index(c) for c in model.classes_]] = model.predict_proba(list(texts))
    return out


def save_model(model, labels, path):
    """Write a fitted model and its label order (joblib, as scikit-learn documents for persistence)."""
    import joblib
    import sklearn

    joblib.dump({"model": model, "labels": list(labels), "sklearn": sklearn.__version__}, path)


def load_model(path):
    """``(model, labels)`` of a :func:`save_model` file; scikit-learn warns when its version differs."""
    import joblib
    import sklearn

    saved = joblib.load(path)
    if saved.get("sklearn") != sklearn.__version__:
        logger.warning("%s was saved by scikit-learn %s, this is %s: if its posteriors look wrong, "
                       "train the row again", path, saved.get("sklearn"), sklearn.__version__)
    return saved["model"], saved["labels"]


@register_checkpoint_hooks
class BagOfWords(torch.nn.Module):
    """A fitted bag-of-words model as a module: what an export's Pretrainer loads (``bow.ckpt``).

    It has no parameters; its checkpoint is the :func:`save_model` file. Called on texts it gives
    the log posteriors ``[B, len(labels)]`` in its label order (``topics.txt``).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "bow.ckpt"
    >>> save_model(fit_model(["kissa", "auto"], ["b", "c"]), ["a", "b", "c"], path)
    >>> module = BagOfWords()
    >>> module._load(path)
    >>> module(["kissa"]).exp().argmax(-1).tolist(), module.labels
    ([1], ['a', 'b', 'c'])
    """

    def __init__(self):
        super().__init__()
        self.model, self.labels = None, None

    def forward(self, texts):
        if self.model is None:
            raise RuntimeError("no bag-of-words model loaded (BagOfWords._load)")
        probs = torch.from_numpy(posteriors(self.model, texts, self.labels)).float()
        return probs.log()  # a topic never seen in training: probability 0, log -inf

    @mark_as_saver
    def _save(self, path):
        save_model(self.model, self.labels, path)

    @mark_as_transfer
    def _transfer(self, path):
        self.model, self.labels = load_model(path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        self._transfer(path)


class BagOfWordsBrain:
    """The two calls :class:`topic_id.serving.inference.TopicIdentifier` makes of a system's Brain
    (``embed``, then ``classify``), for a bag-of-words model: texts in, log posteriors out."""

    long_input = None  # text only: nothing to encode in chunks

    def __init__(self, module):
        self.module = module

    def embed(self, batch, stage=None):
        return {"texts": list(batch.texts)}

    def classify(self, outputs):
        return {"logprobs": self.module(outputs["texts"])}


def n_weights(model):
    """The logistic regression's parameter count: weights plus intercepts.

    Example
    -------
    >>> n_weights(fit_model(["kissa koira", "auto tie", "vene"], ["a", "b", "c"]))  # 5 words x 3 + 3
    18
    """
    logreg = model.named_steps["logreg"]
    return int(logreg.coef_.size + logreg.intercept_.size)


def describe(hparams):
    """The text-encoder name Table I shows for a bag-of-words run.

    Example
    -------
    >>> describe({"vectorizer": "tfidf", "ngram_range": [1, 2], "min_df": 2})
    'bag of words (scikit-learn tfidf, n-grams 1-2, min_df 2)'
    """
    low, high = hparams["ngram_range"]
    return (f"bag of words (scikit-learn {hparams['vectorizer']}, n-grams {low}-{high}, "
            f"min_df {hparams['min_df']})")


def read_texts(hparams, split, labels):
    """IDs, topics and texts of one split, with the text column the system reads there.

    Arguments
    ---------
    hparams : dict
        Keys read: those of :func:`topic_id.training.dataio.read_split` (``train_subset`` included), and
        ``train_text`` (train) or ``eval_text`` (dev, test).
    split : str
        ``train``, ``dev`` or ``test``.
    labels : sequence of str
        The label order; a topic outside it is an error naming the manifest.

    Returns
    -------
    (list, list, list)
        IDs, topics, texts (empty where the row has no text in the column).
    """
    from topic_id.training import dataio

    column = hparams["train_text"] if split == "train" else hparams["eval_text"]
    dataset = dataio.read_split(hparams, split)
    keys = ["id", "topic"] + [c for c in dataio.text_columns(column) if c not in ("id", "topic")]
    with dataset.output_keys_as(keys):
        rows = [dict(item) for item in dataset]
    unknown = sorted({r["topic"] for r in rows} - set(labels))
    if unknown:
        raise ValueError(f"{hparams[f'{split}_csv']}: topics {unknown} are not in topics.txt {list(labels)}")
    return ([r["id"] for r in rows], [r["topic"] for r in rows],
            [dataio.pick_text(r, column) for r in rows])


def _nll(probs, true_index):
    """Mean negative log posterior of the true class (no label smoothing, unlike the Brains)."""
    picked = probs[np.arange(len(true_index)), true_index]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def train(hparams, labels):
    """Fit on the training split, score train, dev and test, write the run's outputs.

    Called by ``recipes/train.py`` (main process) after it has written ``hyperparams.yaml``,
    ``log.txt``, ``run.json`` and ``topics.txt``. Writes ``metrics.json`` (the keys of
    every run, plus ``train`` scores, ``vocabulary`` and ``train_rows``), ``predictions.csv`` (test),
    ``predictions_dev.csv``, ``confusion.png`` and the fitted model (:data:`MODEL_FILE`, what
    ``topic-id export`` takes). No ``embeddings_*.pt``: the model's input is a sparse
    vocabulary-sized vector, not an utterance embedding. Nothing is checkpointed: fitting takes
    seconds, so a second run simply fits again (to the same model).

    Arguments
    ---------
    hparams : dict
        Loaded ``hparams/bow.yaml``. Keys read: ``output_folder``, ``vectorizer``,
        ``ngram_range``, ``min_df``, ``C``, ``max_iter`` and those of :func:`read_texts`.
    labels : speechbrain.dataio.encoder.CategoricalEncoder
        The label order.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    out = Path(hparams["output_folder"])
    names = [labels.ind2lab[i] for i in range(len(labels))]
    data = {split: read_texts(hparams, split, names) for split in SPLITS}
    _, topics, texts = data["train"]
    keep = [i for i, text in enumerate(texts) if text]
    if not keep:
        raise ValueError(f"train: no row has text in {hparams['train_text']!r}; for asr_words run "
                         "recipes/transcribe.py first, or choose another train_text")
    if len(keep) < len(texts):
        logger.warning("train: %d of %d rows have no text in %r and are left out", len(texts) - len(keep),
                       len(texts), hparams["train_text"])
    model = fit_model([texts[i] for i in keep], [topics[i] for i in keep], vectorizer=hparams["vectorizer"],
                      ngram_range=hparams["ngram_range"], min_df=hparams["min_df"], C=hparams["C"],
                      max_iter=hparams["max_iter"])
    save_model(model, names, out / MODEL_FILE)
    summary = {}
    for split, (ids, topics, texts) in data.items():
        if split == "train":
            ids, topics, texts = ([values[i] for i in keep] for values in (ids, topics, texts))
        elif not all(texts):
            # Kept and scored (the model falls back on its intercepts), as the text systems do.
            logger.warning("%s: %d of %d rows have no text in %r", split, texts.count(""), len(texts),
                           hparams["eval_text"])
        probs = posteriors(model, texts, names)
        predicted = [names[i] for i in probs.argmax(axis=1)]
        summary[split] = metrics.topic_metrics(topics, predicted, names)
        summary[split]["loss"] = _nll(probs, [names.index(t) for t in topics])
        logger.info("%s: %d rows, micro-F1 %.4f", split, len(ids), summary[split]["micro_f1"])
        if split != "train":
            name = "predictions.csv" if split == "test" else f"predictions_{split}.csv"
            metrics.write_predictions(out / name, ids, topics, predicted, probs, names)
    metrics.plot_confusion(summary["test"]["confusion"], names, out / "confusion.png",
                           title=f"{out.name} (test)")
    vectorizer = model.named_steps["vectorizer"]
    summary.update(params=n_weights(model), trainable_params=n_weights(model),
                   module_params={"logistic_regression": n_weights(model)},
                   text_encoder=describe(hparams), audio_encoder=None, labels=names,
                   text_asr=text_authors(hparams["data_folder"], hparams["train_text"], hparams["eval_text"]),
                   vocabulary=len(vectorizer.vocabulary_), train_rows=len(keep))
    metrics.write_json(out / "metrics.json", summary)
    return summary
