"""Render a results tree: Table I/II as Markdown and CSV, Fig. 3 (t-SNE), confusion matrices.

The numbers come from :mod:`topic_id.reporting.results`; this module draws and writes them. Everything
lands in one folder, by default ``<results>/report/`` (``topic-id report RESULTS_DIR [--out DIR]``):

- ``RESULTS.md``: the record to keep beside the code, text only. A header (the checkout's commit,
  the date, corpus, seeds, and the torch version, git revision and device the runs recorded,
  :mod:`topic_id.reporting.provenance`), Table I with one line per seed, the support systems, the
  paper's claims checked (:mod:`topic_id.reporting.claims`), Table II, each row's run time and the
  missing or partial runs. Equal inputs give equal bytes except the line with the date and commit;
- ``report.md``: the same tables with Fig. 3 and the confusion matrices (missing or partial runs
  never stop the report);
- ``table1.csv``: Table I rows, then the support rows (means, stds, paper columns);
- ``claims.csv``: one row per claim of the paper;
- ``table2.csv``: one row per pair of systems;
- ``fig3_tsne.png`` and ``confusion_<row>.png``.
"""

import csv
import logging
from pathlib import Path

import numpy as np

from topic_id.reporting import provenance
from topic_id.reporting.claims import check_claims, claims_section
from corpus_tools.files import atomic_write
from topic_id.training.metrics import plot_confusion
from topic_id.training.run_folder import read_environment
from topic_id.reporting.results import (
    ASR_KEYS,
    DATA,
    TOPIC_KEYS,
    collect,
    external_asrs,
    is_paper_row,
    paper_key,
    read_published,
    seed_key,
    seed_values,
    support_table,
    table_order,
    table_one,
    table_two,
)

logger = logging.getLogger(__name__)
# Fig. 3 of the paper: audio-only, text-only and emb transfer, found by paper name in the registry.
FIG3 = ("audio-only", "text man trn", "emb transfer")
TOPIC_HEADER = ["micro-F1 dev", "micro-F1 test", "UAR dev", "UAR test"]


def plot_tsne(embedding_files, path, perplexity=None, seed=0):
    """Fig. 3: one t-SNE panel per system of its test embeddings, coloured by true topic.

    Arguments
    ---------
    embedding_files : dict
        ``{title: (embeddings_test.pt, labels)}``; the file holds ``id``, ``topic`` (indices into
        ``labels``) and ``embedding`` ``[N, D]``.
    path : str or Path
        The PNG file.
    perplexity : float, optional
        Default ``min(30, (N - 1) / 3)``, as t-SNE needs perplexity < N.
    seed : int
        t-SNE random state (the figure is reproducible).
    """
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    fig = Figure(figsize=(5.0 * len(embedding_files) + 2.0, 5.0))
    FigureCanvasAgg(fig)
    handles = {}
    for i, (title, (file, labels)) in enumerate(embedding_files.items()):
        data = torch.load(file, map_location="cpu", weights_only=True)
        points = data["embedding"].float().reshape(len(data["id"]), -1).numpy()
        if len(points) < 5:
            raise ValueError(f"{file}: {len(points)} embeddings, t-SNE needs at least 5")
        tsne = TSNE(n_components=2, perplexity=perplexity or min(30.0, (len(points) - 1) / 3),
                    init="pca", random_state=seed)
        # OpenMP threads cost far more than they save on a small set (and on a busy machine).
        with threadpool_limits(1 if len(points) < 1000 else None):
            xy = tsne.fit_transform(points)
        raw = data["topic"].tolist() if hasattr(data["topic"], "tolist") else list(data["topic"])
        topics = np.array([labels[t] if isinstance(t, int) else str(t) for t in raw])
        ax = fig.add_subplot(1, len(embedding_files), i + 1)
        # Colours follow the label order, so a topic has the same colour in every panel.
        for k, topic in enumerate(list(labels) + sorted(set(topics) - set(labels))):
            if (topics == topic).any():
                handles[topic] = ax.scatter(*xy[topics == topic].T, s=8, c=f"C{k % 10}",
                                            label=topic)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1.0 - 2.0 / fig.get_figwidth(), 1))
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def _fmt(mean, std=None):
    """``84.12 ± 0.35`` (no std with one seed), a published string as is, ``—`` when missing."""
    if mean is None or mean == "":
        return "—"
    if isinstance(mean, str):
        return mean
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _count(n):
    """Parameter count as the paper prints it: 7.7K, 20.8M."""
    if n is None:
        return "—"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def _markdown(header, rows):
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(r) for r in rows])


def _columns(entry, keys):
    return [_fmt(entry.get(k), entry.get(k + "_std")) for k in keys]


def markdown_table_one(table):
    """Table I as Markdown: scores in %, mean ± sample std over the ``seeds`` finished runs.

    Arguments
    ---------
    table : list of dict
        From :func:`topic_id.reporting.results.table_one` (with ``paper_*`` columns when published).

    Returns
    -------
    str
        The Markdown table.
    """
    paper = any("paper_f1_test" in e for e in table)
    header = ["System", "row", "Params", "seeds"] + TOPIC_HEADER
    header += ["train text", "test text", "text ASR", "text encoder", "audio encoder"]
    header += ["paper Params"] + [f"paper {h}" for h in TOPIC_HEADER] if paper else []
    rows = []
    for e in table:
        cells = [e["system"], e["row"] or "(not in registry)", _count(e.get("params")), e["seeds"]]
        cells += _columns(e, TOPIC_KEYS)
        cells += [e.get(k) or "—" for k in ("train_text", "test_text", "text_asr", "text_encoder",
                                             "audio_encoder")]
        if paper:
            cells += [e.get("paper_params") or "—"]
            cells += _columns(e, [f"paper_{k}" for k in TOPIC_KEYS])
        rows.append(cells)
    return _markdown(header, rows)


def _markdown_support(support, lp):
    header = ["System", "row", "seeds", "WER dev", "WER test", "CER dev", "CER test",
              "micro-F1 test", "UAR test"] + (["paper WER test", "paper CER test"] if lp else [])
    rows = []
    for e in support:
        cells = [e["system"], e["row"], e["seeds"]]
        cells += _columns(e, ASR_KEYS + ("f1_test", "uar_test"))
        rows.append(cells + (_columns(e, ["paper_wer_test", "paper_cer_test"]) if lp else []))
    return _markdown(header, rows)


def _markdown_table_two(table2, lp):
    if not table2:
        return "Fewer than two systems with test predictions: no agreement to show."
    header = ["A", "B", "seed", "n", "agreement", "kappa"] + (["paper agreement"] if lp else [])
    rows = []
    for e in table2:
        kappa = "—" if e["kappa"] is None else f"{e['kappa']:.3f}"
        cells = [f"{e['system_a']} (`{e['row_a']}`)", f"{e['system_b']} (`{e['row_b']}`)",
                 e["seed"], e["n"], _fmt(e["agreement"]), kappa]
        rows.append(cells + ([_fmt(e.get("paper_agreement"))] if lp else []))
    return _markdown(header, rows)


def _write_csv(path, table):
    fields = list(dict.fromkeys(k for e in table for k in e))
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in e.items()} for e in table)


def _figure_three(collection, out):
    """Fig. 3 from the first seed of each :data:`FIG3` system that has ``embeddings_test.pt``."""
    files, notes = {}, []
    for wanted in FIG3:
        row = next((r for r in collection.registry if paper_key(r["paper_name"]) == wanted), None)
        runs = collection.runs.get(row["name"], {}) if row else {}
        seeds = [s for s in sorted(runs, key=seed_key)
                 if (collection.root / row["name"] / s / "embeddings_test.pt").is_file()]
        if not seeds:
            notes.append(f"{wanted}: no run with embeddings_test.pt, left out of Fig. 3")
            continue
        title = f"{row['paper_name']} ({row['name']}, seed {seeds[0]})"
        files[title] = (collection.root / row["name"] / seeds[0] / "embeddings_test.pt",
                        runs[seeds[0]].get("labels") or [])
    if not files:
        return "Not drawn: none of its systems has test embeddings.", notes
    try:
        plot_tsne(files, out / "fig3_tsne.png")
    except (ValueError, OSError, RuntimeError, KeyError, IndexError) as err:
        notes.append(f"Fig. 3 not drawn: {err}")
        return "Not drawn (see below).", notes
    return ("One map per system, coloured by topic (the paper overlays the systems in one map; "
            "their embeddings differ in size).\n\n![Fig. 3](fig3_tsne.png)"), notes


def _confusions(collection, out):
    """One PNG per system: test counts summed over the seeds that share the first seed's labels."""
    images, notes = [], []
    for row in collection.registry:
        runs = collection.runs.get(row["name"], {})
        runs = [runs[s] for s in sorted(runs, key=seed_key)
                if (runs[s].get("test") or {}).get("confusion") and runs[s].get("labels")]
        if not runs:
            continue
        same = [m for m in runs if m["labels"] == runs[0]["labels"]]
        name = f"confusion_{row['name']}.png"
        try:
            counts = np.sum([np.asarray(m["test"]["confusion"]) for m in same], axis=0)
            plot_confusion(counts, runs[0]["labels"], out / name,
                           title=f"{row['paper_name']} (test, seeds summed: {len(same)})")
        except (ValueError, TypeError, IndexError) as err:
            notes.append(f"{row['name']}: confusion matrix not drawn ({err})")
            continue
        images.append(f"![{row['name']}]({name})")
    return images, notes


def _markdown_run_time(timings):
    """The run-time section from run_table.sh's ``logs/steps.csv`` (topic_id/table/planner.py, STEP_FIELDS)."""
    with open(timings, newline="", encoding="utf-8") as f:
        steps = list(csv.DictReader(f))
    ran = [s for s in steps if s["status"] == "ran"]
    lines = [_markdown(["step", "wall s"], [[s["step"], s["seconds"]] for s in ran])]
    if ran:
        wall = max(float(s["finished"]) for s in ran) - min(float(s["started"]) for s in ran)
        busy = sum(float(s["seconds"]) for s in ran)
        lines.append(f"{len(ran)} steps ran in {wall / 60:.1f} min of wall time, from the first "
                     f"start to the last finish before this report ({busy / 60:.1f} min if run one "
                     "after another).")
    skipped = [s["step"] for s in steps if s["status"] == "skipped"]
    if skipped:
        lines.append(f"Finished earlier and skipped: {', '.join(skipped)}.")
    return "\n\n".join(lines)


def _seeds(collection):
    """Every seed with a finished run of a Table I row, in seed order."""
    rows = [r["name"] for r in collection.registry if r["table_row"]]
    return sorted({s for r in rows for s in collection.runs.get(r, {})}, key=seed_key)


def _markdown_per_seed(table1, collection):
    """Table I's micro-F1 (dev / test, %) of each seed: what the mean ± std summarise."""
    seeds = _seeds(collection)
    rows = []
    for e in table1:
        runs = collection.runs.get(e["row"], {}) if e["row"] else {}
        if not runs:
            continue
        dev, test = seed_values(runs, "f1_dev"), seed_values(runs, "f1_test")
        rows.append([e["system"], e["row"]] + [
            f"{_fmt(dev.get(s))} / {_fmt(test.get(s))}" if s in runs else "—" for s in seeds])
    return _markdown(["System", "row"] + [f"seed {s}" for s in seeds], rows)


def _distinct(values, none="not recorded"):
    """``a`` when every run says a; ``a (3 runs), b (1 run)`` when they differ."""
    counts = {}
    for v in values:
        counts[v or none] = counts.get(v or none, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{v} ({n} run{'s' * (n > 1)})" for v, n in sorted(counts.items()))


def _header(collection, corpus):
    """The opening of ``RESULTS.md``: title, the generation line (date, commit), what the runs say."""
    runs = [collection.root / row / seed for row in collection.runs for seed in collection.runs[row]]
    env = [read_environment(run) for run in runs]
    facts = [f"- corpus: `{corpus}`",
             f"- seeds: {', '.join(_seeds(collection)) or 'none'}",
             f"- finished runs: {len(runs)}; missing or partial: {len(collection.missing)}",
             f"- trained at commit: {_distinct(e.get('revision') for e in env)}",
             f"- torch: {_distinct(e.get('torch') for e in env)}",
             f"- device: {_distinct(e.get('device') for e in env)}"]
    return [f"# Topic identification results (corpus: {corpus})",
            f"Generated by `topic-id report` on {provenance.generation_date()} at commit "
            f"{provenance.checkout_commit()}.",
            "\n".join(facts)]


def _markdown_row_times(collection):
    """Each row's run time: seconds in ``recipes/train.py`` per seed, from the runs' ``log.txt``."""
    rows = table_order(collection.registry) + [r for r in collection.registry if not r["table_row"]]
    lines = []
    for row in rows:
        runs = collection.runs.get(row["name"], {})
        seeds = sorted(runs, key=seed_key)
        seconds = [provenance.wall_seconds(collection.root / row["name"] / s) for s in seeds]
        known = [t for t in seconds if t is not None]
        if not seeds:
            continue
        lines.append([row["paper_name"], row["name"],
                      " / ".join("—" if t is None else f"{t:.0f}" for t in seconds),
                      f"{sum(known) / len(known):.0f}" if known else "—",
                      f"{sum(known) / 60:.1f}" if known else "—"])
    if not lines:
        return "No finished run."
    note = ("Seconds each run spent in `recipes/train.py` (seeds in order), from the first to the "
            "last line of its `log.txt` in each invocation: the time between an interruption and "
            "the resumption is not counted (corpus preparation, stand-ins and transcription are steps "
            "of their own).")
    return note + "\n\n" + _markdown(["System", "row", "per seed (s)", "mean (s)", "total (min)"],
                                      lines)


def write_report(results_dir, out_dir=None, corpus="demo", registry=None, timings=None,
                 results_md=None, data=None):
    """Write the report of ``results_dir``: Markdown, CSV and PNG files (see the module docstring).

    Arguments
    ---------
    results_dir : str or Path
        The results tree.
    out_dir : str or Path, optional
        Default ``<results_dir>/report`` (skipped when the tree is read).
    corpus : str
        ``lp`` adds the paper's published numbers; ``demo`` notes that scores are not comparable.
    registry : str, Path or list, optional
        The registry; default: the results tree's copy ``systems.csv``.
    timings : str or Path, optional
        run_table.sh's ``logs/steps.csv``: adds each step's wall time to ``report.md`` and
        ``RESULTS.md``.
    results_md : str or Path, optional
        Where to write ``RESULTS.md`` (default: in the report folder).
    data : str or Path, optional
        The prepared corpus the rows read: where a Hugging Face ASR wrote its ``asr_words``
        (``run_table.sh --external-asr``), the support systems name it with its WER, and the ASR
        row that did not train for it is not missing.

    Returns
    -------
    (str, Collection)
        Table I in Markdown, and what was read.

    Raises
    ------
    ValueError
        When the tree holds no finished run at all (nothing to report).
    """
    out = Path(out_dir) if out_dir else Path(results_dir) / "report"
    collection = collect(results_dir, registry, exclude=[out])
    if not any(collection.runs.values()):
        raise ValueError(f"no finished run (metrics.json) under {results_dir}")
    lp = corpus == "lp"
    paper1, paper2 = (DATA / "paper_table1.csv", DATA / "paper_table2.csv") if lp else (None, None)
    table1, support = table_one(collection, paper1), support_table(collection, paper1)
    external = external_asrs(collection, data)
    if external:
        support += external
        # The external ASR wrote what the ASR row would have: untrained, that row is not missing.
        collection.missing = [m for m in collection.missing if m[:2] != ("asr", None)]
    table2, notes = table_two(collection, paper2)
    _write_csv(out / "table1.csv", table1 + support)
    claims = check_claims(table1, DATA / "paper_table1.csv")
    _write_csv(out / "claims.csv", [{k: v for k, v in c.items() if k != "missing"} for c in claims])
    _write_csv(out / "table2.csv", table2)
    logger.info("drawing Fig. 3 and the confusion matrices")
    fig3, fig3_notes = _figure_three(collection, out)
    images, image_notes = _confusions(collection, out)
    md1 = markdown_table_one(table1)
    notes1 = ["Scores in %, mean ± sample std (ddof=1) over the `seeds` finished runs (no std with "
              "one seed). micro-F1 of single-label predictions equals accuracy. Params: parameters "
              "of the system's own modules (`params` of metrics.json); a frozen, cached text "
              "encoder is not among them, as in the paper's 7.7K for the text rows. A system that "
              "transcribes its input with its own stage-1 ASR (multi-task) counts that ASR's "
              "modules too, as deployed; emb transfer counts its stage B, the deployed model "
              "(stage A's text projection is training-only)."]
    if corpus == "demo":
        notes1.append("Built-in synthetic corpus: these numbers test the recipes; they are not "
                      "comparable with the paper's.")
    encoders = [e.get(k) or "" for e in table1 for k in ("text_encoder", "audio_encoder")]
    if any("stand-in" in name for name in encoders):
        notes1.append("**Stand-in encoders were used** (see the encoder columns): not FinBERT / "
                      "XLS-R.")
    if any(e.get("row") and not is_paper_row(e) for e in table1):
        notes1.append("Rows marked `(ours)` are not in the paper: a bag-of-words logistic "
                      "regression (`hparams/bow.yaml`) on the same text as the text rows beside "
                      "it, to calibrate them (its Params are the regression's weights; it is "
                      "deterministic, so its seeds agree, std 0), and the text encoder fine-tuned "
                      "with the head on the text man trn data (`hparams/text_finetune.yaml`; its "
                      "Params include the encoder's).")
    if lp:
        notes1.append("`paper` columns: the published Table I (`topic_id/reporting/data/paper_table1.csv`).")
    claims_md = ["## Claims of the paper", claims_section(claims, corpus)]
    support_md = ["## Support systems", _markdown_support(support, lp)]
    support_md += [f"`{e['column']}` of {e['read_by'] or 'no finished row'} was written by the external ASR "
                   f"{e['model']} (WER dev {_fmt(e['wer_dev'])} %, test {_fmt(e['wer_test'])} %, from "
                   f"`{Path(data) / (e['column'] + '.json')}`)." for e in external]
    table2_md = ["## Table II: agreement on test",
                 "Micro-F1 (%) of one system's test predictions scored against another's, as the "
                 "paper defines it (symmetric), and Cohen's kappa; on the first seed both systems "
                 "have.", _markdown_table_two(table2, lp)]
    if lp:
        published = [[p["system_a"], p["system_b"], p["agreement"]] for p in read_published(paper2)]
        table2_md += ["Published Table II:", _markdown(["A", "B", "paper agreement"], published)]
    missing = [f"- `{r}`" + (f" seed {s}" if s else "") + f": {why}"
               for r, s, why in collection.missing]
    missing += [f"- {n}" for n in notes + fig3_notes + image_notes]
    missing += [f"- `{n}`: folder not in the registry, ignored" for n in collection.unregistered]
    missing_md = ["## Missing or partial runs", "\n".join(missing) or "None."]
    steps_md = ["## Run time (recipes/run_table.sh)", _markdown_run_time(timings)] if timings else []

    md = [f"# Topic identification results: `{results_dir}` (corpus: {corpus})", "## Table I", md1,
          *notes1, *claims_md, *support_md, *table2_md,
          "## Fig. 3: t-SNE of test embeddings", fig3, "## Confusion matrices (test)",
          "\n".join(images) or "None.", *missing_md, *steps_md]
    with atomic_write(out / "report.md") as f:
        f.write("\n\n".join(md) + "\n")
    results = [*_header(collection, corpus), "## Table I", md1, *notes1,
               "### Per seed: micro-F1 dev / test", _markdown_per_seed(table1, collection),
               *support_md, *claims_md, *table2_md,
               "## Run time of each row", _markdown_row_times(collection),
               *(["### " + steps_md[0][3:], steps_md[1]] if steps_md else []), *missing_md]
    with atomic_write(Path(results_md) if results_md else out / "RESULTS.md") as f:
        f.write("\n\n".join(results) + "\n")
    logger.info("report written to %s", out)
    return md1, collection
