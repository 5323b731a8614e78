"""Shared fixtures: the tiny built-in corpus with a stand-in text encoder, and a trainer runner.

Everything is built locally: no network, no model hub: models are stand-ins
with random weights built in the test's folder (topic_id/standins).
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "recipes" / "systems.csv"
STANDIN = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}
STANDIN_WAV2VEC2 = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "conv_dim": 16}


def _load_trainer():
    spec = importlib.util.spec_from_file_location("topic_id_train", ROOT / "recipes" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slurm_missing():
    """Why the one-node SLURM of tools/local_slurm.sh cannot take jobs here, or None when it can."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM client commands (bash tools/local_slurm.sh starts a one-node cluster, as root)"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if state.returncode != 0 or not {"idle", "mixed", "allocated"} & set(state.stdout.split()):
        return f"no SLURM node is up (sinfo: {state.stdout.strip() or state.stderr.strip()})"
    return None


def cuda_missing():
    """Why no test can run on CUDA here, or None when a device is visible."""
    import torch

    return None if torch.cuda.is_available() else "no CUDA device is visible"


def pytest_collection_modifyitems(config, items):
    """Skip the ``slurm`` and ``gpu`` tests, with the reason, where what they need is absent."""
    checks = {"slurm": slurm_missing, "gpu": cuda_missing}
    reasons = {}
    for item in items:
        for marker, missing in checks.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in reasons:
                reasons[marker] = missing()
            if reasons[marker] is not None:
                item.add_marker(pytest.mark.skip(reason=reasons[marker]))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    the recurrent layers' many small ops run several times faster so on a busy 2-core machine
    (threads spin-waiting for each other), and results do not change."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The tiny built-in corpus with stand-ins at ``<corpus>/standin_bert`` and ``standin_wav2vec2``."""
    from data_prep.demo_corpus import prepare_demo
    from data_prep.prepared import read_manifest
    from topic_id.standins.bert import build_standin
    from topic_id.standins.wav2vec2 import build_standin as build_standin_wav2vec2

    out = tmp_path_factory.mktemp("tiny_corpus")
    prepare_demo(out, seed=0, size="tiny")
    texts = [r["words"] for s in ("train", "dev", "test") for r in read_manifest(out / f"{s}.csv")]
    build_standin([t for t in texts if t], out / "standin_bert", **STANDIN)
    build_standin_wav2vec2(out / "standin_wav2vec2", **STANDIN_WAV2VEC2)
    return out


@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus manifests (audio shared), for tests that modify them."""
    out = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, out, symlinks=True, ignore=shutil.ignore_patterns("audio"))
    (out / "audio").symlink_to(tiny_corpus / "audio")
    return out


@pytest.fixture(scope="session")
def registry_runs(tiny_corpus, tmp_path_factory, train):
    """Registry rows trained on demand on the tiny corpus, each once per session.

    ``registry_runs(name)`` trains the row (after the rows it starts from and the ASR its ``needs``
    names, on a corpus copy that ASR transcribed, as recipes/run_table.sh does) and returns
    ``(run dir, corpus)``; later calls return the same run.
    """
    import subprocess

    from data_prep.prepared import linked_copy
    from topic_id.config.registry import load_registry, transcriber

    root = tmp_path_factory.mktemp("runs")
    rows = {row["name"]: row for row in load_registry(REGISTRY)}
    done, corpora = {}, {}

    def corpus_of(asr):
        if asr not in corpora:
            copy = linked_copy(tiny_corpus, root / f"corpus_{asr}")
            subprocess.run(
                [sys.executable, str(ROOT / "recipes" / "transcribe.py"), "--asr", str(run(asr)[0]),
                 "--manifests", str(copy), "--device", "cpu", "--batch_size", "16"],
                check=True,
            )
            corpora[asr] = copy
        return corpora[asr]

    def run(name):
        if name not in done:
            row = rows[name]
            asr = transcriber(row)
            corpus = tiny_corpus if asr is None else corpus_of(asr)
            args = list(row["overrides"])
            if row["init_from"]:
                args.append(f"--init_from={run(row['init_from'])[0]}")
            done[name] = (train(row["hparams"], corpus, root / name, *args), corpus)
        return done[name]

    return run


@pytest.fixture(scope="session")
def train():
    """Run ``recipes/train.py`` in-process: ``train(hparams, data_folder, output_folder, *args)``."""
    trainer = _load_trainer()

    def run(hparams, data_folder, output_folder, *args, profile="tiny"):
        argv = [
            str(ROOT / hparams),
            f"--data_folder={data_folder}",
            f"--output_folder={output_folder}",
            f"--profile={profile}",
            "--device=cpu",
            *args,
        ]
        trainer.main(argv)
        return Path(output_folder)

    return run
