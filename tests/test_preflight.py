"""topic_id.config.preflight: the models a table's rows need load (offline, no weights) and the corpus fits the
profile, each problem one ConfigError line, before anything trains."""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from huggingface_hub import constants

from topic_id.config import corpus_fit, preflight
from topic_id.errors import ConfigError
from topic_id.config.registry import load_registry

from conftest import REGISTRY, ROOT

FINBERT = "TurkuNLP/bert-base-finnish-uncased-v1"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "kissa", "koira", "on", "talo", "##t", "ja", "se",
         "ei", "mutta", "kun", "niin", "vaan", "##ssa", "##lla", "##ni"]
GOOGLE_BERT_KEYS = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size",
                    "initializer_range", "intermediate_size", "max_position_embeddings",
                    "num_attention_heads", "num_hidden_layers", "type_vocab_size", "vocab_size")


@pytest.fixture(scope="module")
def rows():
    return {row["name"]: row for row in load_registry(REGISTRY)}


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, as on a machine that never downloaded anything."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _converted_bert(folder, google_style):
    """A BERT folder as TurkuNLP's conversion instructions leave it: vocab.txt, weights, a
    config.json without model_type (``google_style``: only bert_config.json's keys), no tokenizer files."""
    import torch
    from transformers import BertConfig, BertForPreTraining

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertForPreTraining(config).save_pretrained(str(folder))
    fields = json.loads((folder / "config.json").read_text())
    fields.pop("model_type")
    if google_style:
        fields = {k: v for k, v in fields.items() if k in GOOGLE_BERT_KEYS}
    (folder / "config.json").write_text(json.dumps(fields, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    return folder


def test_a_model_missing_from_the_offline_cache_stops_in_seconds(rows, tmp_path, empty_hub):
    start = time.time()
    with pytest.raises(ConfigError) as err:
        preflight.check_models([rows["audio_bl"], rows["text_man"], rows["audio_text"]], tmp_path / "data",
                               profile="paper", root=ROOT)
    message = str(err.value)
    assert time.time() - start < 30
    assert message.startswith("text_man, audio_text need the text encoder 'TurkuNLP/bert-base-finnish-uncased-v1'")
    assert f"topic-id download {FINBERT}" in message and str(empty_hub) in message
    with pytest.raises(ConfigError, match="^wav2vec2 needs the audio encoder 'facebook/wav2vec2-xls-r-300m'.*"
                                          "topic-id download facebook/wav2vec2-xls-r-300m"):
        preflight.check_models([rows["wav2vec2"]], tmp_path / "data", profile="paper", root=ROOT)


def test_each_model_is_listed_once_with_every_row_that_needs_it(rows, tmp_path):
    needed, skipped = preflight.needed_models(list(rows.values()), tmp_path / "data", profile="paper", root=ROOT)
    assert [(n.source, n.class_name) for n in needed] == [
        (FINBERT, "topic_id.models.text_encoder.TextEncoder"), ("facebook/wav2vec2-xls-r-300m", "topic_id.models.ssl_encoder.SSLEncoder")]
    assert needed[0].rows == ["text_man", "text_semisup", "text_pipeline", "text_finetune", "emb_transfer_pretrain", "audio_text_bl",
                              "audio_text", "audio_text_asr", "multitask_s1", "multitask"]
    assert needed[1].rows == ["wav2vec2"] and needed[1].widths == {"wav2vec2": 1024} and not skipped


def test_ssl_features_need_their_encoder_and_filter_banks_need_none(rows, tmp_path, empty_hub):
    audio = [rows["audio_bl"], rows["audio_only"], rows["asr"]]
    assert preflight.needed_models(audio, tmp_path / "data", profile="paper", root=ROOT) == ([], [])
    needed, _ = preflight.needed_models(audio, tmp_path / "data", profile="paper", root=ROOT,
                                        extra=["--features=ssl", "--ssl_source=microsoft/wavlm-base-plus"])
    assert [(n.source, n.class_name, n.rows, n.widths) for n in needed] == [
        ("microsoft/wavlm-base-plus", "topic_id.models.ssl_encoder.SSLEncoder", ["audio_bl", "audio_only", "asr"], {})]
    with pytest.raises(ConfigError, match="^audio_only needs the audio encoder 'microsoft/wavlm-base-plus'.*"
                                          "topic-id download microsoft/wavlm-base-plus"):
        preflight.check_models([rows["audio_only"]], tmp_path / "data", profile="paper", root=ROOT,
                               extra=["--features=ssl", "--ssl_source=microsoft/wavlm-base-plus"])


def test_models_that_an_earlier_step_builds_are_skipped(rows, tmp_path):
    data = tmp_path / "data"  # not prepared yet: the table's first steps make it
    chosen = [rows["text_man"], rows["wav2vec2"]]
    checked, skipped = preflight.check_models(chosen, data, profile="demo", root=ROOT,
                                              built=[data / "standin_bert", data / "standin_wav2vec2"])
    assert checked == [] and skipped == [str(data / "standin_bert"), str(data / "standin_wav2vec2")]
    with pytest.raises(ConfigError, match=r"^text_man needs the text encoder '.*standin_bert': Text encoder "
                                          "folder .* does not exist"):
        preflight.check_models(chosen, data, profile="demo", root=ROOT, built=[data / "standin_wav2vec2"])


def test_standins_load_and_widths_are_checked(rows, tiny_corpus):
    chosen = [rows["text_man"], rows["wav2vec2"]]
    checked, skipped = preflight.check_models(chosen, tiny_corpus, profile="tiny", root=ROOT)
    assert len(checked) == 2 and all(name.startswith("stand-in") for name in checked) and not skipped
    with pytest.raises(ConfigError, match="^row text_man: text_dim is 768 but the text encoder stand-in BERT "
                                          r".* is 32 wide: pass --text_dim=32$"):
        preflight.check_models([rows["text_man"]], tiny_corpus, profile="tiny", extra=["--text_dim=768"], root=ROOT)


@pytest.mark.parametrize("google_style", [False, True], ids=["architectures", "bert_config_keys"])
def test_a_bert_folder_without_model_type_loads_and_passes(rows, tiny_corpus, tmp_path, google_style):
    from topic_id.models.text_encoder import TextEncoder

    folder = _converted_bert(tmp_path / "finbert", google_style)
    config_text = (folder / "config.json").read_text()
    vectors = TextEncoder(str(folder)).embed(["kissa on talo", "koira ja kissa"])
    assert vectors.shape == (2, 16) and bool(vectors.abs().sum(dim=1).gt(0).all())
    tokens = TextEncoder(str(folder), exclude_special=False).embed_tokens(["talot"])
    assert tokens[0].shape == (4, 16)  # [CLS] talo ##t [SEP]: BERT's WordPiece from vocab.txt alone
    checked, _ = preflight.check_models([rows["text_man"]], tiny_corpus, profile="tiny", root=ROOT,
                                        extra=[f"--text_encoder_source={folder}", "--text_dim=16"])
    assert checked == [str(folder.resolve())]
    assert (folder / "config.json").read_text() == config_text  # the user's folder stays as it was


def test_a_folder_that_does_not_load_names_the_model(rows, tiny_corpus, tmp_path):
    folder = _converted_bert(tmp_path / "broken", google_style=True)
    (folder / "vocab.txt").unlink()
    with pytest.raises(ConfigError, match=r"^text_man needs the text encoder '.*broken', which does not load "
                                          r"from .*broken \(") as err:
        preflight.check_models([rows["text_man"]], tiny_corpus, profile="tiny", root=ROOT,
                               extra=[f"--text_encoder_source={folder}"])
    assert "topic-id download" not in str(err.value)  # a folder of the user's: nothing to download


def test_too_many_sentencepiece_units_for_the_corpus_name_the_key(rows, tiny_corpus):
    with pytest.raises(ConfigError) as err:
        corpus_fit.check_corpus([rows["asr"], rows["multitask_s1"]], tiny_corpus, profile="paper", root=ROOT)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("asr, multitask_s1: output_neurons=1000, but SentencePiece cannot make 1000 "
                              "unigram units from the 24 transcribed training texts of ")
    limit = int(message.split("lower --output_neurons to ")[1].split()[0])
    assert 40 < limit < 1000
    assert corpus_fit.check_corpus([rows["asr"]], tiny_corpus, profile="paper", root=ROOT,
                                  extra=[f"--output_neurons={limit}"]) == 2
    with pytest.raises(ConfigError, match=f"^asr: output_neurons={limit + 1}, .* to {limit} or fewer"):
        corpus_fit.check_corpus([rows["asr"]], tiny_corpus, profile="paper", root=ROOT,
                               extra=[f"--output_neurons={limit + 1}"])
    with pytest.raises(ConfigError, match=r"^asr: output_neurons=10, .*: raise --output_neurons to \d+ or more"):
        corpus_fit.check_corpus([rows["asr"]], tiny_corpus, profile="tiny", root=ROOT, extra=["--output_neurons=10"])


def test_every_row_of_the_demo_profile_fits_the_tiny_corpus(rows, tiny_corpus):
    # text_pipeline and the others read asr_words, which the tiny corpus does not have yet: the
    # transcription step fills it, so that is no error.
    assert corpus_fit.check_corpus(list(rows.values()), tiny_corpus, profile="demo", root=ROOT) == 18


def test_other_corpus_problems_name_the_key(rows, corpus_copy):
    with pytest.raises(ConfigError, match="^row text_man: n_topics is 5 but .*topics.txt lists 8 topics"):
        corpus_fit.check_corpus([rows["text_man"]], corpus_copy, extra=["--n_topics=5"], root=ROOT)
    with pytest.raises(ConfigError, match="^row text_man: --eval_text=asr_words: dev.csv has no column|"
                                          "^row text_man: --eval_text=asr_words: no dev row has text"):
        corpus_fit.check_corpus([rows["text_man"]], corpus_copy, extra=["--eval_text=asr_words"], root=ROOT)
    with pytest.raises(ConfigError, match="^row asr: no transcribed training row is at most "
                                          "avoid_if_longer_than=0.5 s long: raise --avoid_if_longer_than"):
        corpus_fit.check_corpus([rows["asr"]], corpus_copy, profile="tiny", extra=["--avoid_if_longer_than=0.5"],
                               root=ROOT)
    (corpus_copy / "topics.txt").unlink()
    with pytest.raises(ConfigError, match="topics.txt is missing: prepare the corpus first"):
        corpus_fit.check_corpus([rows["text_man"]], corpus_copy, root=ROOT)


def _cli(*args, hub):
    env = dict(os.environ, HF_HUB_CACHE=str(hub), HF_HUB_OFFLINE="1")
    # An in-process training run of an earlier test sets SpeechBrain's log level for its children.
    env.pop("SB_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", "topic_id.config.preflight", "--registry", str(REGISTRY),
                           "--root", str(ROOT), *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_cli_one_error_line_and_exit_2(tiny_corpus, tmp_path):
    hub = tmp_path / "hub"
    hub.mkdir()
    # Two independent processes, side by side (each mostly imports, on one core).
    with ThreadPoolExecutor(2) as pool:
        failing = pool.submit(_cli, "--data", str(tiny_corpus), "--profile", "paper", "--systems", "asr,audio_text",
                              hub=hub)
        passing = pool.submit(_cli, "--data", str(tiny_corpus), "--profile", "tiny", "--systems", "asr,text_man",
                              hub=hub)
    done = failing.result()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: audio_text needs the text encoder '{FINBERT}'")
    assert len(done.stderr.splitlines()) == 1
    done = passing.result()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"preflight of 2 row(s): 1 model(s) load; the corpus {tiny_corpus} fits"]
