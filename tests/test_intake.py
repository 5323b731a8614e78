"""Reading metadata rows and accounting for them."""

import pytest

from data_prep.intake import Intake, read_metadata, wav_entry
from data_prep.manifest import PrepError, Row


def test_read_metadata_sniffs_delimiter_and_skips_blank_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("\ufeffpath;topic;extra\n a.wav ; x\n\nb.wav;y;1\n", encoding="utf-8")
    rows = read_metadata(path, ("path", "topic"))
    assert rows == [(f"{path}:2", {"path": "a.wav", "topic": "x", "extra": ""}),
                    (f"{path}:4", {"path": "b.wav", "topic": "y", "extra": "1"})]


def test_read_metadata_missing_column_names_column_and_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("file,topic\na.wav,x\n")
    with pytest.raises(PrepError, match=r"lacks the required column\(s\) path .*header: file, topic"):
        read_metadata(path, ("path", "topic"))
    with pytest.raises(PrepError, match="cannot read metadata file"):
        read_metadata(tmp_path / "nope.csv", ("path",))


def test_read_metadata_non_utf8_only_breaks_rows_that_use_it(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("path,topic,note\na.wav,x,J\xe4\nb\xe4.wav,y,\nc.wav,z,\n".encode("latin-1"))
    rows = read_metadata(path, ("path", "topic"))
    assert [values and values["path"] for _, values in rows] == ["a.wav", None, "c.wav"]
    assert rows[1][0] == f"{path}:3"


def test_intake_claims_ids_and_accounts(tmp_path):
    intake = Intake()
    assert intake.claim_id("a", "m.csv:2") is None
    assert "duplicate ID 'a', first at m.csv:2" in intake.claim_id("a", "m.csv:3")
    assert "empty ID" in intake.claim_id("", "m.csv:4")
    assert "invalid ID" in intake.claim_id("../x", "m.csv:5", filename=True)
    intake.drop_rows([(Row("a", "w", 1.0, "t"), "why")])
    assert intake.dropped[0].source == "m.csv:2" and intake.ids == {"a"}


def test_wav_entry_relative_under_out_dir(tmp_path):
    assert wav_entry(tmp_path / "out" / "audio" / "a.wav", tmp_path / "out") == "$data_root/audio/a.wav"
    assert wav_entry(tmp_path / "elsewhere.wav", tmp_path / "out") == str((tmp_path / "elsewhere.wav").resolve())
