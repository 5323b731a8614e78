#!/usr/bin/env bash
# Reproduce Table I: prepare -> stand-ins -> ASR -> transcribe -> every recipes/systems.csv row x
# seeds -> report. Stage-gated (--stage N --stop_stage M); finished runs are skipped and interrupted
# ones resume. The stage logic lives in topic_id/table/planner.py.
#
#   bash recipes/run_table.sh --corpus demo --out demo_out
#   bash recipes/run_table.sh --corpus lp --corpus-dir /corpora/lp --out lp_out --seeds "1 2 3" --profile paper
#   bash recipes/run_table.sh --corpus slurp --corpus-dir /corpora/slurp --out slurp_out --seeds "1 2 3"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" -m topic_id.table "$@"
