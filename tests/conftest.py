"""Shared fixtures: the tiny built-in corpus with a stand-in text encoder, and a trainer runner.

Everything is built locally: no network, no model hub (DESIGN.md "Offline models").
"""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STANDIN = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}


def _load_trainer():
    spec = importlib.util.spec_from_file_location("topic_id_train", ROOT / "recipes" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The tiny built-in corpus with a stand-in BERT at ``<corpus>/standin_bert``."""
    from data_prep.demo_corpus import prepare_demo
    from data_prep.manifest import read_manifest
    from topic_id.text import build_standin

    out = tmp_path_factory.mktemp("tiny_corpus")
    prepare_demo(out, seed=0, size="tiny")
    texts = [r["words"] for s in ("train", "dev", "test") for r in read_manifest(out / f"{s}.csv")]
    build_standin([t for t in texts if t], out / "standin_bert", **STANDIN)
    return out


@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus manifests (audio shared), for tests that modify them."""
    out = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, out, symlinks=True, ignore=shutil.ignore_patterns("audio"))
    (out / "audio").symlink_to(tiny_corpus / "audio")
    return out


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
