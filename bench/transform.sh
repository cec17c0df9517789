#!/usr/bin/env bash
# bench/transform.sh: minimisation in transit against untransformed streaming, end to end
# through the release gateway, in one run on one machine.
#
#   bench/transform.sh                   512 MiB CSV, Parquet of comparable size, 3 runs a point
#   BENCH_MB=128 BENCH_RUNS=1 bench/transform.sh
#
# Points, each a whole-file GET by curl (-o /dev/null) over plain HTTP from the gateway's
# file:// store (a temporary copy of the quickstart store and catalog, the whole policy
# pack, durable audit log):
#   CSV plain          a caller in Germany: the file as it is
#   CSV minimised      hooli-us (SCCs, training): rule eu.scc.us-training-minimised
#                      (identifiers pseudonymised, quasi-identifiers coarsened or dropped,
#                      free text redacted)
#   Parquet plain / Parquet minimised   the same for a Parquet file of the same rows
# Reported per point (the median of BENCH_RUNS runs): MB/s of source bytes (10^6 bytes/s of
# the file's size, whatever the transformed output's), the gateway's CPU seconds
# (utime+stime from /proc), its peak RSS (VmHWM, reset before each run) and its growth
# over the RSS before the run; then minimised / plain for each format (target on CSV ≥ 0.5).
#
# The CSV repeats the quickstart tickets with a distinct customer_id per row (so every
# pseudonym is computed, none repeats). The Parquet file holds the same rows, written by
# pyarrow without dictionary encoding or compression (BENCH_PARQUET_COMPRESSION) in row
# groups of 65,536 rows, so its size is comparable to the CSV's.
#
# Environment: BENCH_MB (512), BENCH_RUNS (3), BENCH_PORT (18560), BENCH_BIN
# (target/release/bordergate), BENCH_PYTHON (a python with pyarrow: BORDERGATE_TEST_PYTHON,
# else python3; without pyarrow the Parquet points are left out), BENCH_PIN (1: gateway on
# the first half of the CPUs with TOKIO_WORKER_THREADS set to their number, curl on the
# other half), BENCH_PARQUET_COMPRESSION (none), BENCH_PERF (1: `perf record -g` the
# gateway through each point's first run, the report in bench/results/perf-transform-*.txt,
# git-ignored; the CPU figures of that run include perf's cost). Needs curl, taskset, awk.
# Output: a markdown table on stdout and in bench/results/transform.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BG=${BENCH_BIN:-$REPO/target/release/bordergate}
MB=${BENCH_MB:-512}
RUNS=${BENCH_RUNS:-3}
PORT=${BENCH_PORT:-18560}
PIN=${BENCH_PIN:-1}
PY=${BENCH_PYTHON:-${BORDERGATE_TEST_PYTHON:-python3}}
PQ_COMPRESSION=${BENCH_PARQUET_COMPRESSION:-none}
PERF=${BENCH_PERF:-0}
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
say() { echo "transform.sh: $*" >&2; }
die() { say "$*"; exit 2; }
for t in curl taskset awk; do command -v $t >/dev/null || die "missing $t (apt-get install curl util-linux gawk)"; done
command -v "$PY" >/dev/null || die "no python at '$PY' (BENCH_PYTHON)"
[ -x "$BG" ] || (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
HAVE_PYARROW=1
"$PY" -c 'import pyarrow' 2>/dev/null || { HAVE_PYARROW=0; say "no pyarrow in $PY: Parquet points left out (BENCH_PYTHON)"; }

NPROC=$(nproc --all)
if [ "$PIN" = 1 ] && [ "$NPROC" -ge 2 ]; then
  half=$((NPROC / 2))
  span() { [ "$1" = "$2" ] && echo "$1" || echo "$1-$2"; }
  SCPUS=$(span 0 $((half - 1))); CCPUS=$(span "$half" $((NPROC - 1)))
  ON_SERVER=(taskset -c "$SCPUS"); ON_CLIENT=(taskset -c "$CCPUS")
  NSERV=$half
  PINNING="gateway \`taskset -c $SCPUS\`, \`TOKIO_WORKER_THREADS=$NSERV\` (its blocking pool, where transforms run, inherits the mask); curl \`taskset -c $CCPUS\`"
else
  ON_SERVER=(); ON_CLIENT=(); NSERV=$NPROC
  PINNING="none: gateway (\`TOKIO_WORKER_THREADS=$NSERV\`) and curl share every CPU"
fi

WORK=$(mktemp -d /var/tmp/bordergate-transform.XXXXXX)
GW=""
cleanup() { if [ -n "$GW" ]; then kill "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true; fi; rm -rf "$WORK"; }
trap cleanup EXIT
cp -r "$REPO/examples/quickstart/store" "$WORK/store"
DATA=$WORK/store/datasets/eu-tickets

say "generating a $MB MiB CSV and its Parquet twin in $WORK"
"$PY" - "$REPO/examples/quickstart/store/datasets/eu-tickets/tickets.csv" "$DATA/big.csv" "$((MB << 20))" <<'PY'
import csv, io, sys
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src, newline="") as f:
    rows = list(csv.reader(f))
header, rows = rows[0], rows[1:]
cid = header.index("customer_id")
# Each source row as CSV text with a placeholder where its customer_id goes.
def line(r):
    b = io.StringIO()
    csv.writer(b, lineterminator="\n").writerow(r[:cid] + ["\0"] + r[cid + 1:])
    return b.getvalue().split("\0")
parts = [line(r) for r in rows]
written, n = 0, 0
with open(dst, "w", newline="", buffering=1 << 20) as out:
    out.write(",".join(header) + "\n")
    batch = []
    while written < size:
        a, b = parts[n % len(parts)]
        s = f"{a}C{n}{b}"
        batch.append(s)
        written += len(s.encode())
        n += 1
        if len(batch) == 4096:
            out.write("".join(batch)); batch = []
    out.write("".join(batch))
PY
CSV_BYTES=$(stat -c %s "$DATA/big.csv")
if [ "$HAVE_PYARROW" = 1 ]; then
  "$PY" - "$DATA/big.csv" "$DATA/big.parquet" "$PQ_COMPRESSION" <<'PY'
import sys
import pyarrow as pa, pyarrow.csv as pc, pyarrow.parquet as pq
src, dst, comp = sys.argv[1], sys.argv[2], sys.argv[3]
# The quickstart's tickets.parquet types: age int64, the rest strings.
reader = pc.open_csv(src, read_options=pc.ReadOptions(block_size=8 << 20),
                     convert_options=pc.ConvertOptions(column_types={"age": pa.int64()},
                                                       strings_can_be_null=False))
schema = pa.schema([f if f.name == "age" else pa.field(f.name, pa.string()) for f in reader.schema])
with pq.ParquetWriter(dst, schema, compression=comp, use_dictionary=False) as w:
    pending = []
    rows = 0
    for b in reader:
        pending.append(b.cast(schema))
        rows += b.num_rows
        if rows >= 65536:
            t = pa.Table.from_batches(pending, schema)
            w.write_table(t, row_group_size=65536)
            pending, rows = [], 0
    if pending:
        w.write_table(pa.Table.from_batches(pending, schema), row_group_size=65536)
PY
  PQ_BYTES=$(stat -c %s "$DATA/big.parquet")
fi
ROWS_N=$(($(wc -l < "$DATA/big.csv") - 1))

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/eu.hex"
cat > "$WORK/keys.yaml" <<YAML
regions:
  eu:
    current: eu-bench
    keys:
      eu-bench: $(cat "$WORK/eu.hex")
YAML
cat > "$WORK/gateway.yaml" <<YAML
listen:
  address: 127.0.0.1:$PORT
  plaintext: true
  grace_secs: 5
auth:
  issuer: bordergate-dev
  audience: bordergate
  keys:
    - kid: dev
      alg: HS256
      secret:
        file: $WORK/hs256.secret
      generate_dev_secret: true
$(quickstart_yaml "$WORK/store")
audit:
  path: $WORK/audit.log
transform:
  keys: $WORK/keys.yaml
mode: enforce
YAML

TOKIO_WORKER_THREADS=$NSERV BORDERGATE_LOG=warn "${ON_SERVER[@]}" "$BG" serve --config "$WORK/gateway.yaml" \
  > "$WORK/gw.out" 2> "$WORK/gw.err" &
GW=$!
for _ in $(seq 1 200); do grep -q listening "$WORK/gw.out" 2>/dev/null && break; sleep 0.05; done
grep -q listening "$WORK/gw.out" || { cat "$WORK/gw.err" >&2; die "the gateway did not start"; }
token() { "$BG" token --sub "$1" --org "$2" --jurisdiction "$3" --purpose training --config "$WORK/gateway.yaml"; }
DE=$(token alice acme-de DE)
US=$(token hana hooli-us US)

CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$GW/stat"; }
rss_kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$GW/status"; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

ROWS=()
# point label file token source-bytes: RUNS whole-file GETs; medians in MBS_<id> etc.
point() {
  local id=$1 label=$2 file=$3 tok=$4 src=$5 i out code size secs t0 t1 before peak
  local mbs=() cpu=() hwm=() growth=() sent=""
  for i in $(seq 1 "$RUNS"); do
    local perf=""
    if [ "$PERF" = 1 ] && [ "$i" = 1 ]; then
      perf record -q -F 999 -g -p "$GW" -o "$WORK/perf-$id.data" 2>/dev/null &
      perf=$!; sleep 0.5
    fi
    echo 5 > "/proc/$GW/clear_refs" 2>/dev/null || true
    before=$(rss_kb VmRSS); t0=$(ticks)
    out=$("${ON_CLIENT[@]}" curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
      -H "Authorization: Bearer $tok" "http://127.0.0.1:$PORT/datasets/eu-tickets/$file")
    t1=$(ticks); peak=$(rss_kb VmHWM)
    if [ -n "$perf" ]; then
      kill -INT "$perf"; wait "$perf" || true
      perf report -i "$WORK/perf-$id.data" --stdio --no-children --percent-limit 0.5 2>/dev/null \
        > "$REPO/bench/results/perf-transform-$id.txt" || true
    fi
    read -r code size secs <<< "$out"
    [ "$code" = 200 ] || die "$label: HTTP $code ($(tail -n 3 "$WORK/gw.err"))"
    [ -z "$sent" ] && sent=$size
    mbs+=("$(awk -v b="$src" -v s="$secs" 'BEGIN {printf "%.1f", b / s / 1e6}')")
    cpu+=("$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')")
    hwm+=("$((peak >> 10))")
    growth+=("$(((peak - before) >> 10))")
    say "$label run $i: ${mbs[-1]} MB/s, ${cpu[-1]} CPU s, peak RSS ${hwm[-1]} MiB (+${growth[-1]} MiB), $((size >> 20)) MiB sent"
  done
  local m c h g
  m=$(printf '%s\n' "${mbs[@]}" | median); c=$(printf '%s\n' "${cpu[@]}" | median)
  h=$(printf '%s\n' "${hwm[@]}" | sort -n | tail -n1); g=$(printf '%s\n' "${growth[@]}" | sort -n | tail -n1)
  eval "MBS_$id=$m CPU_$id=$c"
  ROWS+=("| $label | $((src >> 20)) | $((sent >> 20)) | $m | $c | $(awk -v c="$c" -v b="$src" 'BEGIN {printf "%.2f", c / (b / 2^30)}') | $h | $g |")
}

point csv_plain "CSV plain (DE)" big.csv "$DE" "$CSV_BYTES"
point csv_min "CSV minimised (US, SCCs)" big.csv "$US" "$CSV_BYTES"
if [ "$HAVE_PYARROW" = 1 ]; then
  point pq_plain "Parquet plain (DE)" big.parquet "$DE" "$PQ_BYTES"
  point pq_min "Parquet minimised (US, SCCs)" big.parquet "$US" "$PQ_BYTES"
fi
kill -TERM "$GW"; wait "$GW" || true; GW=""
VERIFY=$("$BG" audit verify "$WORK/audit.log" >/dev/null 2>&1 && echo "verified" || echo "NOT VERIFIED")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
CSV_RATIO=$(ratio "$MBS_csv_min" "$MBS_csv_plain")
{
  echo "# bordergate transform benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$REPO" rev-parse --short HEAD), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo
  echo "Whole-file GETs by curl over plain HTTP from the gateway's file:// store, median of $RUNS runs; pinning: $PINNING. CSV: $ROWS_N rows, $((CSV_BYTES >> 20)) MiB.$([ "$HAVE_PYARROW" = 1 ] && echo " Parquet: the same rows, $((PQ_BYTES >> 20)) MiB (pyarrow, no dictionary, compression $PQ_COMPRESSION, row groups of 65,536 rows).") Audit log: $VERIFY."
  echo
  echo "| point | source MiB | sent MiB | MB/s (source) | CPU s | CPU s/GiB | peak RSS MiB | RSS growth MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "- CSV: minimised / plain = $CSV_RATIO× MB/s (target ≥ 0.5), CPU $(ratio "$CPU_csv_min" "$CPU_csv_plain")×"
  if [ "$HAVE_PYARROW" = 1 ]; then
    echo "- Parquet: minimised / plain = $(ratio "$MBS_pq_min" "$MBS_pq_plain")× MB/s, CPU $(ratio "$CPU_pq_min" "$CPU_pq_plain")×"
  fi
} | tee "$REPO/bench/results/transform.md"
awk -v r="$CSV_RATIO" 'BEGIN {exit !(r >= 0.5)}' || { say "CSV minimised is below 0.5× plain"; exit 1; }
