"""Scores and result files of a run: topic metrics, predictions, confusion plot, WER/CER.

Topic metrics follow the paper's evaluation (accuracy, micro-F1, UAR with scikit-learn) but are
computed over the fixed label order of the corpus, never over the labels a batch happens to
contain, and accept any number of samples, one included (docs/published_recipes.md, 'Final batch
of one'). Every file is written through
:func:`corpus_tools.files.atomic_write`, so a crash never leaves a half-written result.
"""

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from corpus_tools.files import atomic_write


def _as_list(values):
    """A plain list from a list, numpy array or torch tensor."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _as_labels(values, labels, what):
    """Map integer indices to ``labels`` when the labels are not integers themselves; check values."""
    values = [v.item() if isinstance(v, np.generic) else v for v in _as_list(values)]
    label_set = set(labels)
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    if ints and not all(isinstance(lab, (int, np.integer)) for lab in labels):
        if any(v < 0 or v >= len(labels) for v in values):
            raise ValueError(f"{what}: an index is outside 0..{len(labels) - 1}")
        return [labels[v] for v in values]
    unknown = sorted({str(v) for v in values if v not in label_set})
    if unknown:
        raise ValueError(f"{what}: labels {unknown} are not in the label list {list(labels)}")
    return list(values)


def topic_metrics(y_true, y_pred, labels):
    """Accuracy, micro-/macro-F1, UAR and confusion matrix of single-label topic predictions.

    Definitions (scikit-learn):

    - ``accuracy``: fraction correct. ``micro_f1`` equals it for single-label multi-class data (the
      paper's F1 column is therefore accuracy); it is reported anyway.
    - ``macro_f1``: unweighted mean of per-class F1 over the classes that occur in ``y_true`` or
      ``y_pred`` (scikit-learn's default class set; ``zero_division=0``).
    - ``uar``: unweighted average recall = ``balanced_accuracy_score``, the macro mean of per-class
      recall over the classes **present in y_true** (a class absent from the reference is skipped,
      not scored 0). This is the paper's UAR.
    - ``confusion``: counts, rows = true class, columns = predicted class, both in ``labels`` order
      (all classes, present or not).
    - ``per_class``: precision, recall, F1 and support of every label (0 where undefined).

    Arguments
    ---------
    y_true, y_pred : sequence
        Reference and predicted labels: elements of ``labels``, or integer indices into it.
    labels : sequence
        The fixed label order (``topics.txt``).

    Returns
    -------
    dict
        ``n, accuracy, micro_f1, macro_f1, uar`` (floats in [0, 1]), ``confusion`` (list of lists of
        int) and ``per_class`` (``{label: {precision, recall, f1, support}}``, keys as strings).

    Example
    -------
    >>> m = topic_metrics(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    >>> m["accuracy"], round(m["uar"], 4), m["confusion"]
    (0.5, 0.5, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    >>> topic_metrics([2], [2], ["a", "b", "c"])["confusion"][2]
    [0, 0, 1]
    """
    labels = _as_list(labels)
    y_true = _as_labels(y_true, labels, "y_true")
    y_pred = _as_labels(y_pred, labels, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} references but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no samples to score")
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": expected for small or skewed sets.
        warnings.simplefilter("ignore", UserWarning)
        uar = balanced_accuracy_score(y_true, y_pred)
    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "uar": float(uar),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
        "per_class": {
            str(lab): {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for lab, p, r, f, s in zip(labels, prec, rec, f1, support)
        },
    }


def write_predictions(path, ids, y_true, y_pred, posteriors, labels):
    """Write one row per utterance: ``ID, topic, predicted, p_<label>...`` (atomic).

    Arguments
    ---------
    path : str or Path
        The CSV file.
    ids : sequence of str
        Utterance IDs.
    y_true : sequence or None
        Reference topics (labels or indices); None or empty strings for unlabelled audio.
    y_pred : sequence
        Predicted topics (labels or indices).
    posteriors : array-like
        ``[N, len(labels)]`` class posteriors (probabilities), columns in ``labels`` order.
    labels : sequence of str
        The label order.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "predictions.csv"
    >>> write_predictions(p, ["u1"], ["a"], [1], [[0.25, 0.75]], ["a", "b"])
    >>> print(p.read_text().strip())
    ID,topic,predicted,p_a,p_b
    u1,a,b,0.250000,0.750000
    """
    labels = _as_list(labels)
    ids = _as_list(ids)
    posteriors = np.asarray(
        posteriors.detach().cpu() if hasattr(posteriors, "detach") else posteriors, dtype=float
    ).reshape(len(ids), -1)
    if posteriors.shape[1] != len(labels):
        raise ValueError(f"posteriors have {posteriors.shape[1]} columns for {len(labels)} labels")
    names = [str(lab) for lab in labels]

    def to_names(values, what):
        out = []
        for v in values:
            if v is None or (isinstance(v, str) and v == ""):
                out.append("")
            else:
                out.append(names[labels.index(_as_labels([v], labels, what)[0])])
        return out

    y_pred = to_names(_as_list(y_pred), "y_pred")
    y_true = [""] * len(ids) if y_true is None else to_names(_as_list(y_true), "y_true")
    if not len(ids) == len(y_true) == len(y_pred):
        raise ValueError(f"{len(ids)} ids, {len(y_true)} references, {len(y_pred)} predictions")
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "topic", "predicted"] + [f"p_{n}" for n in names])
        for uid, ref, hyp, post in zip(ids, y_true, y_pred, posteriors):
            writer.writerow([uid, ref, hyp] + [f"{p:.6f}" for p in post])


def plot_confusion(confusion, labels, path, title=""):
    """Save a confusion-matrix PNG: colours are row-normalised, cells show count and row share.

    Uses the Agg canvas directly, so it never touches the interactive pyplot backend.

    Arguments
    ---------
    confusion : array-like
        ``[C, C]`` counts, rows = true class (as from :func:`topic_metrics`).
    labels : sequence of str
        Class names in row order.
    path : str or Path
        The PNG file (written atomically).
    title : str
        Figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(labels)
    size = max(4.0, 0.8 * n + 2.0)
    fig = Figure(figsize=(size, size * 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), [str(lab) for lab in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(lab) for lab in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            colour = "white" if share[i, j] > 0.5 else "black"
            text = f"{int(counts[i, j])}\n{100 * share[i, j]:.0f}%"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def _words(seq):
    return seq.split() if isinstance(seq, str) else [str(w) for w in seq]


def error_rates(refs, hyps):
    """Word and character error rates, in percent, with SpeechBrain's ``ErrorRateStats``.

    Corpus-level rates: total edits over total reference tokens. Whitespace is normalised (runs of
    spaces collapse, leading/trailing dropped). The CER is computed on the characters of the words
    joined by single spaces, a space counting as a character (as in SpeechBrain's ASR recipes,
    ``split_tokens=True``), so a missing word boundary costs one edit.

    Arguments
    ---------
    refs, hyps : sequence
        Reference and hypothesis transcripts, each a string or a list of words, aligned by position.

    Returns
    -------
    dict
        ``{"wer": float, "cer": float}``; 0 when the references hold no token at all.

    Example
    -------
    >>> r = error_rates(["kissa istuu puussa"], ["kissa istui puussa"])
    >>> round(r["wer"], 2), round(r["cer"], 2)
    (33.33, 5.56)
    """
    from speechbrain.utils.metric_stats import ErrorRateStats

    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no utterances to score")
    ids = [str(i) for i in range(len(refs))]
    ref_words = [_words(r) for r in refs]
    hyp_words = [_words(h) for h in hyps]
    wer = ErrorRateStats()
    wer.append(ids, hyp_words, ref_words)
    cer = ErrorRateStats(split_tokens=True, space_token=" ")
    cer.append(ids, hyp_words, ref_words)
    return {"wer": float(wer.summarize("error_rate")), "cer": float(cer.summarize("error_rate"))}


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "tolist"):  # torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _finite(obj):
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path, obj):
    """Write ``obj`` as indented UTF-8 JSON, atomically (numpy/torch values converted, NaN → null).

    Arguments
    ---------
    path : str or Path
        The file.
    obj : object
        JSON-serialisable data.
    """
    text = json.dumps(
        _finite(json.loads(json.dumps(obj, default=_json_default))),
        indent=2,
        ensure_ascii=False,
    )
    with atomic_write(path) as f:
        f.write(text + "\n")
