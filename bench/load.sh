#!/usr/bin/env bash
# The 1 KiB part of bench/compare.sh, under its old name and arguments:
#   bench/load.sh [SECONDS] [CONNECTIONS]
# (BORDERGATE_BENCH_AUDIT_DIR is still honoured, as BENCH_AUDIT_DIR.) See bench/README.md.
set -euo pipefail
export BENCH_SECS=${1:-10} BENCH_CONNS=${2:-32} BENCH_ONLY=${BENCH_ONLY:-small}
export BENCH_AUDIT_DIR=${BENCH_AUDIT_DIR:-${BORDERGATE_BENCH_AUDIT_DIR:-}}
exec "$(dirname "$0")/compare.sh"
