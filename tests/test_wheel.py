"""The library works as an installed wheel, away from the checkout.

The wheel is built from a copy of the package sources (no build folder in the checkout), installed
with ``pip --target`` into a temporary folder that comes first on ``PYTHONPATH``, and every command
runs from another temporary folder: nothing may find the registry, profiles or YAMLs through the
checkout. Training itself stays a recipe of the checkout (``recipes/train.py``).
"""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder holding the installed wheel (and nothing else)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("corpus_tools", "data_prep", "topic_id"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(src)],
                   check=True, capture_output=True)
    wheel = next((work / "dist").glob("topic_id-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)],
                   check=True, capture_output=True)
    return work / "site"


def _run(site, cwd, *args):
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(cwd)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_wheel_is_what_runs(site, tmp_path):
    out = _run(site, tmp_path, "-c", "import topic_id, data_prep; print(topic_id.__file__, data_prep.__file__)")
    assert out.returncode == 0, out.stderr
    assert all(path.startswith(str(site)) for path in out.stdout.split())
    assert not (site / "recipes").exists() and not (site / "hparams").exists()


@pytest.mark.training
def test_data_prep_report_export_predict_from_elsewhere(site, tiny_corpus, train, tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # Independent commands run side by side (each is mostly one process's imports, on one core).
    with ThreadPoolExecutor(2) as pool:
        prep = pool.submit(_run, site, cwd, "-m", "data_prep", "demo", "corpus", "--size", "tiny")

        # A run of the checkout's recipe, in a results tree with the registry copy run_table.sh writes.
        results = tmp_path / "results"
        run = train("hparams/audio_tdnn.yaml", tiny_corpus, results / "audio_bl" / "1", "--number_of_epochs=1")
        shutil.copy(ROOT / "recipes" / "systems.csv", results / "systems.csv")
        report = pool.submit(_run, site, cwd, "-m", "topic_id.cli", "report", str(results), "--out", "report")

        export = _run(site, cwd, "-m", "topic_id.cli", "export", str(run), "model")
        assert export.returncode == 0, export.stderr
        wav = next((tiny_corpus / "audio").glob("*.wav"))
        predict = _run(site, cwd, "-m", "topic_id.cli", "predict", "--model", "model", str(wav), "--json")
        assert predict.returncode == 0, predict.stderr
        topics = (tiny_corpus / "topics.txt").read_text().split()
        assert json.loads(predict.stdout)[0]["topic"] in topics

        prep, report = prep.result(), report.result()
    assert prep.returncode == 0, prep.stderr
    assert (cwd / "corpus" / "train.csv").is_file()
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("| System |") and (cwd / "report" / "report.md").is_file()
