"""The Brains' class structure: the topic classifier and the ASR are siblings over
topic_id.training.base.BaseBrain, and the multi-task system composes both."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from topic_id.training.asr import ASRBrain, ASRBranch
from topic_id.training.base import BaseBrain, selection
from topic_id.training.brains import EmbTransferBrain, FinetuneBrain, TopicBrain
from topic_id.training.multitask import MultitaskBrain


def test_asr_and_topic_brains_are_siblings():
    assert not issubclass(ASRBrain, TopicBrain) and not issubclass(TopicBrain, ASRBranch)
    for brain in (TopicBrain, EmbTransferBrain, FinetuneBrain, ASRBrain, MultitaskBrain):
        assert issubclass(brain, BaseBrain)
    assert MultitaskBrain.__mro__[1:4] == (ASRBranch, TopicBrain, BaseBrain)
    # Each behaviour has one home: the multi-task system defines only what joins the two tasks.
    assert set(vars(MultitaskBrain)) & {"on_stage_end", "stage_metrics", "asr_loss", "topic_loss"} == set()


def _brain(cls, topics=True, hyps=True):
    brain = cls.__new__(cls)
    brain.hparams = SimpleNamespace(n_topics=2)
    brain.records = defaultdict(list)
    if topics:
        brain.records["target"] = [torch.tensor([0, 1, 1])]
        brain.records["posterior"] = [torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])]
    if hyps:
        brain.records["ref"], brain.records["hyp"] = ["a b", "c"], ["a b", "d"]
    return brain


def test_stage_metrics_compose_topic_then_loss_then_error_rates():
    topic = _brain(TopicBrain, hyps=False).stage_metrics(0.5)
    asr = _brain(ASRBrain, topics=False).stage_metrics(0.5)
    both = _brain(MultitaskBrain).stage_metrics(0.5)
    assert list(topic)[-1] == "loss" and "wer" not in topic
    assert list(asr)[0] == "loss" and {"wer", "cer"} <= set(asr) and "micro_f1" not in asr
    # metrics.json keeps this order: the topic metrics, the loss, then WER/CER.
    assert list(both) == list(topic) + [k for k in asr if k != "loss"]
    assert both["wer"] == asr["wer"] == pytest.approx(100 / 3) and both["micro_f1"] == topic["micro_f1"]
    assert _brain(BaseBrain).stage_metrics(0.5) == {"loss": 0.5}


def test_selection_by_metric():
    assert selection("uar") == {"max_key": "uar"} and selection("loss") == {"min_key": "loss"}
    with pytest.raises(ValueError, match="ckpt_select must be one of"):
        selection("f1")
