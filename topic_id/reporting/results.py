"""Read a results tree ``<results>/<registry row>/<seed>/`` into the numbers of Tables I and II.

:func:`collect` reads every run's ``metrics.json`` and lists what is missing; :func:`table_one`
orders the Table I rows by the registry's ``table_row`` (ties in registry order; a row of ours that
is not in the paper, ``table_row`` not a number such as ``BoW``, follows the paper rows listed
before it in the registry) and gives mean ± std over seeds; :func:`support_table` does the same
for the support rows (ASR: WER/CER);
:func:`table_two` measures pairwise agreement on test as the paper does (one system's predictions
taken as the reference of the other's: micro-F1) plus Cohen's kappa. The paper's published
numbers (``data/paper_table1.csv``, ``data/paper_table2.csv``, transcribed from the paper's text,
matched by paper name) are added on request. :mod:`topic_id.reporting.report` renders all of it.
"""

import csv
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topic_id.config.registry import load_registry, registry_of, transcriber
from topic_id.training.run_folder import metrics_file, predictions_file

DATA = Path(__file__).resolve().parent / "data"
TOPIC_KEYS = ("f1_dev", "f1_test", "uar_dev", "uar_test")
ASR_KEYS = ("wer_dev", "wer_test", "cer_dev", "cer_test")


@dataclass
class Collection:
    """What a results tree holds: ``runs[row][seed]`` = metrics dict, plus what is missing."""

    root: Path
    registry: list
    runs: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    unregistered: list = field(default_factory=list)


def seed_key(seed):
    """Sort key of seed folder names: numbers numerically, then other names."""
    return (0, int(seed), "") if seed.isdigit() else (1, 0, seed)


def paper_key(name):
    """A paper name for matching: lowercase, ``(...)`` dropped (``ASR (support)`` → ``asr``)."""
    return " ".join(re.sub(r"\([^)]*\)", " ", name or "").lower().split())


def collect(results_dir, registry=None, exclude=()):
    """Read ``metrics.json`` of every registry row × seed under ``results_dir``.

    A Table I row is expected for every seed seen anywhere in the tree; a support row (no
    ``table_row``, e.g. the ASR, trained once) only needs one finished run.

    Arguments
    ---------
    results_dir : str or Path
        The tree ``<row name>/<seed>/metrics.json``.
    registry : str, Path or list, optional
        The registry CSV, or rows already read; default: the tree's own copy
        (:func:`topic_id.config.registry.registry_of`).
    exclude : sequence of Path
        Folders to skip (the report's own folder when it lives inside the tree).

    Returns
    -------
    Collection
        ``missing`` holds ``(row, seed or None, reason)``; ``unregistered`` folder names not in the
        registry.
    """
    root = Path(results_dir)
    rows = registry if isinstance(registry, list) else load_registry(registry_of(root, registry))
    names = {r["name"] for r in rows}
    skip = {Path(p).resolve() for p in exclude}
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and p.resolve() not in skip]
    found = {p.name: p for p in folders}
    seeds = sorted({s.name for p in folders if p.name in names for s in p.iterdir() if s.is_dir()},
                   key=seed_key)
    out = Collection(root, rows, unregistered=sorted(set(found) - names))
    for row in rows:
        name, runs = row["name"], {}
        folder = found.get(name)
        expected = seeds if row["table_row"] else []
        present = {s.name for s in folder.iterdir() if s.is_dir()} if folder else set()
        for seed in sorted(set(expected) | present, key=seed_key):
            path = metrics_file(root / name / seed)
            if not path.parent.is_dir():
                out.missing.append((name, seed, "not run"))
            elif not path.is_file():
                out.missing.append((name, seed, "unfinished (no metrics.json)"))
            else:
                try:
                    metrics = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as err:
                    out.missing.append((name, seed, f"unreadable metrics.json ({err})"))
                    continue
                if isinstance(metrics, dict):
                    runs[seed] = metrics
                else:
                    out.missing.append((name, seed, "metrics.json is not a JSON object"))
        if not runs and not expected and not present:
            out.missing.append((name, None, "no results folder"))
        out.runs[name] = runs
    return out


def _mean_std(values):
    """Mean and sample std (ddof=1; None for one value) of the values that are not None."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _value(metrics, key):
    """``f1_test``: ``metrics["test"]["micro_f1"]`` in %; ``wer_dev``: ``["dev"]["wer"]`` (in %)."""
    what, split = key.split("_")
    value = (metrics.get(split) or {}).get({"f1": "micro_f1"}.get(what, what))
    if value is None:
        return None
    return 100.0 * value if what in ("f1", "uar") else float(value)


def seed_values(runs, key):
    """``{seed: value}`` of one Table I key (:data:`TOPIC_KEYS`, :data:`ASR_KEYS`) over a row's runs.

    Example
    -------
    >>> seed_values({"1": {"test": {"micro_f1": 0.5}}, "2": {"test": {}}}, "f1_test")
    {'1': 50.0, '2': None}
    """
    return {seed: _value(runs[seed], key) for seed in sorted(runs, key=seed_key)}


def read_published(path):
    """Rows of a published-numbers CSV (``data/paper_table*.csv``) as dicts of strings."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _stats_row(row, runs, keys):
    seeds = sorted(runs, key=seed_key)
    out = {"system": row["paper_name"], "row": row["name"], "table_row": row["table_row"],
           "seeds": len(seeds), "params": runs[seeds[0]].get("params") if seeds else None,
           "trainable_params": runs[seeds[0]].get("trainable_params") if seeds else None}
    for key in keys:
        out[key], out[key + "_std"] = _mean_std([_value(runs[s], key) for s in seeds])
    return out


def _encoders(runs, key):
    """The encoder names the seeds of a row report (normally one)."""
    return "; ".join(sorted({str(m[key]) for m in runs.values() if m.get(key)})) or None


def is_paper_row(row):
    """Whether a registry row (or Table I entry) is a row of the paper's Table I: a number in
    ``table_row``; our additions (``BoW``) and support rows (empty) are not."""
    return str(row.get("table_row") or "").isdigit()


def table_order(rows):
    """Table I rows (non-empty ``table_row``) in display order.

    Paper rows by ``table_row``, ties in registry order; a row of ours comes right after the
    highest paper row listed before it in the registry (the BoW rows after the text rows).

    Example
    -------
    >>> rows = [{"name": n, "table_row": t} for n, t in
    ...         [("asr", ""), ("b", "2"), ("a", "1"), ("ours", "BoW"), ("c", "3")]]
    >>> [r["name"] for r in table_order(rows)]
    ['a', 'b', 'ours', 'c']
    """
    keyed, anchor = [], 0
    for position, row in enumerate(rows):
        if not row["table_row"]:
            continue
        if is_paper_row(row):
            anchor = max(anchor, int(row["table_row"]))
            keyed.append(((int(row["table_row"]), 0, position), row))
        else:
            keyed.append(((anchor, 1, position), row))
    return [row for _, row in sorted(keyed, key=lambda item: item[0])]


def _canonical(table):
    """``{row: paper key}`` for the first row of each paper name; later variants of a row (e.g.
    ``audio+text (ASR test text)``) are not the paper's setting and get no published numbers,
    nor do rows of ours (:func:`is_paper_row`)."""
    out = {}
    for entry in table:
        if entry["row"] and is_paper_row(entry) and paper_key(entry["system"]) not in out.values():
            out[entry["row"]] = paper_key(entry["system"])
    return out


def table_one(collection, published=None):
    """Table I: rows with a ``table_row``, in :func:`table_order`.

    Arguments
    ---------
    collection : Collection
        From :func:`collect`.
    published : str or Path, optional
        ``paper_table1.csv``: its numbers are added as ``paper_*`` columns, matched by paper name
        (:func:`paper_key`); published rows without a registry row are appended, our columns empty.

    Returns
    -------
    list of dict
        ``system, row, table_row, seeds, params, trainable_params``, each of :data:`TOPIC_KEYS` with
        its ``_std`` (percent), ``train_text``, ``test_text``, ``text_encoder``, ``text_asr`` (who
        wrote the ASR text the row read, as its runs recorded), ``audio_encoder``.
    """
    table = []
    for row in table_order(collection.registry):
        runs = collection.runs.get(row["name"], {})
        entry = _stats_row(row, runs, TOPIC_KEYS)
        stage = transcriber(row)
        if stage not in (None, "asr") and entry["params"] is not None:
            entry["params"] += _asr_params(collection.runs.get(stage, {}), runs)
        entry.update(train_text=row["train_text"] or None, test_text=row["test_text"] or None,
                     text_encoder=_encoders(runs, "text_encoder"), text_asr=_encoders(runs, "text_asr"),
                     audio_encoder=_encoders(runs, "audio_encoder"))
        table.append(entry)
    if published:
        paper = {paper_key(p["paper_name"]): p for p in read_published(published)
                 if p["paper_position"]}
        canonical = _canonical(table)
        for entry in table:
            match = paper.get(canonical.get(entry["row"]), {})
            entry.update({f"paper_{k}": match.get(k) or None for k in ("params",) + TOPIC_KEYS})
        for key, p in paper.items():
            if key not in canonical.values():
                table.append({"system": p["paper_name"], "row": None, "seeds": 0,
                              **{f"paper_{k}": p[k] for k in ("params",) + TOPIC_KEYS}})
    return table


def _asr_params(asr_runs, runs):
    """Parameters of the ASR modules of the run that transcribes a system's input, same seed.

    A system trained on its own stage 1's transcripts (``needs=own_asr:<row>``, the multi-task
    system) runs that ASR when deployed, so Table I counts it, as the paper's 25M does. Runs
    written before ``module_params`` existed give the stage's whole count.
    """
    from topic_id.training.transcription import DECODE_MODULES

    seed = next((s for s in sorted(runs, key=seed_key) if s in asr_runs), None)
    if seed is None:
        return 0
    per_module = asr_runs[seed].get("module_params")
    if per_module:
        return sum(per_module.get(name, 0) for name in DECODE_MODULES)
    return asr_runs[seed].get("params") or 0


def support_table(collection, published=None):
    """Support rows (no ``table_row``) and rows that report a WER: WER/CER and test topic scores.

    Arguments
    ---------
    collection : Collection
        From :func:`collect`.
    published : str or Path, optional
        ``paper_table1.csv``: adds ``paper_wer_test`` and ``paper_cer_test``, by paper name.

    Returns
    -------
    list of dict
        As :func:`table_one`, with :data:`ASR_KEYS`, ``f1_test`` and ``uar_test``.
    """
    paper = {paper_key(p["paper_name"]): p for p in read_published(published)} if published else {}
    table = []
    for row in collection.registry:
        runs = collection.runs.get(row["name"], {})
        has_wer = any("wer" in (m.get("test") or {}) for m in runs.values())
        if row["table_row"] and not has_wer:
            continue
        entry = _stats_row(row, runs, ASR_KEYS + ("f1_test", "uar_test"))
        if published:
            match = paper.get(paper_key(row["paper_name"]), {})
            entry.update(paper_wer_test=match.get("wer_test") or None,
                         paper_cer_test=match.get("cer_test") or None)
        table.append(entry)
    return table


def external_asrs(collection, data_dir, column="asr_words"):
    """Support entries of the Hugging Face ASR that wrote ``column`` of the corpus the rows read
    (``run_table.sh --external-asr``: it writes what the ``asr`` row would have), from its summary
    ``<data_dir>/<column>.json`` (:func:`topic_id.training.hf_transcription.transcribe_with`).

    Returns
    -------
    list of dict
        Nothing, or one entry as :func:`support_table`'s (WER and CER in %, no seeds) with
        ``column``, ``model`` (its name) and ``read_by`` (the rows with runs that read ASR text:
        ``needs=asr_words``).
    """
    from topic_id.training.hf_transcription import hf_summaries

    summary = hf_summaries(data_dir).get(column) if data_dir else None
    if summary is None:
        return []
    model = summary["asr_model"]
    entry = {"system": f"external ASR {model.get('name')} ({model.get('type')})", "row": f"({column})",
             "table_row": "", "seeds": "—", "column": column, "model": model.get("name"),
             "read_by": ", ".join(r["name"] for r in collection.registry
                                  if transcriber(r) == "asr" and collection.runs.get(r["name"]))}
    for key in ASR_KEYS:
        what, split = key.split("_")
        entry[key] = (summary.get(f"{split}.csv") or {}).get(what)
    return [entry]


def _predictions(path):
    """``{ID: predicted}`` of a ``predictions.csv``; ValueError naming the file when malformed."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not {"ID", "predicted"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path} has no ID/predicted columns")
        return {r["ID"]: r["predicted"] for r in reader}


def agreement(pred_a, pred_b):
    """Micro-F1 (in %) of ``pred_b`` scored against ``pred_a`` as reference, and Cohen's kappa.

    Micro-F1 of single-label predictions is the share of utterances both systems put in the same
    class, so it is symmetric. Kappa is None where undefined (both systems constant).
    """
    from sklearn.metrics import cohen_kappa_score, f1_score

    with warnings.catch_warnings():
        # Kappa of two constant systems is undefined: sklearn warns, we report None.
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score(pred_a, pred_b))
    return {"n": len(pred_a), "agreement": 100.0 * float(f1_score(pred_a, pred_b, average="micro")),
            "kappa": kappa if np.isfinite(kappa) else None}


def table_two(collection, published=None):
    """Pairwise test-set agreement of every two Table I systems, on their smallest common seed.

    Returns
    -------
    (list of dict, list of str)
        Rows ``system_a, system_b, row_a, row_b, seed, n, agreement, kappa`` (+ ``paper_agreement``)
        and notes on the systems or pairs left out.
    """
    systems, notes = [], []
    rows = table_one(collection)
    canonical = _canonical(rows)
    for entry in rows:
        runs = sorted(collection.runs.get(entry["row"], {}), key=seed_key)
        folder = collection.root / entry["row"]
        seeds = [s for s in runs if predictions_file(folder / s).is_file()]
        if seeds:
            systems.append((entry, seeds))
        elif runs:
            notes.append(f"{entry['row']}: finished without predictions.csv, left out of Table II")
    paper = {}
    if published:
        for p in read_published(published):
            pair = frozenset((paper_key(p["system_a"]), paper_key(p["system_b"])))
            paper[pair] = float(p["agreement"])
    table = []
    for i, (a, seeds_a) in enumerate(systems):
        for b, seeds_b in systems[i + 1:]:
            common = [s for s in seeds_a if s in seeds_b]
            if not common:
                notes.append(f"{a['row']} × {b['row']}: no common seed")
                continue
            try:
                pa, pb = (_predictions(predictions_file(collection.root / e["row"] / common[0]))
                          for e in (a, b))
            except (OSError, ValueError) as err:
                notes.append(f"{a['row']} × {b['row']}: {err}")
                continue
            ids = sorted(set(pa) & set(pb))
            if not ids:
                notes.append(f"{a['row']} × {b['row']}: no common test utterance")
                continue
            result = agreement([pa[u] for u in ids], [pb[u] for u in ids])
            pair = frozenset((canonical.get(a["row"]), canonical.get(b["row"])))
            table.append({"system_a": a["system"], "system_b": b["system"], "row_a": a["row"],
                          "row_b": b["row"], "seed": common[0], **result,
                          **({"paper_agreement": paper.get(pair)} if published else {})})
    return table, notes
