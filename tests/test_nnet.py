"""Pooling ignores padding; the head has the paper's size with 8 classes (not the published 10)."""

import torch

from topic_id.models.nnet import MeanPool, StatsPool, TopicHead, length_mask, masked_mean


def _pad(x, total):
    return torch.cat([x, torch.zeros(x.shape[0], total - x.shape[1], x.shape[2])], dim=1)


def test_length_mask_keeps_at_least_one_frame():
    mask = length_mask(torch.tensor([1.0, 0.01]), 10)
    assert mask.sum(dim=1).tolist() == [10, 1]


def test_masked_mean_ignores_padding():
    x = torch.randn(1, 7, 5)
    padded = torch.cat([_pad(x, 20), torch.randn(1, 20, 5)])
    lengths = torch.tensor([7 / 20, 1.0])
    pooled = masked_mean(padded, lengths)
    assert torch.allclose(pooled[0], x[0].mean(dim=0), atol=1e-6)
    assert torch.allclose(MeanPool()(padded, lengths), pooled)
    # The padded-mean of the published recipes would differ (diluted by 7/20).
    assert not torch.allclose(padded[0].mean(dim=0), x[0].mean(dim=0), atol=1e-3)


def test_stats_pool_ignores_padding_and_is_deterministic():
    x = torch.randn(1, 9, 4)
    padded = torch.cat([_pad(x, 30), 100 * torch.randn(1, 30, 4)])
    lengths = torch.tensor([9 / 30, 1.0])
    pool = StatsPool()
    out = pool(padded, lengths)
    assert out.shape == (2, 8)
    assert torch.allclose(out[0, :4], x[0].mean(dim=0), atol=1e-5)
    assert torch.allclose(out[0, 4:], x[0].std(dim=0, unbiased=False), atol=1e-4)
    assert torch.equal(out, pool(padded, lengths))


def test_topic_head_sizes():
    # 768*8+8: the paper's 7.7K counted a 10-way layer for 8 topics.
    assert sum(p.numel() for p in TopicHead(768, 8).parameters()) == 6152
    head = TopicHead(3000, 8, hidden_sizes=[512])
    assert sum(p.numel() for p in head.parameters()) == 3000 * 512 + 512 + 512 * 8 + 8
    assert head(torch.randn(3, 3000)).shape == (3, 8)
