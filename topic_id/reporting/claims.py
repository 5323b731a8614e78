"""The paper's claims about Table I, checked on a results tree ("Claims of the paper" in report.md).

Each claim compares the test micro-F1 of Table I systems, found by paper name:

1. text semi-sup ≥ text man trn > text pipeline;
2. emb transfer ≥ audio-only;
3. audio-only > Wav2vec2;
4. audio+text > text man trn;
5. multi-task has the best test micro-F1 of the paper's rows (our additions such as the BoW rows,
   and variants such as audio+text with ASR test text, are not among them).

The paper's values come from its published Table I (``data/paper_table1.csv``), this run's from
:func:`topic_id.reporting.results.table_one` (mean ± sample std over seeds). A claim holds when the means
order as claimed. Beside that verdict, an honesty marker: ``(within seed noise)`` when a difference
it rests on is no larger than the seed std of a difference between one run of each system,
``sqrt(std_a² + std_b²)``; ``(one seed)`` when a system has a single seed, so there is no std. A
claim whose systems did not all run is ``not run``. A claim that does not hold is explained, never
made to hold by tuning the corpus.
"""

import math
from dataclasses import dataclass

from topic_id.reporting.results import is_paper_row, paper_key, read_published


@dataclass(frozen=True)
class Claim:
    """A claim: systems (paper names) in claimed order, and the relation between neighbours.

    ``best`` claims compare the one system with the best of all other paper rows.
    """

    id: str
    text: str
    systems: tuple
    relations: tuple = ()
    best: bool = False


CLAIMS = (
    Claim("text", "text semi-sup ≥ text man trn > text pipeline",
          ("text semi-sup", "text man trn", "text pipeline"), ("≥", ">")),
    Claim("emb_transfer", "emb transfer ≥ audio-only", ("emb transfer", "audio-only"), ("≥",)),
    Claim("wav2vec2", "audio-only > Wav2vec2", ("audio-only", "Wav2vec2"), (">",)),
    Claim("hybrid", "audio+text > text man trn", ("audio+text", "text man trn"), (">",)),
    Claim("multitask_best", "multi-task has the best test micro-F1 of Table I", ("multi-task",),
          (">",), best=True),
)


def _fmt(value, std=None):
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _sign(diff):
    return ">" if diff > 0 else "<" if diff < 0 else "="


def compare(a, b, relation):
    """One link of a claim: does ``a relation b`` hold on the means, and beyond the seed noise?

    Arguments
    ---------
    a, b : tuple
        ``(mean, std)`` of two systems; std None with one seed.
    relation : str
        ``>`` or ``≥``.

    Returns
    -------
    dict
        ``diff`` (a - b), ``holds`` (bool), ``noise`` (``sqrt(std_a² + std_b²)``, None with one
        seed) and ``clear`` (``|diff| > noise``; None without noise).

    Example
    -------
    >>> r = compare((80.0, 1.0), (79.0, 1.0), ">")
    >>> r["holds"], r["clear"], round(r["noise"], 3)
    (True, False, 1.414)
    >>> compare((80.0, None), (80.0, 0.5), "≥")["holds"], compare((80.0, None), (80.0, 0.5), ">")["holds"]
    (True, False)
    """
    if relation not in (">", "≥"):
        raise ValueError(f"relation must be > or ≥, not {relation!r}")
    diff = a[0] - b[0]
    holds = diff > 0 if relation == ">" else diff >= 0
    noise = math.hypot(a[1], b[1]) if a[1] is not None and b[1] is not None else None
    clear = None if noise is None else abs(diff) > noise
    return {"diff": diff, "holds": holds, "noise": noise, "clear": clear}


def verdict(links):
    """The verdict of a claim from its links (:func:`compare`): holds / does not hold + marker.

    The marker is about the links the verdict rests on: all of them when the claim holds, the
    failing ones when it does not.

    Example
    -------
    >>> verdict([{"holds": True, "clear": True}, {"holds": True, "clear": False}])
    'holds (within seed noise)'
    >>> verdict([{"holds": True, "clear": True}, {"holds": False, "clear": True}])
    'does not hold'
    >>> verdict([{"holds": False, "clear": None}])
    'does not hold (one seed)'
    """
    holds = all(link["holds"] for link in links)
    basis = links if holds else [link for link in links if not link["holds"]]
    text = "holds" if holds else "does not hold"
    if any(link["clear"] is None for link in basis):
        return text + " (one seed)"
    if not all(link["clear"] for link in basis):
        return text + " (within seed noise)"
    return text


def _ours(table):
    """``{paper key: Table I entry}`` of the paper rows that ran (first row of each paper name)."""
    out = {}
    for entry in table:
        key = paper_key(entry.get("system"))
        if entry.get("row") and is_paper_row(entry) and key not in out:
            out[key] = entry
    return out


def _chain(values):
    """``(value, text)`` pairs joined by the order the values actually have (``=`` for a tie).

    Example
    -------
    >>> _chain([(2.0, "2.00"), (3.0, "3.00"), (1.0, "1.00")])
    '2.00 < 3.00 > 1.00'
    """
    parts = [values[0][1]]
    for (prev, _), (value, text) in zip(values, values[1:]):
        parts += [_sign(prev - value), text]
    return " ".join(parts)


def check_claims(table, published):
    """Check :data:`CLAIMS` on Table I.

    Arguments
    ---------
    table : list of dict
        From :func:`topic_id.reporting.results.table_one` (``system``, ``row``, ``table_row``, ``seeds``,
        ``f1_test``, ``f1_test_std``); published-only rows (no ``row``) are ignored.
    published : str or Path
        ``paper_table1.csv``.

    Returns
    -------
    list of dict
        One per claim: ``id``, ``claim``, ``paper`` and ``this_run`` (the values, in the claimed
        order, with the order they actually have), ``paper_holds``, ``holds`` (None when not run),
        ``verdict`` (``holds``, ``holds (within seed noise)``, ``does not hold ...``,
        ``not run (...)``), ``missing`` (paper names of systems without a finished run).
    """
    rows = [p for p in read_published(published) if p["paper_position"] and p["f1_test"]]
    paper = {paper_key(p["paper_name"]): float(p["f1_test"]) for p in rows}
    names = {paper_key(p["paper_name"]): p["paper_name"] for p in rows}
    ours = _ours(table)
    ran = {k: (e["f1_test"], e["f1_test_std"]) for k, e in ours.items() if e.get("f1_test") is not None}
    out = []
    for claim in CLAIMS:
        keys = [paper_key(s) for s in claim.systems]
        if claim.best:
            out.append(_check_best(claim, keys[0], paper, ran, names))
            continue
        row = {"id": claim.id, "claim": claim.text}
        row["paper"] = _chain([(paper[k], f"{paper[k]:.2f}") for k in keys])
        row["paper_holds"] = all(compare((paper[a], None), (paper[b], None), r)["holds"]
                                 for a, b, r in zip(keys, keys[1:], claim.relations))
        row["missing"] = [s for s, k in zip(claim.systems, keys) if k not in ran]
        if row["missing"]:
            row.update(this_run="—", holds=None, verdict=f"not run ({', '.join(row['missing'])})")
        else:
            links = [compare(ran[a], ran[b], r) for a, b, r in zip(keys, keys[1:], claim.relations)]
            row["this_run"] = _chain([(ran[k][0], _fmt(*ran[k])) for k in keys])
            row.update(holds=all(link["holds"] for link in links), verdict=verdict(links))
        out.append(row)
    return out


def _check_best(claim, key, paper, ran, names):
    """``key`` against the best other paper row, in the paper and in this run."""
    others = {k: v for k, v in paper.items() if k != key}
    best_paper = max(others, key=others.get)
    row = {"id": claim.id, "claim": claim.text,
           "paper": f"{paper[key]:.2f} vs {names[best_paper]} {others[best_paper]:.2f}",
           "paper_holds": compare((paper[key], None), (others[best_paper], None),
                                  claim.relations[0])["holds"]}
    rest = {k: v for k, v in ran.items() if k != key}
    row["missing"] = [names[k] for k in paper if k not in ran]
    if key not in ran or not rest:
        what = claim.systems[0] if key not in ran else "no other paper row"
        row.update(this_run="—", holds=None, verdict=f"not run ({what})")
        return row
    best = max(rest, key=lambda k: rest[k][0])
    link = compare(ran[key], rest[best], claim.relations[0])
    row["this_run"] = f"{_fmt(*ran[key])} vs {names.get(best, best)} {_fmt(*rest[best])}"
    row.update(holds=link["holds"], verdict=verdict([link]))
    if row["missing"]:
        row["verdict"] += f"; among the rows run (not run: {', '.join(row['missing'])})"
    return row


def markdown_claims(claims):
    """The claims as a Markdown table: claim | paper | this run | holds?

    Example
    -------
    >>> print(markdown_claims([{"claim": "a > b", "paper": "2.00 > 1.00", "this_run": "—",
    ...                         "verdict": "not run (b)"}]))
    | Claim (test micro-F1, %) | paper | this run (mean ± std over seeds) | holds? |
    |---|---|---|---|
    | a > b | 2.00 > 1.00 | — | not run (b) |
    """
    header = ["Claim (test micro-F1, %)", "paper", "this run (mean ± std over seeds)", "holds?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in claims:
        cells = [c["claim"], c["paper"], c["this_run"], c["verdict"]]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def claims_section(claims, corpus="demo"):
    """The report's "Claims of the paper" text: how to read the verdicts, then the table.

    Arguments
    ---------
    claims : list of dict
        From :func:`check_claims`.
    corpus : str
        ``demo`` adds that only the orderings, not the numbers, compare with the paper.

    Returns
    -------
    str
        Markdown.
    """
    intro = ("Test micro-F1 (%): the published Table I beside this run, each shown with the order "
             "its values actually have. A claim holds when this run's means order as claimed; "
             "*within seed noise* when a difference it rests on is no larger than "
             "sqrt(std_a² + std_b²), the seed std of the difference between one run of each "
             "system; *one seed* when a system has no std. Multi-task is compared with the "
             "paper's other rows only (not our additions, not the audio+text variant with ASR "
             "test text).")
    if corpus == "demo":
        intro += (" On the built-in corpus the numbers are not comparable with the paper's; only "
                  "the orderings are.")
    return intro + "\n\n" + markdown_claims(claims)
