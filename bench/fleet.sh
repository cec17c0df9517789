#!/usr/bin/env bash
# bench/fleet.sh: a fleet of replicas on files and on PostgreSQL, in one run on one machine.
#
#   bench/fleet.sh                  three rounds of four points, 10 s each (about 3 minutes)
#   BENCH_SECS=5 BENCH_ROUNDS=1 bench/fleet.sh
#
# Points (64 connections in all, spread evenly over the replicas; 1 KiB objects from the
# gateway's file:// store; RS256 tokens; the whole policy pack; durable audit on):
#   1 replica on its own audit file     1 replica on PostgreSQL
#   3 replicas on PostgreSQL (one table, a chain each)   3 replicas on their own files
# Requests/s is the sum over the replicas' wrk runs; p50/p99 are the worst replica's.
# After each point the trail is verified (`audit verify`, every chain) and decision records
# are counted against answered requests. CPU per request is read from /proc for the
# gateways and for every `postgres` process of the machine (the server is shared).
#
# Each round runs the four points in a different order (the machine's noise drifts), and
# the summary takes the median over rounds of each point's req/s and of each round's ratios.
#
# Environment: BENCH_SECS (10), BENCH_ROUNDS (3), BENCH_CONNS (64), BENCH_PG (key=value connection string of a
# superuser; default host=127.0.0.1 port=5432 user=postgres dbname=test), BENCH_PORT (18520),
# BENCH_BIN (target/release/bordergate). Needs wrk, openssl, curl, psql.
# Output: a markdown table on stdout and in bench/results/fleet.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BG=${BENCH_BIN:-$REPO/target/release/bordergate}
SECS=${BENCH_SECS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
PG=${BENCH_PG:-host=127.0.0.1 port=5432 user=postgres dbname=test}
PORT=${BENCH_PORT:-18520}
say() { echo "fleet.sh: $*" >&2; }
die() { say "$*"; exit 2; }
for t in wrk openssl curl psql; do command -v $t >/dev/null || die "missing $t (apt-get install wrk openssl curl postgresql-client)"; done
[ -x "$BG" ] || (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
psql "$PG" -qc 'SELECT 1' >/dev/null || die "no PostgreSQL at '$PG'"

WORK=$(mktemp -d /var/tmp/bordergate-fleet.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/jwt" "$WORK/logs"
cp -r "$REPO/examples/quickstart/store" "$WORK/store"
head -c 1024 /dev/urandom > "$WORK/store/datasets/eu-customers/1k.bin"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/jwt/priv.pem" 2>/dev/null
openssl pkey -in "$WORK/jwt/priv.pem" -pubout -out "$WORK/jwt/pub.pem"
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
token() { rs256_token "$WORK/jwt/priv.pem"; }
TOKEN=$(token)

config() {  # name port sink(file|pg) table
  local audit
  if [ "$3" = pg ]; then
    audit="audit:
  sink: postgres
  postgres:
    dsn: $PG
    table: $4"
  else
    audit="audit:
  path: $WORK/$1-$4.log"
  fi
  cat <<YAML
name: $1
listen:
  address: 127.0.0.1:$2
  plaintext: true
  grace_secs: 5
auth:
  issuer: bordergate-bench
  audience: bordergate
  keys:
    - { kid: bench, alg: RS256, public_key: $WORK/jwt/pub.pem }
$(quickstart_yaml "$WORK/store")
$audit
mode: enforce
YAML
}

CLK_TCK=$(getconf CLK_TCK)
ticks() {  # CPU clock ticks (user + system) used so far by the given pids
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# point label replicas sink
ROWS=()
point() {
  local label=$1 n=$2 sink=$3 table="bench_fleet_$(date +%s%N | tail -c 9)" i pids=() ports=()
  [ "$sink" = pg ] && "$BG" audit migrate --postgres "$PG" --table "$table" >/dev/null
  for i in $(seq 1 "$n"); do
    local port=$((PORT + i))
    config "gw-$i" "$port" "$sink" "$table" > "$WORK/gw-$i.yaml"
    "$BG" serve --config "$WORK/gw-$i.yaml" > "$WORK/logs/gw-$i.out" 2> "$WORK/logs/gw-$i.err" &
    pids+=($!); PIDS+=($!); ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 200); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/datasets/eu-customers/1k.bin" || true)" = 200 ] && break
      sleep 0.05
    done
  done
  local per=$((CONNS / n)) wrks=() pgpids g0 p0
  pgpids=$(pgrep -x postgres || pgrep postgres || true)
  g0=$(ticks "${pids[@]}"); p0=$(ticks $pgpids)
  for port in "${ports[@]}"; do
    wrk -t1 -c"$per" -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" \
      "http://127.0.0.1:$port/datasets/eu-customers/1k.bin" > "$WORK/wrk-$port.out" 2>&1 &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  local g1 p1
  g1=$(ticks "${pids[@]}"); p1=$(ticks $(pgrep -x postgres || pgrep postgres || true))
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
  local rps=0 p50=0 p99=0 reqs=0 errs=0
  for port in "${ports[@]}"; do
    local f=$WORK/wrk-$port.out
    rps=$(awk -v a="$rps" '/Requests\/sec/ {printf "%.0f", a + $2}' "$f")
    reqs=$((reqs + $(awk '/requests in/ {print $1}' "$f")))
    errs=$((errs + $(awk '/Non-2xx/ {print $NF} /Socket errors/ {s=0; for (i=3;i<=NF;i+=2) s+=$i; print s}' "$f" | awk '{s+=$1} END {print s+0}')))
    p50=$(awk -v a="$p50" '$1=="50%" {v=$2; ms=(v ~ /us$/) ? v/1000 : (v ~ /ms$/) ? v+0 : v*1000; if (ms>a) a=ms} END {print a}' "$f")
    p99=$(awk -v a="$p99" '$1=="99%" {v=$2; ms=(v ~ /us$/) ? v/1000 : (v ~ /ms$/) ? v+0 : v*1000; if (ms>a) a=ms} END {print a}' "$f")
  done
  # Every chain whole, and a decision record for every answered request (plus the
  # readiness probes above).
  local ok decisions
  if [ "$sink" = pg ]; then
    ok=$("$BG" audit verify --postgres "$PG" --table "$table" >/dev/null 2>&1 && echo yes || echo NO)
    decisions=$(psql "$PG" -Atc "SELECT count(*) FROM $table WHERE kind = 'decision'")
    psql "$PG" -qc "DROP VIEW IF EXISTS $table CASCADE" >/dev/null 2>&1 || true
    psql "$PG" -qc "DROP TABLE IF EXISTS ${table}_batches, ${table}_heads, ${table}_schema, ${table}_pipl CASCADE; DROP FUNCTION IF EXISTS ${table}_append_only() CASCADE" >/dev/null 2>&1 || true
  else
    ok=yes; decisions=0
    for i in $(seq 1 "$n"); do
      "$BG" audit verify "$WORK/gw-$i-$table.log" >/dev/null 2>&1 || ok=NO
      decisions=$((decisions + $(grep -c '"kind":"decision"' "$WORK/gw-$i-$table.log")))
    done
  fi
  [ "$decisions" -ge "$reqs" ] || ok="NO (decisions $decisions < requests $reqs)"
  local gcpu pcpu
  gcpu=$(awk -v t=$((g1 - g0)) -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", (r > 0) ? t / hz * 1e6 / r : 0}')
  pcpu=$(awk -v t=$((p1 - p0)) -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", (r > 0) ? t / hz * 1e6 / r : 0}')
  say "$label: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, errors $errs, CPU/req gateway ${gcpu} µs postgres ${pcpu} µs, verified $ok"
  ROWS+=("| $ROUND | $label | $rps | $p50 | $p99 | $gcpu | $pcpu | $errs | $ok |")
  eval "RPS_${sink}_$n=$rps"
  eval "ALL_${sink}_$n+=\" $rps\""
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

say "$ROUNDS rounds, $SECS s per point, $CONNS connections in all"
POINTS=("1 replica, file|1|file" "1 replica, PostgreSQL|1|pg" "3 replicas, PostgreSQL|3|pg" "3 replicas, files|3|file")
R1=(); R3=()
for ROUND in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2 3; do
    IFS='|' read -r label n sink <<< "${POINTS[$(( (k + ROUND - 1) % 4 ))]}"
    point "$label" "$n" "$sink"
  done
  R1+=("$(ratio "$RPS_pg_1" "$RPS_file_1")"); R3+=("$(ratio "$RPS_pg_3" "$RPS_file_3")")
  say "round $ROUND: 1 replica PostgreSQL/file ${R1[-1]}, 3 replicas ${R3[-1]}"
done
# shellcheck disable=SC2086
MED_file_1=$(median $ALL_file_1); MED_pg_1=$(median $ALL_pg_1)
# shellcheck disable=SC2086
MED_file_3=$(median $ALL_file_3); MED_pg_3=$(median $ALL_pg_3)
{
  echo "# bordergate fleet benchmark"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$REPO" rev-parse --short HEAD), $(nproc) CPUs, $ROUNDS rounds, ${SECS} s per point, $CONNS connections in all, 1 KiB objects, PostgreSQL $(psql "$PG" -Atc 'SHOW server_version')"
  echo
  echo "| round | point | req/s | p50 ms | p99 ms | CPU/req gateways µs | CPU/req PostgreSQL µs | errors | verified, decisions ≥ requests |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Median over rounds: 1 replica file $MED_file_1, PostgreSQL $MED_pg_1; 3 replicas files $MED_file_3, PostgreSQL $MED_pg_3 req/s."
  echo
  echo "- 1 replica: PostgreSQL / file = $(ratio "$MED_pg_1" "$MED_file_1") of the medians; per round ${R1[*]}; median $(median "${R1[@]}") (target ≥ 0.8)"
  echo "- 3 replicas: PostgreSQL / files = $(ratio "$MED_pg_3" "$MED_file_3") of the medians; per round ${R3[*]}; median $(median "${R3[@]}") (target ≥ 0.8)"
  echo "- PostgreSQL: 3 replicas / 1 replica = $(ratio "$MED_pg_3" "$MED_pg_1")"
} | tee "$REPO/bench/results/fleet.md"
