"""``python -m topic_id.standins``: see :mod:`topic_id.standins.cli`."""

from topic_id.standins.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
