"""topic_id.errors: a configuration problem is one ``error:`` line on stderr and exit status 2."""

import pytest

from topic_id.errors import ConfigError, exit_with, one_line


def test_a_config_error_is_a_value_error():
    """Code that validates values with ``except ValueError`` also catches configuration problems."""
    assert issubclass(ConfigError, ValueError)


def test_one_line_joins_every_kind_of_line_break_and_indent():
    assert one_line("while parsing\n  in 'a.yaml', line 3\r\n\tcolumn 5 ") == "while parsing in 'a.yaml', line 3 column 5"
    assert one_line(FileNotFoundError(2, "No such file")) == "[Errno 2] No such file"


def test_exit_with_prints_one_error_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        exit_with(ConfigError("--sorting=rnd is not one of random, ascending\n(set it in the YAML)"))
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    assert err == "error: --sorting=rnd is not one of random, ascending (set it in the YAML)\n"


def test_exit_with_takes_another_status(capsys):
    with pytest.raises(SystemExit) as stop:
        exit_with("interrupted", status=130)
    assert stop.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"
