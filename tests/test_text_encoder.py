"""topic_id.models.text_encoder and topic_id.models.embedding_cache: the frozen text encoder, its cache and the stand-in BERT
(topic_id.standins.bert; tiny, CPU, offline)."""

import json
import logging
import pickle
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertModel

from topic_id.models.embedding_cache import model_fingerprint
from topic_id.models.hub import STANDIN_MARKER, ModelNotFound
from topic_id.standins.bert import build_standin
from topic_id.standins.cli import main
from topic_id.models.text_encoder import TextEncoder

SENTENCES = [
    "no niin tota mä kävin eilen kesämökillä saunomassa",
    "järvi oli ihan tyyni ja vesi lämmintä",
    "meidän mökillä ei oo sähköjä mut on puusauna",
    "öisin kuuluu kun kuikka huutaa järvellä",
    "mä luen uutiset aina aamulla puhelimesta",
    "televisiossa on liikaa mainoksia nykyään",
    "somessa leviää paljon valeuutisia ja huhuja",
    "pitää aina miettiä kuka on kirjoittanut jutun",
    "kävin lääkärissä kun selkä oli kipeä",
    "terveyskeskukseen on tosi pitkät jonot",
    "liikunta ja uni on tärkeitä terveydelle",
    "hammaslääkäri sano että pitää harjata paremmin",
    "meidän koulussa oli kiva opettaja",
    "ala-asteella opittiin lukemaan ja laskemaan",
    "yliopistossa opiskelin historiaa ja kieliä",
    "tenttiin piti lukea koko viikonloppu",
    "mä tykkään kokata pastaa ja keittoja",
    "mummo leipoi aina pullaa sunnuntaisin",
    "karjalanpiirakat on parhaita munavoin kanssa",
    "kaupassa ruoka on kallistunut tosi paljon",
    "kesälomalla matkustettiin junalla lappiin",
    "ulkomailla käytiin kreikassa ja espanjassa",
    "lentokoneessa oli ahdasta ja kuuma",
    "hotellista näky meri ja vuoret",
    "töissä on ollut kiirettä koko syksyn",
    "mun pomo on ihan reilu tyyppi",
    "etätöissä on vaikea erottaa työ ja vapaa-aika",
    "palkka vois olla vähän parempi",
    "äiti soitti ja kysy miten menee",
    "öljyä ja etikkaa salaattiin",
]
SIZES = dict(hidden_size=32, num_layers=4, num_heads=2, intermediate_size=64, vocab_size=400)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return build_standin(SENTENCES, tmp_path_factory.mktemp("models") / "standin", **SIZES)


class ForwardCounter:
    """Counts BertModel forward passes (any instance)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = BertModel.forward

        def counting(model, *args, **kwargs):
            self.calls += 1
            return original(model, *args, **kwargs)

        monkeypatch.setattr(BertModel, "forward", counting)


def test_standin_is_marked_and_loads_like_finbert(standin):
    marker = json.loads((standin / STANDIN_MARKER).read_text())
    assert marker["standin"] is True and "random init" in marker["description"]
    assert json.loads((standin / "config.json").read_text())["topic_id_standin"] is True
    enc = TextEncoder(source=str(standin))
    assert enc.is_standin
    assert enc.name.startswith("stand-in BERT (random init, demo vocab)") and str(standin) in enc.name
    assert enc.dim == 32 and enc._model is None  # dim read from the config, no weights loaded
    enc._load()
    assert enc._tokenizer.tokenize("Äiti ÖLJYÄ") == enc._tokenizer.tokenize("äiti öljyä")
    assert any("ä" in t for t in enc._tokenizer.tokenize("äiti"))  # lowercased, accents kept
    assert enc.layers == 4


def test_masked_mean_ignores_padding(standin):
    enc = TextEncoder(standin, batch_size=8)
    short = "mä kävin saunassa"
    long = " ".join(SENTENCES)
    alone = enc.embed([short])
    padded = enc.embed([short, long])
    assert padded.shape == (2, 32)
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=0)
    # and it is the mean of the (float16-stored) token vectors
    tokens = enc.embed_tokens([short])[0]
    torch.testing.assert_close(alone[0], tokens.mean(dim=0), atol=2e-2, rtol=1e-2)
    with_special = TextEncoder(standin, exclude_special=False).embed([short])
    assert not torch.allclose(alone, with_special)


def test_token_level_shapes(standin):
    enc = TextEncoder(standin)
    texts = ["järvi oli tyyni", "kesämökki", ""]
    out = enc.embed_tokens(texts)
    enc._load()
    n_pieces = [len(enc._tokenizer.tokenize(t)) for t in texts[:2]]
    assert [o.shape for o in out] == [(n_pieces[0], 32), (n_pieces[1], 32), (1, 32)]
    assert out[0].dtype == torch.float32 and not out[2].any()
    full = TextEncoder(standin, exclude_special=False).embed_tokens(texts[:1])
    assert full[0].shape == (n_pieces[0] + 2, 32)


def test_empty_text_gives_zero_vector(standin, caplog):
    with caplog.at_level(logging.WARNING, logger="topic_id.models.text_encoder"):
        out = TextEncoder(standin).embed(["", None, "sauna"])
    assert out.shape == (3, 32) and not out[0].any() and not out[1].any() and out[2].any()
    assert "zero vector" in caplog.text


def test_cache_hit_never_calls_the_model(standin, tmp_path, monkeypatch):
    counter = ForwardCounter(monkeypatch)
    first = TextEncoder(standin, cache_dir=tmp_path / "cache", batch_size=4)
    vectors = first.embed(SENTENCES[:10])
    tokens = first.embed_tokens(SENTENCES[:3])
    calls = counter.calls
    assert calls == 3 + 1

    second = TextEncoder(standin, cache_dir=tmp_path / "cache", batch_size=4)
    assert torch.equal(second.embed(SENTENCES[:10]), vectors)
    assert all(torch.equal(a, b) for a, b in zip(second.embed_tokens(SENTENCES[:3]), tokens))
    assert counter.calls == calls and second._model is None
    # a partial hit computes only the new text
    second.embed(SENTENCES[:10] + ["uusi lause"])
    assert counter.calls == calls + 1
    # a different setting is a different cache entry
    TextEncoder(standin, cache_dir=tmp_path / "cache", n_layers=1).embed(SENTENCES[:1])
    assert counter.calls == calls + 2


def test_precompute_on_main_then_readers_only_read(standin, tmp_path, monkeypatch):
    counter = ForwardCounter(monkeypatch)
    reader = TextEncoder(standin, cache_dir=tmp_path / "cache")
    assert reader.embed([]).shape == (0, 32)  # indexes the (empty) cache before the writer runs
    writer = TextEncoder(standin, cache_dir=tmp_path / "cache")
    assert writer.precompute(SENTENCES + SENTENCES[:5]) == len(SENTENCES)
    assert writer.precompute(SENTENCES) == 0
    assert writer.precompute(SENTENCES[:4], tokens=True) == 4
    calls = counter.calls
    reader.embed(SENTENCES)
    reader.embed_tokens(SENTENCES[:4])
    assert counter.calls == calls and reader._model is None
    # stray temporary files and a broken index do not disturb readers
    folder = next((tmp_path / "cache").glob("mean-*"))
    (folder / ".shard-x.npy.abc.tmp").write_bytes(b"partial")
    (folder / "shard-broken.idx.json").write_text("{not json")
    fresh = TextEncoder(standin, cache_dir=tmp_path / "cache")
    assert torch.equal(fresh.embed(SENTENCES), reader.embed(SENTENCES))
    assert counter.calls == calls


def test_encoder_pickles_for_dataloader_workers(standin, tmp_path):
    enc = TextEncoder(standin, cache_dir=tmp_path / "cache")
    before = enc.embed(SENTENCES[:2])
    copy = pickle.loads(pickle.dumps(enc))
    assert copy._model is None and torch.equal(copy.embed(SENTENCES[:2]), before)


def test_missing_hub_model_fails_offline_with_instructions(tmp_path):
    enc = TextEncoder("TurkuNLP/no-such-finbert", hf_cache_dir=str(tmp_path / "hub"))
    with pytest.raises(ModelNotFound) as err:
        enc.embed(["hei"])
    message = str(err.value)
    assert "TurkuNLP/no-such-finbert" in message
    assert "hf download TurkuNLP/no-such-finbert --local-dir" in message
    assert "--text_encoder_source=DIR" in message
    with pytest.raises(ModelNotFound, match="does not exist"):
        _ = TextEncoder(str(tmp_path / "nowhere")).dim


def test_model_from_the_hub_cache_shares_the_cache(standin, tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--Org--tiny-bert"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(standin, repo / "snapshots" / commit)
    local = TextEncoder(standin, cache_dir=tmp_path / "cache")
    vectors = local.embed(SENTENCES[:3])
    counter = ForwardCounter(monkeypatch)
    hub = TextEncoder(
        "Org/tiny-bert", hf_cache_dir=str(tmp_path / "hub"), cache_dir=tmp_path / "cache"
    )
    assert hub.name.endswith(f"Org/tiny-bert@{commit}")
    assert hub.fingerprint == local.fingerprint
    assert torch.equal(hub.embed(SENTENCES[:3]), vectors) and counter.calls == 0


def test_accent_stripping_is_explicit(standin, tmp_path, caplog):
    # FinBERT's hub layout: vocab.txt + {"do_lower_case": true}, which strips accents by default.
    finbert_like = tmp_path / "finbert_like"
    finbert_like.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(standin / name, finbert_like / name)
    (finbert_like / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    default = TextEncoder(finbert_like)
    with caplog.at_level(logging.WARNING, logger="topic_id.models.text_encoder"):
        default._load()
    assert "strips accents" in caplog.text
    assert not any("ä" in t for t in default._tokenizer.tokenize("äiti"))
    kept = TextEncoder(finbert_like, strip_accents=False)
    kept._load()
    assert any("ä" in t for t in kept._tokenizer.tokenize("äiti"))


def test_n_layers_capped_at_model_depth(standin, caplog):
    enc = TextEncoder(standin, n_layers=12)
    with caplog.at_level(logging.WARNING, logger="topic_id.models.text_encoder"):
        assert enc.layers == 5 and enc.embed(["sauna"]).shape == (1, 32)
    assert "summing all of them" in caplog.text


def test_build_standin_is_deterministic_and_idempotent(tmp_path):
    shuffled = SENTENCES[::-1] + SENTENCES[:3]
    random.Random(1).shuffle(shuffled)
    a = build_standin(SENTENCES, tmp_path / "a", **SIZES)
    b = build_standin(shuffled, tmp_path / "b", **SIZES)
    assert (a / "vocab.txt").read_text() == (b / "vocab.txt").read_text()
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert model_fingerprint(a) == model_fingerprint(b)
    stamp = (a / STANDIN_MARKER).stat().st_mtime_ns
    build_standin(SENTENCES, a, **SIZES)
    assert (a / STANDIN_MARKER).stat().st_mtime_ns == stamp
    build_standin(SENTENCES, a, **dict(SIZES, seed=1))  # other settings: rebuilt
    assert model_fingerprint(a) != model_fingerprint(b)
    assert not list(tmp_path.glob(".a.*"))  # no temporary folders left


def test_cli_builds_standin_from_manifests(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    header = "ID,wav,duration,topic,words,asr_words,speaker,subset\n"
    rows = "".join(f"u{i},a.wav,1.0,t,{s},,spk,transcribed\n" for i, s in enumerate(SENTENCES[:20]))
    (manifests / "train.csv").write_text(header + rows + "u99,b.wav,1.0,t,,,spk,untranscribed\n")
    (manifests / "dev.csv").write_text(header + f"d1,c.wav,1.0,t,{SENTENCES[25]},,spk2,\n")
    out = tmp_path / "model"
    argv = ["build-bert", "--manifests", str(manifests), "--out", str(out), "--hidden-size", "16"]
    assert main(argv + ["--num-heads", "2", "--intermediate-size", "32"]) == 0
    settings = json.loads((out / STANDIN_MARKER).read_text())["settings"]
    assert settings["n_texts"] == 21 and settings["hidden_size"] == 16
    with pytest.raises(SystemExit):
        main(["build-bert", "--manifests", str(tmp_path / "none"), "--out", str(out)])
