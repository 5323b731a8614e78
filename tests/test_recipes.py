"""One CPU run of every registry row on the tiny built-in corpus (no network), in dependency order.

Rows that read ASR text run on a corpus copy transcribed by the ASR their ``needs`` names (the
standalone ``asr`` row, or an earlier row's own ASR), one copy per ASR, as recipes/run_table.sh does
(the ``registry_runs`` fixture of conftest.py, which other test files share).
"""

import json

import pytest

from data_prep.prepared import read_manifest
from topic_id.config.registry import load_registry
from conftest import REGISTRY

pytestmark = pytest.mark.training

ROWS = load_registry(REGISTRY)
EXPECTED = ("hyperparams.yaml", "run.json", "log.txt", "metrics.json", "topics.txt")


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_row_trains_and_writes_its_outputs(row, registry_runs):
    run_dir, corpus = registry_runs(row["name"])
    for name in EXPECTED:
        assert (run_dir / name).is_file(), name
    assert "matplotlib.font_manager" not in (run_dir / "log.txt").read_text()  # no font-search DEBUG
    record = json.loads((run_dir / "run.json").read_text())
    assert record["device"] == "cpu" and {"torch", "speechbrain"} <= set(record["packages"])
    result = json.loads((run_dir / "metrics.json").read_text())
    assert set(result) >= {"dev", "test", "params"}
    assert result["params"] > 0
    if row["name"] == "asr":
        assert 0 <= result["test"]["wer"]
        return
    n_test = len(read_manifest(corpus / "test.csv"))
    predictions = (run_dir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == n_test + 1
    assert (run_dir / "confusion.png").stat().st_size > 0
    for split in ("dev", "test"):
        stats = result[split]
        assert 0.0 <= stats["micro_f1"] <= 1.0 and 0.0 <= stats["uar"] <= 1.0
        assert sum(map(sum, stats["confusion"])) == len(read_manifest(corpus / f"{split}.csv"))

