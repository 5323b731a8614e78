"""``python -m topic_id.table``: run the table (see :mod:`topic_id.table.command`)."""

import sys

from topic_id.table.command import main

if __name__ == "__main__":
    sys.exit(main())
