"""topic_id.training.metrics: topic scores against scikit-learn, result files, WER/CER."""

import csv
import json
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from topic_id.training import metrics

LABELS = ["Media skills", "Nature", "Health", "Food"]


def test_known_confusion_matches_sklearn():
    # rows = true, columns = predicted
    confusion = np.array([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 4, 0], [1, 0, 1, 2]])
    y_true, y_pred = [], []
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            y_true += [LABELS[i]] * n
            y_pred += [LABELS[j]] * n
    m = metrics.topic_metrics(y_true, y_pred, LABELS)
    assert m["confusion"] == confusion.tolist()
    assert m["n"] == confusion.sum()
    assert m["accuracy"] == pytest.approx(14 / 20)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert m["micro_f1"] == pytest.approx(m["accuracy"])  # single-label: micro-F1 is accuracy
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["uar"] == pytest.approx((5 / 6 + 3 / 6 + 4 / 4 + 2 / 4) / 4)
    assert m["per_class"]["Health"] == {
        "precision": pytest.approx(4 / 6),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 4,
    }


def test_indices_and_integer_labels():
    by_name = metrics.topic_metrics(["Nature", "Food"], ["Nature", "Nature"], LABELS)
    by_index = metrics.topic_metrics([1, 3], [1, 1], LABELS)
    assert by_name == by_index
    ints = metrics.topic_metrics([1, 3], [1, 1], list(range(4)))  # as the Brain calls it
    assert ints["confusion"] == by_name["confusion"] and ints["uar"] == by_name["uar"]
    assert list(ints["per_class"]) == ["0", "1", "2", "3"]
    assert json.loads(json.dumps(ints)) == ints
    tensors = metrics.topic_metrics(torch.tensor([1, 3]), np.array([1, 1]), list(range(4)))
    assert tensors == ints


def test_single_sample():
    m = metrics.topic_metrics([3], [3], list(range(8)))
    assert (m["accuracy"], m["micro_f1"], m["macro_f1"], m["uar"]) == (1.0, 1.0, 1.0, 1.0)
    assert len(m["confusion"]) == 8 and m["confusion"][3][3] == 1
    wrong = metrics.topic_metrics([np.int64(3)], [np.int64(5)], list(range(8)))
    assert wrong["accuracy"] == 0.0 and wrong["uar"] == 0.0 and wrong["confusion"][3][5] == 1


def test_absent_classes():
    y_true = ["Nature", "Nature", "Health", "Media skills"]
    y_pred = ["Nature", "Health", "Health", "Health"]  # Media skills never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = metrics.topic_metrics(y_true, y_pred, LABELS)
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["uar"] == pytest.approx((1 / 2 + 1 + 0) / 3)  # Food is absent from y_true: skipped
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["per_class"]["Food"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    # a class predicted but absent from the reference does not count in UAR either
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m2 = metrics.topic_metrics(["Nature", "Nature"], ["Nature", "Food"], LABELS)
    assert m2["uar"] == 0.5 and m2["accuracy"] == 0.5


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="Sports"):
        metrics.topic_metrics(["Sports"], ["Nature"], LABELS)
    with pytest.raises(ValueError, match="outside"):
        metrics.topic_metrics([7], [1], LABELS)
    with pytest.raises(ValueError, match="no samples"):
        metrics.topic_metrics([], [], LABELS)
    with pytest.raises(ValueError, match="2 references but 1"):
        metrics.topic_metrics([1, 2], [1], LABELS)


def test_write_predictions(tmp_path):
    path = tmp_path / "out" / "predictions.csv"
    posteriors = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]])
    metrics.write_predictions(path, ["a", "b"], ["Media skills", 3], [0, "Health"], posteriors, LABELS)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ID", "topic", "predicted"] + [f"p_{x}" for x in LABELS]
    assert rows[1]["topic"] == "Food" and rows[1]["predicted"] == "Health"
    assert float(rows[1]["p_Health"]) == pytest.approx(0.5)
    assert [p.name for p in path.parent.iterdir()] == ["predictions.csv"]  # no temporary left
    metrics.write_predictions(path, ["c"], None, [1], [[0.1, 0.6, 0.2, 0.1]], LABELS)
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("c,,Nature,")
    with pytest.raises(ValueError, match="columns"):
        metrics.write_predictions(path, ["c"], None, [1], [[0.5, 0.5]], LABELS)


def test_plot_confusion(tmp_path):
    path = tmp_path / "confusion.png"
    metrics.plot_confusion([[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 4]], LABELS, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_rates():
    refs = ["a b c d", ["e", "f"]]
    hyps = ["a x c", "e f g"]
    rates = metrics.error_rates(refs, hyps)
    # words: b->x, d deleted; g inserted = 3 edits / 6 reference words
    assert rates["wer"] == pytest.approx(50.0)
    # characters (space counted): "a b c d" -> "a x c" = 1 sub + 2 del; "e f" -> "e f g" = 2 ins
    assert rates["cer"] == pytest.approx(100 * 5 / 10)
    assert metrics.error_rates(["sama  lause "], [" sama lause"]) == {"wer": 0.0, "cer": 0.0}
    assert metrics.error_rates(["kissa"], [""])["wer"] == 100.0


def test_write_json(tmp_path):
    path = tmp_path / "metrics.json"
    metrics.write_json(
        path, {"acc": np.float32(0.5), "n": np.int64(3), "t": torch.tensor([1, 2]), "bad": math.nan}
    )
    assert json.loads(path.read_text()) == {"acc": 0.5, "n": 3, "t": [1, 2], "bad": None}
