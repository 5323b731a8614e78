"""Mixed precision (``--precision=bf16``) on every system YAML, on the CPU.

SpeechBrain runs the forward pass under ``torch.autocast``; on the CPU it allows bf16 only (fp16
is refused there), so this is the part of the GPU check (benchmarks/gpu.py ``precision_check``)
that CI can run: every system trains, evaluates and writes its outputs with autocast on, and no
training step's loss is non-finite (SpeechBrain would skip such steps silently).
"""

import json
import math
from pathlib import Path

import pytest
import speechbrain as sb
import torch

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parent.parent
# Every Brain system; a YAML with a ``trainer`` (the bag-of-words baseline) has no torch model.
YAMLS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hparams").glob("*.yaml")
               if "\ntrainer:" not in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("hparams", YAMLS)
def test_system_trains_in_bf16_with_finite_losses(hparams, train, tiny_corpus, tmp_path, monkeypatch):
    losses = []
    check = sb.core.Brain.check_loss_isfinite

    def recording_check(self, loss):
        losses.append(loss.detach().float())
        return check(self, loss)

    autocast = set()  # the autocast dtype (None: off) seen by modules running in training mode

    def hook(module, args, output):
        if module.training:
            autocast.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)

    monkeypatch.setattr(sb.core.Brain, "check_loss_isfinite", recording_check)
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run = train(hparams, tiny_corpus, tmp_path / "run", "--precision=bf16")
    finally:
        handle.remove()
    assert losses, "no training step ran"
    assert torch.bfloat16 in autocast
    assert all(torch.isfinite(loss) for loss in losses)
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["test"]["loss"])
    assert (run / "predictions.csv").is_file() or "wer" in metrics["test"]
