"""``python -m data_prep import-transcripts``: transcripts made elsewhere fill a manifest column."""

import json

import pytest

from data_prep.__main__ import main
from data_prep.manifest import SPLITS, write_csv
from data_prep.prepared import linked_copy, manifest_columns, read_manifest
from data_prep.text_norm import normalize_transcript
from topic_id.config.checks import check_data
from topic_id.errors import ConfigError

COLUMN = "whisper_words"


@pytest.fixture
def corpus(tiny_corpus, tmp_path):
    """A copy of the tiny corpus's manifests this test may rewrite (audio and stand-ins linked)."""
    return linked_copy(tiny_corpus, tmp_path / "corpus")


def _rows(corpus):
    return [row for split in SPLITS for row in read_manifest(corpus / f"{split}.csv", as_written=True)]


def _raw(row, k):
    """A transcript as another system writes it: case, a noise marker and punctuation to normalise."""
    return f"{(row['words'] or 'hei maailma').upper()} .fp Kesä-{k}, OK!"


def _manifest_bytes(corpus):
    return {split: (corpus / f"{split}.csv").read_bytes() for split in SPLITS}


def _run(capsys, *args):
    """``python -m data_prep -q ARGS``: (exit status, stdout, stderr lines)."""
    capsys.readouterr()
    status = main(["-q", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err.strip().splitlines()


@pytest.fixture
def kaldi(corpus, tmp_path):
    """A Kaldi ``text`` of every ID but the first dev row's, plus one ID no manifest has."""
    rows = _rows(corpus)
    left_out = read_manifest(corpus / "dev.csv")[0]["ID"]
    lines = [f"{r['ID']} {_raw(r, k)}" for k, r in enumerate(rows) if r["ID"] != left_out]
    lines.insert(3, "no_such_utterance hei")
    path = tmp_path / "text"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {r["ID"]: normalize_transcript(_raw(r, k)) for k, r in enumerate(rows) if r["ID"] != left_out}
    return path, left_out, expected


def test_a_kaldi_text_fills_the_column_and_accounts_for_every_id(corpus, kaldi, capsys):
    path, left_out, expected = kaldi
    before = _manifest_bytes(corpus)
    status, out, err = _run(capsys, "import-transcripts", corpus, path, "--column", COLUMN)
    assert status == 0 and err == []
    summary = json.loads(out)
    assert summary == json.loads((corpus / f"transcripts_{COLUMN}.json").read_text())
    n_rows = sum(len(read_manifest(corpus / f"{s}.csv")) for s in SPLITS)
    assert summary["format"] == "kaldi" and summary["column"] == COLUMN
    assert summary["rows"] == n_rows and summary["entries"] == n_rows
    assert summary["matched"] == n_rows - 1 and summary["missing"] == 1 and summary["missing_ids"] == [left_out]
    assert summary["unknown"] == 1 and summary["unknown_ids"] == ["no_such_utterance"]
    assert summary["overwritten"] == summary["cleared"] == summary["empty_text"] == 0
    assert summary["added_to"] == ["train.csv", "dev.csv", "test.csv"]
    assert summary["splits"]["dev"]["missing"] == 1 and summary["splits"]["train"]["missing"] == 0
    for row in _rows(corpus):
        assert row[COLUMN] == expected.get(row["ID"], "")
    assert any(text != text.lower() or ".fp" in text for text in path.read_text().splitlines())
    assert all(".fp" not in t and "," not in t and t == t.lower() for t in expected.values())
    # Every other byte as it was: each line gains its new last field, nothing else changes.
    for split in SPLITS:
        old = before[split].decode().splitlines()
        new = (corpus / f"{split}.csv").read_text().splitlines()
        values = [COLUMN] + [r[COLUMN] for r in read_manifest(corpus / f"{split}.csv", as_written=True)]
        assert new == [f"{line},{value}" for line, value in zip(old, values)]


def test_a_manifest_read_as_written_and_written_again_is_the_same_bytes(tiny_corpus, tmp_path):
    for split in SPLITS:
        path = tiny_corpus / f"{split}.csv"
        write_csv(tmp_path / path.name, manifest_columns(path), read_manifest(path, as_written=True))
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("name, body", [
    ("hyps.csv", lambda rows: "utt_id,Transcript,score\n" + "".join(
        f'{r["ID"]},"{_raw(r, k)}",0.5\n' for k, r in enumerate(rows))),
    ("hyps.jsonl", lambda rows: "".join(
        json.dumps({"id": r["ID"], "text": _raw(r, k), "lang": "fi"}, ensure_ascii=False) + "\n"
        for k, r in enumerate(rows))),
    # No telling extension: the first line says which.
    ("hyps", lambda rows: "ID,text\n" + "".join(f'{r["ID"]},"{_raw(r, k)}"\n' for k, r in enumerate(rows))),
    ("hyps.txt", lambda rows: "".join(json.dumps({"ID": r["ID"], "asr_words": _raw(r, k)}) + "\n"
                                      for k, r in enumerate(rows))),
])
def test_csv_and_json_lines(corpus, tmp_path, capsys, name, body):
    rows = _rows(corpus)
    (tmp_path / name).write_text(body(rows), encoding="utf-8")
    status, out, _ = _run(capsys, "import-transcripts", corpus, tmp_path / name, "--column", "asr_words")
    summary = json.loads(out)
    assert status == 0 and summary["format"] == ("csv" if "ID,text" in body(rows) or name.endswith("csv")
                                                 else "jsonl")
    assert summary["matched"] == len(rows) and summary["missing"] == summary["unknown"] == 0
    # asr_words is a column of the built-in corpus's manifests already: filled in place.
    assert summary["added_to"] == []
    assert [r["asr_words"] for r in _rows(corpus)] == [normalize_transcript(_raw(r, k)) for k, r in enumerate(rows)]


@pytest.mark.parametrize("name, content, message", [
    ("text", b"a \xff\xfe hei\n", "is not UTF-8 (byte 2): re-save it as UTF-8"),
    ("text", b"\x00\x01\x02PK\x03\x04", "holds NUL bytes"),
    ("hyps.jsonl", b'{"ID": "a", "text": "hei"}\n{"ID": "b", "text": \n', "line 2: not JSON"),
    ("hyps.jsonl", b'["a", "hei"]\n', "line 1: a JSON list, not an object"),
    ("hyps.jsonl", b'{"ID": "a", "words_": "hei"}\n', "line 1 has no text column"),
    ("hyps.csv", b"ID,score\na,1\n", "has no text column (ID, score); name it text or transcript"),
    ("hyps.csv", b"ID,text,transcript\na,x,y\n", "has several text columns (text, transcript)"),
    ("hyps.csv", b"ID,text\na,hei,maailma\n", "line 2: 3 fields, the header has 2; quote a text"),
    ("text", b"\n\n", "holds no transcripts (kaldi)"),
    ("text", b"a hei\nb moi\na terve\n", "line 3: ID 'a' again (first on line 1); keep one transcript per ID"),
    (None, None, "cannot read"),
])
def test_a_file_it_cannot_use_is_one_error_line_and_changes_nothing(corpus, tmp_path, capsys, name,
                                                                     content, message):
    path = tmp_path / (name or "absent")
    if content is not None:
        path.write_bytes(content)
    before = sorted(p.name for p in corpus.iterdir()), _manifest_bytes(corpus)
    status, out, err = _run(capsys, "import-transcripts", corpus, path, "--column", COLUMN)
    assert status == 2 and out == "" and len(err) == 1 and err[0].startswith("error: ")
    assert message in err[0], err[0]
    assert (sorted(p.name for p in corpus.iterdir()), _manifest_bytes(corpus)) == before


def test_a_write_that_fails_on_the_last_manifest_leaves_all_three_as_they_were(corpus, kaldi, monkeypatch):
    import data_prep.transcripts as transcripts

    written = []

    def write_rows(f, columns, rows):
        written.append(f.name)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real(f, columns, rows)

    real = transcripts.write_rows
    monkeypatch.setattr(transcripts, "write_rows", write_rows)
    before = sorted(p.name for p in corpus.iterdir()), _manifest_bytes(corpus)
    with pytest.raises(OSError):
        transcripts.import_transcripts(corpus, kaldi[0], COLUMN)
    assert len(written) == 3 and (sorted(p.name for p in corpus.iterdir()), _manifest_bytes(corpus)) == before


@pytest.mark.parametrize("column, message", [
    ("topic", "is a column the corpus or training uses already"),
    ("words", "is a column the corpus or training uses already"),
    ("text", "is a column the corpus or training uses already"),
    ("a,b", "use letters, digits"),
])
def test_a_column_training_could_not_read_is_refused(corpus, kaldi, capsys, column, message):
    before = _manifest_bytes(corpus)
    status, _, err = _run(capsys, "import-transcripts", corpus, kaldi[0], "--column", column)
    assert status == 2 and len(err) == 1 and message in err[0]
    assert _manifest_bytes(corpus) == before


def test_a_column_an_asr_of_ours_filled_is_not_overwritten_behind_its_record(corpus, kaldi, capsys):
    (corpus / "asr_words.json").write_text("{}")
    status, _, err = _run(capsys, "import-transcripts", corpus, kaldi[0], "--column", "asr_words")
    assert status == 2 and "records the ASR that filled asr_words" in err[0]


def test_a_second_import_overwrites_and_clears_and_says_so(corpus, tmp_path, capsys):
    ids = [r["ID"] for r in _rows(corpus)]
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("".join(f"{i} eka\n" for i in ids))
    second.write_text("".join(f"{i} {'eka' if k == 0 else 'toka'}\n" for k, i in enumerate(ids[:-1])))
    assert _run(capsys, "import-transcripts", corpus, first, "--column", COLUMN)[0] == 0
    status, out, _ = _run(capsys, "import-transcripts", corpus, second, "--column", COLUMN)
    summary = json.loads(out)
    assert status == 0 and summary["added_to"] == []
    # The first row keeps its text (not overwritten), the last is missing now: emptied, not kept.
    assert summary["overwritten"] == len(ids) - 2 and summary["cleared"] == 1
    assert [r[COLUMN] for r in _rows(corpus)] == ["eka"] + ["toka"] * (len(ids) - 2) + [""]


def _text_hparams(corpus, column):
    """What the configuration checks look at of a text system reading ``column``."""
    return {**{f"{s}_csv": str(corpus / f"{s}.csv") for s in SPLITS}, "data_folder": str(corpus),
            "text_encoder": None, "train_text": column, "eval_text": column}


def test_the_text_systems_accept_the_imported_column(corpus, kaldi, capsys):
    with pytest.raises(ConfigError, match=f"train.csv has no column '{COLUMN}'"):
        check_data(_text_hparams(corpus, COLUMN))
    assert _run(capsys, "import-transcripts", corpus, kaldi[0], "--column", COLUMN)[0] == 0
    check_data(_text_hparams(corpus, COLUMN))
    check_data(_text_hparams(corpus, f"{COLUMN},words"))


@pytest.mark.training
def test_the_text_pipeline_trains_on_the_imported_column(corpus, kaldi, capsys, train, tmp_path):
    assert _run(capsys, "import-transcripts", corpus, kaldi[0], "--column", COLUMN)[0] == 0
    run = train("hparams/text.yaml", corpus, tmp_path / "run", "--train_subset=all",
                f"--train_text={COLUMN}", f"--eval_text={COLUMN}", "--number_of_epochs=1")
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["micro_f1"] <= 1
    # It read the imported column: the one dev row the file left out is the one without text.
    n_dev = len(read_manifest(corpus / "dev.csv"))
    assert f"dev: 1 of {n_dev} rows have no text in '{COLUMN}'" in (run / "log.txt").read_text()
