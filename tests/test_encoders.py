"""topic_id.models.encoders: the audio encoders compute each utterance of a padded batch as if it were alone."""

import pytest
import speechbrain as sb
import torch

from topic_id.models.encoders import CRDNN, TDNN, encode_frames, frame_lengths, normalize_utterances


def _encoder(kind, utterance_norm=False):
    torch.manual_seed(0)
    if kind == "tdnn":
        return TDNN(20, channels=[8, 8, 8, 8, 16], utterance_norm=utterance_norm)
    return CRDNN(input_shape=[None, None, 20], cnn_blocks=1, cnn_channels=[4], rnn_layers=1, rnn_neurons=8,
                 rnn_class=sb.nnet.RNN.LSTM, dnn_blocks=1, dnn_neurons=8, dropout=0.0, time_pooling=True,
                 time_pooling_size=2, using_2d_pooling=False, utterance_norm=utterance_norm)


def _real_frames(out, lens):
    frames = torch.round(lens * out.shape[1]).long()
    return [out[i, : frames[i]] for i in range(out.shape[0])]


@pytest.mark.parametrize("utterance_norm", [False, True])
@pytest.mark.parametrize("kind", ["tdnn", "crdnn"])
def test_a_padded_utterance_gives_the_frames_it_gives_alone(kind, utterance_norm):
    encoder = _encoder(kind, utterance_norm).eval()
    short, longer = torch.randn(1, 37, 20), torch.randn(1, 80, 20)
    batch = torch.cat([torch.nn.functional.pad(short, (0, 0, 0, 43)), longer])
    with torch.no_grad():
        alone = _real_frames(*encoder(short, torch.ones(1)))[0]
        together = _real_frames(*encoder(batch, torch.tensor([37 / 80, 1.0])))[0]
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["tdnn", "crdnn"])
def test_training_batch_norm_ignores_padding(kind):
    """In training too, the encoders' batch statistics come from real frames only: padding the
    same batch further changes neither the real output frames nor the running statistics."""
    encoder = _encoder(kind)
    encoder.train()
    x = torch.randn(2, 60, 20)
    n = torch.tensor([60, 25])
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    outputs, stats = [], []
    for extra in (0, 90):
        encoder.load_state_dict(initial)
        padded = torch.nn.functional.pad(x, (0, 0, 0, extra))
        padded[1, 25:] = 0.0
        out, lens = encoder(padded, n.float() / padded.shape[1])
        outputs.append(_real_frames(out, lens))
        stats.append([m.running_mean.clone() for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm1d)])
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert stats[0]
    for a, b in zip(*stats):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_tdnn_output_counts_the_real_frames_less_its_context():
    tdnn = _encoder("tdnn").eval()
    out, lens = tdnn(torch.randn(2, 50, 20), torch.tensor([1.0, 0.6]))
    assert tdnn.context == 14 and out.shape[1] == 50 - 14
    assert torch.round(lens * out.shape[1]).tolist() == [36, 30 - 14]


def test_utterance_normalisation_uses_real_frames_and_zeroes_padding():
    x = torch.randn(2, 30, 4) * 5 + 3
    n = torch.tensor([30, 12])
    out = normalize_utterances(x, n)
    alone = normalize_utterances(x[1:, :12], torch.tensor([12]))
    torch.testing.assert_close(out[1, :12], alone[0])
    assert torch.all(out[1, 12:] == 0)
    torch.testing.assert_close(out[0].mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)


def test_frame_lengths_give_each_utterance_the_fbank_frames_it_has_alone():
    fbank = sb.lobes.features.Fbank()
    wavs = torch.randn(3, 16000)
    wav_lens = torch.tensor([1.0, 0.5, 0.3337])
    n_frames = fbank(wavs).shape[1]
    lens = frame_lengths(fbank, wav_lens, 16000, n_frames)
    alone = [fbank(wavs[i : i + 1, : int(round(float(wav_lens[i]) * 16000))]).shape[1] for i in range(3)]
    assert torch.round(lens * n_frames).long().tolist() == alone


def test_features_without_a_centred_stft_keep_the_waveform_lengths():
    wav_lens = torch.tensor([1.0, 0.5])
    assert frame_lengths(torch.nn.Identity(), wav_lens, 100, 100) is wav_lens


def test_encode_frames_takes_encoders_with_or_without_their_own_lengths():
    feats, lens = torch.zeros(2, 6, 3), torch.tensor([1.0, 0.5])
    halved = encode_frames(lambda x, n: (x[:, ::2], n), feats, lens)
    assert halved[0].shape == (2, 3, 3) and halved[1] is lens
    same = encode_frames(lambda x, n: x + 1, feats, lens)
    assert torch.equal(same[0], feats + 1) and same[1] is lens


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["tdnn", "crdnn"])
def test_on_cuda_the_encoders_give_the_cpu_frames(kind):
    encoder = _encoder(kind).eval()
    x, lens = torch.randn(2, 50, 20), torch.tensor([1.0, 0.6])
    with torch.no_grad():
        cpu = _real_frames(*encoder(x, lens))
        cuda = _real_frames(*encoder.to("cuda")(x.to("cuda"), lens.to("cuda")))
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-3)
