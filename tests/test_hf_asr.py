"""A Hugging Face ASR as the external ASR: ``recipes/transcribe.py --asr-model`` with tiny random models.

The models are built here with random weights (no hub): a wav2vec2 CTC model with a character
vocabulary, and a Whisper model with a byte-level BPE trained on a few Finnish sentences and
Whisper's special and timestamp tokens. Their text is garbage; what is tested is that every row
gets it, normalised, that the summary names the model and scores dev and test, that runs resume
and skip, that a missing model is one ``error:`` line, and that the text system trains on the
column.
"""

import importlib.util
import json

import numpy as np
import pytest
import torch

from conftest import ROOT
from data_prep.manifest import SPLITS
from data_prep.prepared import linked_copy, manifest_columns, read_manifest
from data_prep.text_norm import normalize_transcript
from topic_id.models.hf_asr import load_hf_asr
from topic_id.models.hub import ModelNotFound
from topic_id.training.hf_transcription import partial_path, read_partial, summary_path, transcribe_with

pytestmark = pytest.mark.usefixtures("one_thread")

COLUMN = "hf_words"
LETTERS = "abcdefghijklmnopqrstuvwxyzåäö"
SENTENCES = ["no mä kävin kesällä mökillä", "se oli ihan kiva reissu", "sit me mentiin saunaan ja uimaan",
             "kyllä se sitten kotiin lähti", "joo en mä tiedä mitä siitä sanois"]
WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|fi|>", "<|en|>", "<|translate|>",
                    "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def build_ctc(folder):
    """A random ``Wav2Vec2ForCTC`` with a Finnish character vocabulary and its processor, saved in ``folder``."""
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    folder.mkdir(parents=True)
    vocab = {"[PAD]": 0, "[UNK]": 1, "|": 2, **{c: i + 3 for i, c in enumerate(LETTERS)}}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), unk_token="[UNK]", pad_token="[PAD]",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, pad_token_id=0, architectures=["Wav2Vec2ForCTC"])
    model = Wav2Vec2ForCTC(config)
    with torch.no_grad():  # a random head would mostly pick the blank: letters come out, as text to check
        model.lm_head.bias[0] = -5.0
    model.save_pretrained(folder)
    return folder


def whisper_tokenizer(vocab_size=300):
    """A Whisper tokenizer of a byte-level BPE trained on :data:`SENTENCES`, with Whisper's special
    tokens and its 1501 timestamp tokens right after ``<|notimestamps|>``, as the real ones are."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe.to_str())["model"]["merges"]]
    tokenizer = WhisperTokenizer(vocab=bpe.get_vocab(), merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in WHISPER_SPECIALS],
                         special_tokens=True)
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(1501)])
    ids = tokenizer.convert_tokens_to_ids(["<|notimestamps|>", "<|0.00|>", "<|30.00|>"])
    assert ids[1] == ids[0] + 1 and ids[2] == ids[0] + 1501 == len(tokenizer) - 1, ids
    return tokenizer


def build_whisper(folder):
    """A random tiny ``WhisperForConditionalGeneration`` (Finnish and English, transcribe and
    translate) with :func:`whisper_tokenizer` and the generation config its ``generate`` reads."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    folder.mkdir(parents=True)
    tokenizer = whisper_tokenizer()
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    token = dict(zip(WHISPER_SPECIALS, tokenizer.convert_tokens_to_ids(WHISPER_SPECIALS)))
    eot, sot = token["<|endoftext|>"], token["<|startoftranscript|>"]
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=16, encoder_layers=1,
                           decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                           max_target_positions=64, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=sot, begin_suppress_tokens=None, suppress_tokens=None)
    model = WhisperForConditionalGeneration(config)
    # Random output embeddings would make most tokens timestamps or bytes that are no letters
    # (both dropped from the text); only the BPE's letter tokens keep theirs, so words come out.
    letters = torch.tensor([tokenizer.decode([i]).strip().isalpha() for i in range(len(tokenizer))])
    with torch.no_grad():
        model.model.decoder.embed_tokens.weight[~letters] = 0.0
    generation = model.generation_config
    generation.lang_to_id = {"<|fi|>": token["<|fi|>"], "<|en|>": token["<|en|>"]}
    generation.task_to_id = {"transcribe": token["<|transcribe|>"], "translate": token["<|translate|>"]}
    generation.no_timestamps_token_id = token["<|notimestamps|>"]
    generation.prev_sot_token_id = token["<|startofprev|>"]
    generation.is_multilingual = True
    generation.decoder_start_token_id = sot
    generation.max_initial_timestamp_index = 50
    generation.max_length = 24
    generation._from_model_config = False  # else loading rebuilds it from config.json, without the above
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_asr")
    return {"ctc": build_ctc(root / "ctc"), "whisper": build_whisper(root / "whisper")}


@pytest.fixture
def corpus(tiny_corpus, tmp_path):
    """A copy of the tiny corpus's manifests this test may rewrite (audio and stand-ins linked)."""
    return linked_copy(tiny_corpus, tmp_path / "corpus")


def _transcribe_main():
    spec = importlib.util.spec_from_file_location("topic_id_transcribe", ROOT / "recipes" / "transcribe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _run(capsys, *args):
    """``recipes/transcribe.py ARGS`` in-process: stdout lines."""
    capsys.readouterr()
    _transcribe_main()([str(a) for a in args])
    return capsys.readouterr().out.splitlines()


def _column(corpus, column=COLUMN):
    return {split: [r[column] for r in read_manifest(corpus / f"{split}.csv")] for split in SPLITS}


@pytest.mark.parametrize("kind", ["ctc", "whisper"])
def test_transcribes_every_row_into_the_column(kind, models, corpus, capsys):
    before = {split: read_manifest(corpus / f"{split}.csv") for split in SPLITS}
    out = _run(capsys, "--asr-model", models[kind], "--manifests", corpus, "--column", COLUMN,
               "--device", "cpu", "--batch-size", 4)
    assert [line.split(":")[0] for line in out] == ["train.csv", "dev.csv", "test.csv"]
    assert all(": decoded" in line for line in out)
    texts = _column(corpus)
    for split in SPLITS:
        after = read_manifest(corpus / f"{split}.csv")
        assert manifest_columns(corpus / f"{split}.csv")[-1] == COLUMN
        assert [{k: v for k, v in r.items() if k != COLUMN} for r in after] == before[split]
        assert all(t == normalize_transcript(t) for t in texts[split])
    if kind == "ctc":  # random letters come out of every recording
        assert all(t for split in SPLITS for t in texts[split])
    else:  # a random Whisper may end at once; most recordings get words
        assert sum(bool(t) for split in SPLITS for t in texts[split]) > len(texts["train"]) // 2
    summary = json.loads(summary_path(corpus, COLUMN).read_text())
    assert summary["asr_model"]["type"] == kind
    assert summary["asr_model"]["name"] == str(models[kind].resolve())
    assert summary["asr_model"]["revision"] is None and summary["column"] == COLUMN
    if kind == "whisper":
        assert (summary["asr_model"]["language"], summary["asr_model"]["task"]) == ("fi", "transcribe")
    for split in ("dev", "test"):
        entry = summary[f"{split}.csv"]
        assert entry["rows"] == len(texts[split]) and entry["scored"] > 0
        assert entry["wer"] is not None and entry["wer"] > 0 and summary["wer"][split] == entry["wer"]
    assert not partial_path(corpus, COLUMN).exists()

    again = _run(capsys, "--asr-model", models[kind], "--manifests", corpus, "--column", COLUMN, "--device", "cpu")
    assert [line.split(": ")[1].split()[0] for line in again] == ["skipped"] * 3
    assert _column(corpus) == texts


class CountingASR:
    """Stands in for :class:`topic_id.models.hf_asr.HFASR`: raw text with case and punctuation to
    normalise, each call counted; ``stop_after`` calls, it raises as an interrupted run would."""

    name = "counting-asr"
    sample_rate = 16000

    def __init__(self, stop_after=None, settings="a"):
        self.calls, self.rows, self.stop_after, self.settings = 0, 0, stop_after, settings

    def describe(self):
        return {"source": self.name, "name": self.name, "type": "ctc", "settings": self.settings}

    def transcribe(self, wavs, batch_size=8):
        if self.stop_after is not None and self.calls == self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.rows += len(wavs)
        return [f"Kesä {len(w) // 1600}, .fp OK!" for w in wavs]


def test_an_interrupted_run_resumes_where_it_stopped(corpus):
    rows = sum(len(read_manifest(corpus / f"{s}.csv")) for s in SPLITS)
    with pytest.raises(KeyboardInterrupt):
        transcribe_with(CountingASR(stop_after=3), corpus, COLUMN, batch_size=4)
    assert COLUMN not in manifest_columns(corpus / "train.csv")  # nothing written before the end
    kept = read_partial(partial_path(corpus, COLUMN), CountingASR().describe())
    assert len(kept) == 12
    asr = CountingASR()
    status, summary = transcribe_with(asr, corpus, COLUMN, batch_size=4)
    assert asr.rows == rows - 12 and status["train.csv"] == "resumed"
    assert summary["test.csv"]["empty"] == 0
    assert all(t.startswith("kesä ") and t.endswith(" ok") for s in SPLITS for t in _column(corpus)[s])
    assert not partial_path(corpus, COLUMN).exists()

    rerun = CountingASR()
    assert set(transcribe_with(rerun, corpus, COLUMN)[0].values()) == {"skipped"} and rerun.calls == 0
    other = CountingASR(settings="b")  # other settings: all decoded again
    assert set(transcribe_with(other, corpus, COLUMN)[0].values()) == {"decoded"} and other.rows == rows
    forced = CountingASR(settings="b")
    assert set(transcribe_with(forced, corpus, COLUMN, force=True)[0].values()) == {"decoded"}


def test_partial_file_of_another_model_is_not_taken(corpus):
    with pytest.raises(KeyboardInterrupt):
        transcribe_with(CountingASR(stop_after=2), corpus, COLUMN, batch_size=4)
    asr = CountingASR(settings="b")
    transcribe_with(asr, corpus, COLUMN, batch_size=4)
    assert asr.rows == sum(len(read_manifest(corpus / f"{s}.csv")) for s in SPLITS)


def test_missing_hub_id_is_one_error_line(corpus, capsys):
    with pytest.raises(SystemExit) as stop:
        _run(capsys, "--asr-model", "NoSuchOrg/no-such-asr", "--manifests", corpus, "--device", "cpu")
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: ASR model 'NoSuchOrg/no-such-asr'")
    assert "topic-id download NoSuchOrg/no-such-asr" in err[0]
    assert not summary_path(corpus).exists()


def test_a_model_that_is_no_asr_is_refused(tiny_corpus, corpus, capsys):
    with pytest.raises(ModelNotFound, match="neither a Whisper model nor a CTC model"):
        load_hf_asr(tiny_corpus / "standin_wav2vec2")
    with pytest.raises(SystemExit) as stop:
        _run(capsys, "--asr-model", tiny_corpus / "standin_wav2vec2", "--manifests", corpus)
    assert stop.value.code == 2 and capsys.readouterr().err.startswith("error: ")


def test_ctc_cuts_long_recordings_into_pieces(models):
    asr = load_hf_asr(models["ctc"], max_segment_seconds=4.0)
    sizes = []
    decode = asr._ctc
    asr._ctc = lambda wavs: sizes.append([len(w) for w in wavs]) or decode(wavs)
    rng = np.random.default_rng(0)
    hyps = asr.transcribe([rng.standard_normal(10 * 16000).astype(np.float32),
                           rng.standard_normal(2 * 16000).astype(np.float32)])
    assert len(hyps) == 2 and all(hyps)
    assert max(max(s) for s in sizes) <= 4 * 16000 and sum(len(s) for s in sizes) >= 4


def test_whisper_long_form_takes_the_whole_recording(models, monkeypatch):
    asr = load_hf_asr(models["whisper"])
    seen = {}
    generate = asr.model.generate

    def spy(**kwargs):
        seen.update(frames=kwargs["input_features"].shape[-1], timestamps=kwargs.get("return_timestamps"),
                    mask="attention_mask" in kwargs, language=kwargs.get("language"))
        return generate(**kwargs)

    monkeypatch.setattr(asr.model, "generate", spy)
    rng = np.random.default_rng(0)
    hyps = asr.transcribe([0.1 * rng.standard_normal(40 * 16000).astype(np.float32),
                           0.1 * rng.standard_normal(3 * 16000).astype(np.float32)])
    assert len(hyps) == 2 and all(isinstance(h, str) for h in hyps)
    assert seen == {"frames": 4000, "timestamps": True, "mask": True, "language": "fi"}
    asr.transcribe([np.zeros(5 * 16000, dtype=np.float32)])
    assert seen["frames"] == 3000 and seen["timestamps"] is None


@pytest.mark.training
def test_text_pipeline_trains_on_the_column_and_exports_with_its_asr(models, corpus, capsys, train, tmp_path):
    """A text system trained on a Hugging Face ASR's column exports with that ASR: `predict` on
    audio hears what the column holds, and classifies it as the run did."""
    import csv
    import shutil

    from topic_id.serving.export import export_run
    from topic_id.serving.inference import TopicIdentifier, predict

    # One recording per batch, here and in predict below: a model without an attention mask
    # hears the padding of a batch, so only equal batches give equal text.
    _run(capsys, "--asr-model", models["ctc"], "--manifests", corpus, "--column", COLUMN, "--device", "cpu",
         "--batch-size", 1)
    run = train("hparams/text.yaml", corpus, tmp_path / "text_pipeline", "--train_subset=all",
                f"--train_text={COLUMN}", f"--eval_text={COLUMN}", "--number_of_epochs=1")
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["micro_f1"] <= 1
    wer = json.loads(summary_path(corpus, COLUMN).read_text())["test.csv"]["wer"]
    assert metrics["text_asr"] == f"{COLUMN}: {models['ctc'].resolve()} (ctc; test WER {wer:.2f} %)"

    export = export_run(run, tmp_path / "export")
    info = json.loads((export / "export.json").read_text())["asr"]
    assert info["bundled"] and info["hf_asr"]["source"] == "asr_model" and info["hf_asr"]["type"] == "ctc"
    assert (export / "asr_model" / "config.json").is_file()
    moved = tmp_path / "elsewhere"
    shutil.move(export, moved)
    model = TopicIdentifier.from_hparams(source=str(moved), run_opts={"device": "cpu"})
    assert model.sample_rate == 16000 and model._hf_asr is None  # text alone does not load it
    assert model.hf_asr.path == str(moved / "asr_model")
    with open(run / "predictions.csv", newline="") as f:
        reference = {r["ID"]: r for r in csv.DictReader(f)}
    test = read_manifest(corpus / "test.csv")[:4]
    rows = predict(moved, [r["wav"] for r in test], device="cpu", batch_size=1)
    assert [r["text"] for r in rows] == [r[COLUMN] for r in test]
    for row, manifest in zip(rows, test):
        expected = reference[manifest["ID"]]
        assert row["topic"] == expected["predicted"]
        assert all(abs(p - float(expected[f"p_{label}"])) < 1e-4 for label, p in row["posteriors"].items())


def test_export_references_a_hub_asr_at_its_commit(tmp_path):
    from topic_id.serving.export import _hf_asr_block

    record = {"asr_model": {"source": "org/whisper", "name": "org/whisper@abc123", "path": "/cache/x",
                            "type": "whisper", "revision": "abc123", "dtype": "bfloat16", "language": "fi",
                            "task": "transcribe", "max_segment_seconds": None},
              "text_normalisation": {"language": "fi", "numbers": "drop"},
              "record": str(tmp_path / "asr_words.json")}
    lines, info = _hf_asr_block(record, tmp_path)
    assert not info["bundled"] and not (tmp_path / "asr_model").exists()
    assert info["hf_asr"] == {"source": "org/whisper", "revision": "abc123", "sample_rate": None,
                              "type": "whisper", "language": "fi",
                              "task": "transcribe", "max_segment_seconds": None, "dtype": "bfloat16",
                              "text_normalisation": {"language": "fi", "numbers": "drop"}}
    assert "hf_asr:" in lines and "    source: org/whisper" in lines and "asr: null" in lines
    gone = {**record, "asr_model": {**record["asr_model"], "name": "/models/gone", "source": "/models/gone",
                                    "path": "/models/gone", "revision": None}}
    with pytest.raises(ValueError, match="is gone"):
        _hf_asr_block(gone, tmp_path)


def _table_args(tmp_path, *extra):
    from topic_id.table import command

    return command.settle(command.build_parser().parse_args(
        ["--corpus", "demo", "--out", str(tmp_path), "--device", "cpu", *extra]))


def test_the_table_takes_an_external_asr(tmp_path):
    from topic_id.table import planner

    steps = {s.label: s for s in planner.plan(_table_args(tmp_path, "--external-asr", "openai/whisper-large-v3"))}
    step = steps["transcribe with external asr"]
    assert step.cmd[step.cmd.index("--asr-model") + 1] == "openai/whisper-large-v3"
    assert "train asr seed 1" not in step.deps and "transcribe with asr" not in steps
    assert "transcribe with external asr" in steps["train text_pipeline seed 1"].deps
    # The demo's multi-task stage 1 starts from the ASR row's model: that row still trains, for it.
    assert "train asr seed 1" in steps["train multitask_s1 seed 1"].deps
    chosen = {s.label: s for s in planner.plan(_table_args(tmp_path, "--external-asr", "X/y", "--systems", "text_pipeline"))}
    assert "train asr seed 1" not in chosen and "train text_pipeline seed 1" in chosen
    check = chosen["check corpus"].cmd
    assert check[check.index("--systems") + 1] == "text_pipeline"  # no ASR row to check the corpus for
    default = {s.label for s in planner.plan(_table_args(tmp_path, "--systems", "text_pipeline"))}
    assert {"train asr seed 1", "transcribe with asr"} <= default

    data = tmp_path / "data"
    data.mkdir()
    assert not planner.transcribed_by_model(data, "X/y")
    entry = {"asr_model": "X/y@abc"}
    (data / "asr_words.json").write_text(json.dumps({"asr_model": {"source": "X/y", "name": "X/y@abc"},
                                                    **{f"{s}.csv": entry for s in SPLITS}}))
    assert planner.transcribed_by_model(data, "X/y") and not planner.transcribed_by_model(data, "X/z")
    assert not planner.transcribed(data, tmp_path / "asr_run")


def test_the_table_passes_the_external_asrs_options(tmp_path, capsys):
    from argparse import Namespace

    from topic_id.errors import ConfigError
    from topic_id.table import command, planner

    options = "--language sv --dtype bfloat16 --batch-size 16"
    args = _table_args(tmp_path, "--external-asr", "X/y", "--external-asr-args", options,
                       "--systems", "text_pipeline")
    step = next(s for s in planner.plan(args) if s.label == "transcribe with external asr")
    assert step.cmd[step.cmd.index("--asr-model"):] == ["--asr-model", "X/y", "--manifests", tmp_path / "data",
                                                        "--device", "cpu", *options.split()]
    assert command.main(["--corpus", "demo", "--out", str(tmp_path), "--device", "cpu", "--dry-run",
                         "--systems", "text_pipeline", "--external-asr", "X/y",
                         "--external-asr-args", options]) == 0
    assert f"--asr-model X/y --manifests {tmp_path / 'data'} --device cpu {options}" in capsys.readouterr().out
    # A finished transcription is taken only when it was made with the same settings.
    data = tmp_path / "data"
    data.mkdir()
    wanted = planner.external_asr_options(args)[1]
    summary = {"asr_model": {"source": "X/y", "name": "X/y@abc"}, "asr_options": wanted,
               **{f"{s}.csv": {"asr_model": "X/y@abc"} for s in SPLITS}}
    (data / "asr_words.json").write_text(json.dumps(summary))
    assert step.finished()
    (data / "asr_words.json").write_text(json.dumps({**summary, "asr_options": {**wanted, "language": "fi"}}))
    assert not step.finished()
    for bad, message in (("--column other", "unrecognized arguments: --column other"),
                         ("--dtype float8", "argument --dtype: invalid choice: 'float8'")):
        with pytest.raises(ConfigError, match=f"^--external-asr-args: {message}"):
            planner.external_asr_options(Namespace(external_asr="X/y", external_asr_args=bad))
    with pytest.raises(ConfigError, match="needs --external-asr"):
        planner.external_asr_options(Namespace(external_asr=None, external_asr_args="--language sv"))


def test_the_report_names_the_external_asr_not_a_missing_asr_row(tmp_path):
    from conftest import REGISTRY
    from topic_id.reporting.report import write_report

    results, data = tmp_path / "results", tmp_path / "data"
    for row in ("text_pipeline", "text_man"):
        (results / row / "1").mkdir(parents=True)
        (results / row / "1" / "metrics.json").write_text(json.dumps(
            {"dev": {"micro_f1": 0.5}, "test": {"micro_f1": 0.25}, "params": 7700, "labels": ["a", "b"]}))
    data.mkdir()
    (data / "asr_words.json").write_text(json.dumps(
        {"asr_model": {"name": "org/whisper@abc", "type": "whisper"}, "column": "asr_words",
         **{f"{s}.csv": {"wer": w, "cer": w and w / 2} for s, w in zip(SPLITS, (None, 21.5, 23.25))}}))
    write_report(results, tmp_path / "plain", registry=REGISTRY)
    assert "- `asr`: no results folder" in (tmp_path / "plain" / "RESULTS.md").read_text()
    write_report(results, tmp_path / "report", registry=REGISTRY, data=data)
    text = (tmp_path / "report" / "RESULTS.md").read_text()
    assert "`asr`: no results folder" not in text
    assert "| external ASR org/whisper@abc (whisper) | (asr_words) | — | 21.50 | 23.25 | 10.75 | 11.62 |" in text
    assert ("`asr_words` of text_pipeline was written by the external ASR org/whisper@abc "
            "(WER dev 21.50 %, test 23.25 %") in text


def test_the_table_stops_at_a_missing_external_asr(tmp_path):
    from topic_id.errors import ConfigError
    from topic_id.table import command, planner

    args = _table_args(tmp_path, "--external-asr", "NoSuchOrg/no-such-asr", "--systems", "text_pipeline")
    steps = [s for s in planner.plan(args) if s.kind == "transcribe"]
    with pytest.raises(ConfigError, match="^--external-asr: ASR model 'NoSuchOrg/no-such-asr'"):
        command.check_models(steps, args, tmp_path / "data")
