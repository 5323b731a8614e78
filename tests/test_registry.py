"""topic_id.config.registry: the registry's rows, in dependency order, and which ASR each row reads."""

import pytest

from topic_id.config.registry import RESULTS_COPY, load_registry, registry_of, transcriber
from topic_id.errors import ConfigError
from conftest import REGISTRY, ROOT

HEADER = "name,table_row,paper_name,hparams,overrides,init_from,needs,train_text,test_text\n"


def _registry(tmp_path, *rows):
    path = tmp_path / "systems.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def test_rows_keep_their_order_and_overrides_become_arguments(tmp_path):
    path = _registry(tmp_path,
                     "asr,,ASR,hparams/asr.yaml,,,,,",
                     "text_asr,2,Text (ASR),hparams/text.yaml,--text_column=asr_words --tag='a b',,asr_words,asr,asr")
    rows = load_registry(path)
    assert [r["name"] for r in rows] == ["asr", "text_asr"]
    assert rows[0]["overrides"] == [] and rows[1]["overrides"] == ["--text_column=asr_words", "--tag=a b"]
    assert rows[1]["table_row"] == "2" and rows[1]["test_text"] == "asr"


@pytest.mark.parametrize("rows, message", [
    (["s2,,,h.yaml,,s1,,,", "s1,,,h.yaml,,,,,"], "s2 starts from s1, listed later"),
    (["text_asr,,,h.yaml,,,asr_words,,", "asr,,,h.yaml,,,,,"], "text_asr needs the ASR of asr, listed later"),
    (["s2,,,h.yaml,,,own_asr:s1,,", "s1,,,h.yaml,,,,,"], "s2 needs the ASR of s1, listed later"),
])
def test_a_row_listed_before_what_it_needs_is_refused(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        load_registry(_registry(tmp_path, *rows))


@pytest.mark.parametrize("needs, expected", [("", None), ("  ", None), ("asr_words", "asr"),
                                             ("own_asr:multitask_s1", "multitask_s1")])
def test_transcriber_names_the_row_whose_asr_fills_asr_words(needs, expected):
    assert transcriber({"needs": needs}) == expected


@pytest.mark.parametrize("needs", ["own_asr:", "asr", "asr_words:x"])
def test_an_unknown_needs_value_is_refused(needs):
    with pytest.raises(ValueError, match="needs must be empty, asr_words or own_asr:<row>"):
        transcriber({"needs": needs})


def test_a_results_tree_carries_its_own_registry(tmp_path):
    (tmp_path / RESULTS_COPY).write_text(HEADER)
    assert registry_of(tmp_path) == tmp_path / RESULTS_COPY
    assert registry_of(tmp_path, REGISTRY) == REGISTRY


def test_a_missing_registry_is_a_config_error_saying_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match=r"systems.csv does not exist \(run_table.sh writes it\): pass --registry"):
        registry_of(tmp_path)
    with pytest.raises(ConfigError, match="other.csv does not exist: pass --registry"):
        registry_of(tmp_path, tmp_path / "other.csv")


def test_the_projects_registry_loads_with_unique_names_and_existing_yamls():
    rows = load_registry(REGISTRY)
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    assert all((ROOT / r["hparams"]).is_file() for r in rows), [r["hparams"] for r in rows]
