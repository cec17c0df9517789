#!/usr/bin/env bash
# bench/compare.sh: bordergate against its nginx twins, in one run on one machine.
#
#   bench/compare.sh                      full run (about 9 minutes on 2 cores)
#   BENCH_QUICK=1 bench/compare.sh        3 s points, no 1 GiB / 4 GiB runs (under 3 minutes)
#   BENCH_ONLY=small bench/compare.sh     one part: small | large | fsync (comma-separated list)
#
# Measures, side by side and interleaved so that the machine's noise hits every target alike:
#   nginx serving static files (the origin), plain and TLS
#   nginx as a reverse proxy to that origin (HTTP/1.1 keep-alive upstream), plain and TLS
#   bordergate -> the same origin, plain and TLS; bordergate's own file:// store, plain and TLS;
#   bordergate -> origin with the audit log on tmpfs (what durability costs)
# bordergate runs as in production: RS256 tokens, the whole policy pack, the quickstart
# registry, and the hash-chained, fdatasync'ed audit log on the benchmarked disk.
#
# Environment:
#   BENCH_SECS=10          seconds per point (default 10, 3 with BENCH_QUICK=1)
#   BENCH_QUICK=1          short points, skip the 1 GiB and 4 GiB transfers
#   BENCH_ONLY=LIST        small, large, fsync (default: all three)
#   BENCH_CONNS="1 16 64"  connection counts of the 1 KiB runs
#   BENCH_LARGE_CONNS=4    connections of the 1 MiB runs (1 GiB and 4 GiB: one transfer at a time)
#   BENCH_AUDIT_DIR=DIR    where the audit logs and the fsync probe go (default: the work dir,
#                          or /var/tmp if that is tmpfs); /dev/shm shows the cost of durability
#   BENCH_SHM=0            skip the extra "audit log on tmpfs" bordergate instance
#   BENCH_PIN=0            no pinning (default: servers on the first half of the CPUs, the
#                          load generator on the rest; see BENCH_SERVER_CPUS, BENCH_CLIENT_CPUS)
#   BENCH_PORT=18480       first of the 7 consecutive loopback ports used
#   BENCH_KEEP=1           keep the work dir (printed) for inspection
#   BENCH_BIN=PATH         the bordergate binary (default target/release/bordergate)
#   BENCH_PERF=1           record each bordergate 1 KiB point with `perf record -e cpu-clock -g`
#                          (software clock: works in VMs without PMU); reports (user + kernel
#                          symbols, by self time) land in bench/results/perf-<id>-<conns>.txt
#
# Output: one markdown table on stdout, also written to bench/results/latest.md (and a
# timestamped copy with the raw numbers next to it, git-ignored). Exit status 1 if a check
# failed (audit verify, decisions < requests, RSS growth > 64 MiB, errors in a run).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
BG=${BENCH_BIN:-$REPO/target/release/bordergate}
T_START=$(date +%s)

die() { echo "compare.sh: $*" >&2; exit 2; }
say() { echo "compare.sh: $*" >&2; }

# ---------------------------------------------------------------- options
QUICK=${BENCH_QUICK:-0}
[ "$QUICK" = 1 ] && SECS_DEFAULT=3 || SECS_DEFAULT=10
SECS=${BENCH_SECS:-$SECS_DEFAULT}
ONLY=${BENCH_ONLY:-small,large,fsync}
CONNS=${BENCH_CONNS:-1 16 64}
LARGE_CONNS=${BENCH_LARGE_CONNS:-4}
PORT=${BENCH_PORT:-18480}
PIN=${BENCH_PIN:-1}
SHM=${BENCH_SHM:-1}
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECS must be a whole number of seconds, not '$SECS'"
for part in ${ONLY//,/ }; do
  case $part in small|large|fsync) ;; *) die "BENCH_ONLY: unknown part '$part' (small, large, fsync)";; esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ---------------------------------------------------------------- tools
missing=()
for t in wrk nginx openssl python3 curl taskset pgrep awk git getconf nproc; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  die "missing tools: ${missing[*]} (Debian: apt-get install wrk nginx-light openssl python3 curl util-linux procps gawk git)"
fi
if [ ! -x "$BG" ]; then
  say "no release build at $BG; building it (cargo build --release)"
  (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
fi
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc --all)

# ---------------------------------------------------------------- pinning
count_cpus() { taskset -c "$1" nproc; }
if [ "$PIN" = 1 ] && [ "$NPROC" -ge 2 ]; then
  half=$((NPROC / 2))
  range() { [ "$1" = "$2" ] && echo "$1" || echo "$1-$2"; }
  SCPUS=${BENCH_SERVER_CPUS:-$(range 0 $((half - 1)))}
  CCPUS=${BENCH_CLIENT_CPUS:-$(range "$half" $((NPROC - 1)))}
  NSERV=$(count_cpus "$SCPUS") || die "BENCH_SERVER_CPUS='$SCPUS' is not a usable CPU list"
  NCLI=$(count_cpus "$CCPUS") || die "BENCH_CLIENT_CPUS='$CCPUS' is not a usable CPU list"
  ON_SERVER=(taskset -c "$SCPUS")
  ON_CLIENT=(taskset -c "$CCPUS")
  PINNING="servers (nginx origin, nginx proxy, bordergate) \`taskset -c $SCPUS\`, nginx \`worker_processes $NSERV\` each, bordergate \`TOKIO_WORKER_THREADS=$NSERV\` (tokio honours it; its blocking pool and audit writer inherit the CPU mask); load generator \`taskset -c $CCPUS\`, \`wrk -t$NCLI\` / one curl"
else
  NSERV=$NPROC NCLI=$NPROC
  ON_SERVER=() ON_CLIENT=()
  PINNING="none (BENCH_PIN=0 or one CPU): nginx \`worker_processes $NSERV\`, bordergate \`TOKIO_WORKER_THREADS=$NSERV\`, \`wrk -t$NCLI\`; servers and load generator share every CPU"
fi

# ---------------------------------------------------------------- work dir, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bordergate-compare.XXXXXX")
chmod 755 "$WORK"   # nginx workers may run unprivileged
PIDS=()             # every long-running process started here
AUDIT_BASE=""       # audit dirs created outside WORK
SHM_DIR=""
BIGFILES=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  for p in "${BIGFILES[@]}"; do rm -f "$p"; done
  [ -n "$SHM_DIR" ] && rm -rf "$SHM_DIR"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    say "work dir kept: $WORK ${AUDIT_BASE:+(audit logs in $AUDIT_BASE)}"
  else
    rm -rf "$WORK"
    [ -n "$AUDIT_BASE" ] && rm -rf "$AUDIT_BASE"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RES=$WORK/results
mkdir -p "$RES" "$WORK/logs" "$WORK/tmp" "$WORK/store/datasets/eu-customers" "$WORK/store/mirror"
ln -s ../datasets "$WORK/store/mirror/datasets"   # the origin serves /mirror/… from the same files
OBJ=$WORK/store/datasets/eu-customers

fstype() { df -PT "$1" | awk 'NR == 2 {print $2}'; }
if [ -n "${BENCH_AUDIT_DIR:-}" ]; then
  [ -d "$BENCH_AUDIT_DIR" ] || die "BENCH_AUDIT_DIR=$BENCH_AUDIT_DIR is not a directory"
  AUDIT_BASE=$(mktemp -d "$BENCH_AUDIT_DIR/bordergate-compare-audit.XXXXXX")
elif [ "$(fstype "$WORK")" = tmpfs ]; then
  AUDIT_BASE=$(mktemp -d /var/tmp/bordergate-compare-audit.XXXXXX)
fi
AUDIT_DIR=${AUDIT_BASE:-$WORK/audit}
mkdir -p "$AUDIT_DIR"
AUDIT_FS=$(fstype "$AUDIT_DIR")
AUDIT_DEV=$(df -P "$AUDIT_DIR" | awk 'NR==2 {print $1 " mounted on " $6}')
if [ "$SHM" = 1 ] && [ "$AUDIT_FS" != tmpfs ] && [ -d /dev/shm ] && want small; then
  SHM_DIR=$(mktemp -d /dev/shm/bordergate-compare.XXXXXX)
else
  SHM=0
fi

# ---------------------------------------------------------------- machine state
read_stat() { awk '/^cpu / {b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6, $9}' /proc/stat; }  # busy total steal
read -r M0_BUSY M0_TOTAL M0_STEAL < <(read_stat)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$NPROC"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -sr)"
  echo "commit=$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (src modified)')"
  echo "branch=$(git -C "$REPO" rev-parse --abbrev-ref HEAD)"
  echo "version=$("$BG" --version)"
  if [ "$(stat -c %Y "$BG")" -lt "$(git -C "$REPO" log -1 --format=%ct)" ]; then
    echo "stale=the release binary is older than the last commit: rebuild with \`cargo build --release\`"
  fi
  echo "pinning=$PINNING"
  echo "secs=$SECS"
  echo "quick=$QUICK"
  echo "only=$ONLY"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "audit_dir=$AUDIT_DIR"
  echo "audit_fs=$AUDIT_FS on $AUDIT_DEV"
  echo "load0=$LOAD0"
} > "$RES/meta"

# ---------------------------------------------------------------- helpers
# CPU ticks (utime + stime) of the given processes.
ticks() {
  local t=0 p line a
  for p in "$@"; do
    read -r line < "/proc/$p/stat" || continue
    read -ra a <<< "${line##*) }"
    t=$((t + a[11] + a[12]))
  done
  echo "$t"
}
# Children's CPU ticks of this shell (wrk, curl), from the `times` builtin, into CT; it
# must run in this shell, not in $(…), whose children are not this shell's.
child_ticks() {
  times > "$WORK/times"
  CT=$(awk -v hz="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%d\n", t * hz + 0.5 }' "$WORK/times")
}
# Peak RSS (VmHWM, kB) summed over the processes; reset_hwm starts a new peak.
reset_hwm() { local p; for p in "$@"; do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }
hwm_kb() { local p t=0 v; for p in "$@"; do v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status"); t=$((t + ${v:-0})); done; echo "$t"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # port pid what
  local i
  for i in $(seq 1 200); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  say "$3 did not start listening on 127.0.0.1:$1; its log:"
  cat "$WORK/logs/$3".* >&2 2>/dev/null || true
  exit 2
}
for p in $(seq "$PORT" $((PORT + 6))); do
  port_open "$p" && die "port $p is in use; pick other ports with BENCH_PORT=N (7 consecutive)"
done
P_ORIGIN=$PORT P_ORIGIN_TLS=$((PORT + 1)) P_PROXY=$((PORT + 2)) P_PROXY_TLS=$((PORT + 3))
P_BG=$((PORT + 4)) P_BG_TLS=$((PORT + 5)) P_BG_SHM=$((PORT + 6))

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
token() { rs256_token "$WORK/jwt/priv.pem"; }

pad() { local s=$1; while [ ${#s} -lt 38 ]; do s+=" "; done; printf '%s' "$s"; }  # by characters, not bytes
FAILS=()
fail() { FAILS+=("$*"); echo "compare.sh: FAIL: $*" >&2; }

# ---------------------------------------------------------------- fsync probe
if want fsync; then
  say "fsync rate of $AUDIT_DIR ($AUDIT_FS), ${SECS}s per batch size"
  for b in 1 64; do
    "${ON_SERVER[@]}" python3 "$BENCH/compare_fsync.py" "$AUDIT_DIR" "$SECS" "$b" 300 >> "$RES/fsync.tsv"
    tail -1 "$RES/fsync.tsv" | awk -F'\t' '{printf "  %2d record(s) per fdatasync: %8.0f fsyncs/s %9.0f records/s  p50 %.3f ms  p99 %.3f ms\n", $1, $4, $5, $6, $7}' >&2
  done
fi

# ---------------------------------------------------------------- servers
if want small || want large; then
  say "setting up in $WORK"
  head -c 1024 /dev/urandom > "$OBJ/1k.bin"
  head -c $((1 << 20)) /dev/urandom > "$OBJ/1m.bin"
  mkdir -p "$WORK/tls" "$WORK/jwt"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/jwt/priv.pem" 2>/dev/null
  openssl pkey -in "$WORK/jwt/priv.pem" -pubout -out "$WORK/jwt/pub.pem"
  chmod 644 "$WORK/tls/"*.pem

  TEMPS="client_body_temp_path $WORK/tmp/body; proxy_temp_path $WORK/tmp/proxy; fastcgi_temp_path $WORK/tmp/fcgi; uwsgi_temp_path $WORK/tmp/uwsgi; scgi_temp_path $WORK/tmp/scgi;"
  TLS_CONF="ssl_certificate $WORK/tls/cert.pem; ssl_certificate_key $WORK/tls/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
  cat > "$WORK/origin.conf" <<NGINX
daemon off;
worker_processes $NSERV;
pid $WORK/origin.pid;
error_log $WORK/logs/origin.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  $TEMPS
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server { listen 127.0.0.1:$P_ORIGIN; root $WORK/store; }
  server { listen 127.0.0.1:$P_ORIGIN_TLS ssl; $TLS_CONF root $WORK/store; }
}
NGINX
  cat > "$WORK/proxy.conf" <<NGINX
daemon off;
worker_processes $NSERV;
pid $WORK/proxy.pid;
error_log $WORK/logs/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  $TEMPS
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 64; keepalive_requests 1000000; keepalive_timeout 120s; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_max_temp_file_size 0;   # stream large bodies, never spool them to disk
  server { listen 127.0.0.1:$P_PROXY; location / { proxy_pass http://origin; } }
  server { listen 127.0.0.1:$P_PROXY_TLS ssl; $TLS_CONF location / { proxy_pass http://origin; } }
}
NGINX

  start_nginx() {  # name → its master's pid in NGINX_MASTER
    "${ON_SERVER[@]}" nginx -c "$WORK/$1.conf" -p "$WORK" -e "$WORK/logs/$1.err" \
      > "$WORK/logs/$1.out" 2>&1 &
    NGINX_MASTER=$!
    PIDS+=("$NGINX_MASTER")
  }
  start_nginx origin; ORIGIN_MASTER=$NGINX_MASTER
  start_nginx proxy; PROXY_MASTER=$NGINX_MASTER
  wait_port "$P_ORIGIN" "$ORIGIN_MASTER" origin
  wait_port "$P_ORIGIN_TLS" "$ORIGIN_MASTER" origin
  wait_port "$P_PROXY" "$PROXY_MASTER" proxy
  wait_port "$P_PROXY_TLS" "$PROXY_MASTER" proxy
  nginx_pids() { echo "$1" $(pgrep -P "$1" || true); }
  ORIGIN_PIDS=$(nginx_pids "$ORIGIN_MASTER")
  PROXY_PIDS=$(nginx_pids "$PROXY_MASTER")

  cp "$REPO/examples/quickstart/catalog.yaml" "$WORK/catalog.yaml"
  cat >> "$WORK/catalog.yaml" <<YAML

  - id: mirror-customers
    kind: dataset
    description: eu-customers as served by the nginx origin
    match: { prefix: /mirror/datasets/eu-customers/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics, training]
YAML
  gateway_yaml() {  # port tls(0|1) audit-log
    local listen
    if [ "$2" = 1 ]; then
      listen="  tls: { cert: $WORK/tls/cert.pem, key: $WORK/tls/key.pem }"
    else
      listen="  plaintext: true"
    fi
    cat <<YAML
listen:
  address: 127.0.0.1:$1
$listen
  grace_secs: 5
auth:
  issuer: bordergate-bench
  audience: bordergate
  keys:
    - { kid: bench, alg: RS256, public_key: $WORK/jwt/pub.pem }
upstreams:
  - name: eu-store
    url: file://$WORK/store
    jurisdiction: DE
  - name: origin
    url: http://127.0.0.1:$P_ORIGIN/
    jurisdiction: DE
routes:
  - prefix: /datasets/
    upstream: eu-store
  - prefix: /mirror/
    upstream: origin
catalog: $WORK/catalog.yaml
policies: $REPO/policies
registry: $REPO/examples/quickstart/registry.yaml
audit:
  path: $3
mode: enforce
YAML
  }
  declare -A BG_PID BG_LOG BG_REQS BG_PORT BG_SCHEME
  start_bg() {  # name port tls audit-dir
    local name=$1 pid
    BG_LOG[$name]=$4/$name-audit.log
    BG_PORT[$name]=$2
    [ "$3" = 1 ] && BG_SCHEME[$name]=https || BG_SCHEME[$name]=http
    BG_REQS[$name]=0
    gateway_yaml "$2" "$3" "${BG_LOG[$name]}" > "$WORK/$name.yaml"
    TOKIO_WORKER_THREADS=$NSERV "${ON_SERVER[@]}" "$BG" serve --config "$WORK/$name.yaml" \
      > "$WORK/logs/$name.out" 2> "$WORK/logs/$name.err" &
    pid=$!
    PIDS+=("$pid")
    BG_PID[$name]=$pid
  }
  start_bg bg "$P_BG" 0 "$AUDIT_DIR"
  start_bg bgtls "$P_BG_TLS" 1 "$AUDIT_DIR"
  [ "$SHM" = 1 ] && start_bg bgshm "$P_BG_SHM" 0 "$SHM_DIR"
  for name in "${!BG_PID[@]}"; do
    wait_port "${BG_PORT[$name]}" "${BG_PID[$name]}" "$name"
    # End-to-end readiness: a real request with a real token must be allowed.
    for path in /mirror/datasets/eu-customers/1k.bin /datasets/eu-customers/1k.bin; do
      code=$(curl -sk --http1.1 -o "$WORK/ready.body" -w '%{http_code}' -H "Authorization: Bearer $(token)" \
        "${BG_SCHEME[$name]}://127.0.0.1:${BG_PORT[$name]}$path" || true)
      BG_REQS[$name]=$((BG_REQS[$name] + 1))
      if [ "$code" != 200 ]; then
        say "$name answered $code to GET $path:"; cat "$WORK/ready.body" >&2; echo >&2
        cat "$WORK/logs/$name.err" >&2
        exit 2
      fi
    done
  done
  tls_of() {
    openssl s_client -connect "127.0.0.1:$1" -servername localhost < /dev/null 2>/dev/null |
      awk '/^New, / {v=$2; c=$NF} /^ *Protocol *:/ {v=$3} /^ *Cipher *:/ {c=$3} END {print v, c}' | tr -d ,
  }
  echo "nginx_conf=origin: \`sendfile on; tcp_nopush on\`; proxy: \`proxy_pass\` with default \`proxy_buffers\` (8 × 4k), \`proxy_max_temp_file_size 0\`, upstream \`keepalive 64\`; both: \`access_log off\`, \`keepalive_requests 1000000\`" >> "$RES/meta"
  echo "tls=nginx: $(tls_of "$P_PROXY_TLS"); bordergate: $(tls_of "$P_BG_TLS"); certificate ECDSA P-256 (shared), HTTP/1.1" >> "$RES/meta"
fi

# Targets: id → "label|scheme|port|path-prefix|server pids|origin pids|bordergate instance|twin"
declare -A T
if want small || want large; then
  T[origin]="nginx static (origin)|http|$P_ORIGIN|/datasets|$ORIGIN_PIDS||-|-"
  T[origin-tls]="nginx static, TLS|https|$P_ORIGIN_TLS|/datasets|$ORIGIN_PIDS||-|-"
  T[proxy]="nginx proxy → origin|http|$P_PROXY|/datasets|$PROXY_PIDS|$ORIGIN_PIDS|-|-"
  T[proxy-tls]="nginx proxy → origin, TLS|https|$P_PROXY_TLS|/datasets|$PROXY_PIDS|$ORIGIN_PIDS|-|-"
  T[bg]="bordergate → origin|http|$P_BG|/mirror/datasets|${BG_PID[bg]}|$ORIGIN_PIDS|bg|proxy"
  T[bg-tls]="bordergate → origin, TLS|https|$P_BG_TLS|/mirror/datasets|${BG_PID[bgtls]}|$ORIGIN_PIDS|bgtls|proxy-tls"
  T[bg-file]="bordergate file:// store|http|$P_BG|/datasets|${BG_PID[bg]}||bg|origin"
  T[bg-file-tls]="bordergate file:// store, TLS|https|$P_BG_TLS|/datasets|${BG_PID[bgtls]}||bgtls|origin-tls"
  [ "$SHM" = 1 ] && T[bg-shm]="bordergate → origin, audit on tmpfs|http|$P_BG_SHM|/mirror/datasets|${BG_PID[bgshm]}|$ORIGIN_PIDS|bgshm|proxy"
fi
target() {  # id → globals LABEL SCHEME TPORT TPREFIX SPIDS OPIDS INST TWIN URLBASE
  IFS='|' read -r LABEL SCHEME TPORT TPREFIX SPIDS OPIDS INST TWIN <<< "${T[$1]}"
  URLBASE="$SCHEME://127.0.0.1:$TPORT$TPREFIX/eu-customers"
}

# Runs wrk against a target; appends a row to RES/$kind.tsv.
#   wrk_point kind id conns object-file object-bytes
wrk_point() {
  local kind=$1 id=$2 c=$3 obj=$4 size=$5 tok out t threads s0 s1 o0 o1 c0 c1 m0 m1 reqs dur rps p50 p99 non2xx sock
  target "$id"
  threads=$(( c < NCLI ? c : NCLI ))
  tok=$(token)
  [ "$kind" = large ] && reset_hwm $SPIDS
  local perf_pid=
  if [ "${BENCH_PERF:-0}" = 1 ] && [ "$INST" != - ] && [ "$kind" = small ] && command -v perf > /dev/null; then
    perf record -q -e cpu-clock -F 2000 -g -p "${SPIDS%% *}" -o "$WORK/perf-$id-$c.data" > /dev/null 2>&1 &
    perf_pid=$!
  fi
  s0=$(ticks $SPIDS); o0=$(ticks $OPIDS); child_ticks; c0=$CT; m0=$(read_stat)
  out=$("${ON_CLIENT[@]}" wrk -t"$threads" -c"$c" -d"${SECS}s" --timeout 10s --latency \
        -H "Authorization: Bearer $tok" "$URLBASE/$obj" 2>&1) || { fail "$LABEL c=$c: wrk failed: $out"; return 0; }
  s1=$(ticks $SPIDS); o1=$(ticks $OPIDS); child_ticks; c1=$CT; m1=$(read_stat)
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2> /dev/null || true
    wait "$perf_pid" 2> /dev/null || true
    perf report -q -i "$WORK/perf-$id-$c.data" --no-children --sort sym --percent-limit 0.7 --stdio -g none \
      > "$BENCH/results/perf-$id-$c.txt" 2> /dev/null || true
  fi
  echo "$out" > "$WORK/logs/wrk-$kind-$id-$c.txt"
  reqs=$(awk '/requests in/ {print $1}' <<< "$out")
  dur=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' <<< "$out")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1=="50%" {print $2}' <<< "$out")
  p99=$(awk '$1=="99%" {print $2}' <<< "$out")
  non2xx=$(awk -F': ' '/Non-2xx/ {print $2}' <<< "$out")
  sock=$(awk -F'errors: ' '/Socket errors/ {print $2}' <<< "$out" | tr -d ' ')
  [ "$INST" != - ] && BG_REQS[$INST]=$((BG_REQS[$INST] + ${reqs:-0}))
  local peak=0
  [ "$kind" = large ] && peak=$(hwm_kb $SPIDS)
  # id label twin conns size requests secs rps p50 p99 server origin client(ticks) machine(busy0 total0 steal0 busy1 total1 steal1) non2xx sockerr peak_kb
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%s\n' \
    "$id" "$LABEL" "$TWIN" "$c" "$size" "${reqs:-0}" "${dur:-0}" "${rps:-0}" "${p50:--}" "${p99:--}" \
    $((s1 - s0)) $((o1 - o0)) $((c1 - c0)) "$m0" "$m1" "${non2xx:-0}" "${sock:-}" "$peak" >> "$RES/$kind.tsv"
  printf '  %s c=%-3s %10s req/s  p50 %-9s p99 %-9s %s\n' "$(pad "$LABEL")" "$c" "${rps:-?}" "${p50:-?}" "${p99:-?}" \
    "${non2xx:+non-2xx $non2xx}" >&2
  if [ -n "$non2xx" ] && [ "$non2xx" != 0 ]; then fail "$LABEL c=$c: $non2xx non-2xx responses"; fi
  if [ -n "$sock" ]; then
    if [[ "$sock" != "connect0,read0,write0,timeout0" ]]; then fail "$LABEL c=$c: socket errors $sock"; fi
  fi
}

# Repeated single curl transfers of one object for at least SECS; appends to RES/large.tsv.
curl_point() {
  local id=$1 obj=$2 size=$3 n=0 bytes=0 secs=0 errs=0 tok r code got tt s0 s1 o0 o1 c0 c1 m0 m1 t0
  target "$id"
  tok=$(token)
  reset_hwm $SPIDS
  s0=$(ticks $SPIDS); o0=$(ticks $OPIDS); child_ticks; c0=$CT; m0=$(read_stat)
  t0=$(date +%s.%N)
  while :; do
    r=$("${ON_CLIENT[@]}" curl -sk --http1.1 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
        -H "Authorization: Bearer $tok" "$URLBASE/$obj" || true)
    read -r code got tt <<< "$r"
    n=$((n + 1))
    [ "$code" = 200 ] && [ "$got" = "$size" ] || errs=$((errs + 1))
    bytes=$((bytes + ${got:-0}))
    secs=$(awk -v a="$secs" -v b="${tt:-0}" 'BEGIN {print a + b}')
    awk -v t0="$t0" -v now="$(date +%s.%N)" -v s="$SECS" 'BEGIN {exit !(now - t0 >= s)}' && break
  done
  s1=$(ticks $SPIDS); o1=$(ticks $OPIDS); child_ticks; c1=$CT; m1=$(read_stat)
  [ "$INST" != - ] && BG_REQS[$INST]=$((BG_REQS[$INST] + n))
  local rps
  rps=$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.3f", n / s}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%s\n' \
    "$id" "$LABEL" "$TWIN" 1 "$size" "$n" "$secs" "$rps" - - \
    $((s1 - s0)) $((o1 - o0)) $((c1 - c0)) "$m0" "$m1" "$errs" "" "$(hwm_kb $SPIDS)" >> "$RES/large.tsv"
  printf '  %s 1 GiB x%-3s %8.0f MB/s\n' "$(pad "$LABEL")" "$n" "$(awk -v b="$bytes" -v s="$secs" 'BEGIN {print b / s / 1e6}')" >&2
  [ "$errs" = 0 ] || fail "$LABEL: $errs of $n transfers of $obj failed or were short"
}

# One 4 GiB transfer through a bordergate target, VmRSS sampled every 250 ms.
rss_point() {
  local id=$1 obj=$2 size=$3 pid cpid r samples=() first min max last
  target "$id"
  pid=$SPIDS
  "${ON_CLIENT[@]}" curl -sk --http1.1 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
    -H "Authorization: Bearer $(token)" "$URLBASE/$obj" > "$WORK/rss.curl" 2>&1 &
  cpid=$!
  PIDS+=("$cpid")
  samples+=("$(rss_kb "$pid")")
  while kill -0 "$cpid" 2>/dev/null; do
    sleep 0.25
    samples+=("$(rss_kb "$pid")")
  done
  wait "$cpid" || true
  BG_REQS[$INST]=$((BG_REQS[$INST] + 1))
  read -r code got tt < "$WORK/rss.curl" || true
  first=${samples[0]}; min=$first; max=$first
  for r in "${samples[@]}"; do
    [ "$r" -lt "$min" ] && min=$r
    [ "$r" -gt "$max" ] && max=$r
  done
  last=${samples[-1]}
  local verdict=ok
  if [ $((max - first)) -gt $((64 * 1024)) ]; then
    verdict=FAIL
    fail "$LABEL: RSS grew by $(((max - first) / 1024)) MiB during a 4 GiB transfer (limit 64 MiB)"
  fi
  if [ "${code:-}" != 200 ] || [ "${got:-}" != "$size" ]; then
    verdict=FAIL
    fail "$LABEL: the 4 GiB transfer ended with status ${code:-?} after ${got:-?} bytes"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$LABEL" "${got:-0}" "${tt:-0}" "${#samples[@]}" \
    "$first" "$min" "$max" "$last" "$verdict" "${samples[*]}" >> "$RES/rss.tsv"
  printf '  %s 4 GiB: RSS min %s max %s last %s kB (%s samples) %s\n' "$(pad "$LABEL")" "$min" "$max" "$last" "${#samples[@]}" "$verdict" >&2
}

# One second of load per target before the first point (counted for the audit check only).
warm() {
  local id
  for id in "$@"; do
    target "$id"
    "${ON_CLIENT[@]}" wrk -t1 -c4 -d1s -H "Authorization: Bearer $(token)" "$URLBASE/1k.bin" > "$WORK/warm.out" 2>&1 || true
    if [ "$INST" != - ]; then BG_REQS[$INST]=$((BG_REQS[$INST] + $(awk '/requests in/ {print $1}' "$WORK/warm.out"))); fi
  done
}

SMALL_ORDER=(origin proxy bg)
[ "$SHM" = 1 ] && SMALL_ORDER+=(bg-shm)
SMALL_ORDER+=(bg-file origin-tls proxy-tls bg-tls bg-file-tls)
LARGE_ORDER=(origin proxy bg bg-file origin-tls proxy-tls bg-tls bg-file-tls)

# ---------------------------------------------------------------- 1 KiB
if want small; then
  say "warm-up (1 s per target, not reported)"
  warm "${SMALL_ORDER[@]}"
  for c in $CONNS; do
    say "1 KiB object, $c connection(s), ${SECS}s per point"
    for id in "${SMALL_ORDER[@]}"; do wrk_point small "$id" "$c" 1k.bin 1024; done
  done
fi

# ---------------------------------------------------------------- large objects
if want large; then
  say "1 MiB object, $LARGE_CONNS connections, ${SECS}s per point"
  for id in "${LARGE_ORDER[@]}"; do wrk_point large "$id" "$LARGE_CONNS" 1m.bin $((1 << 20)); done
  if [ "$QUICK" != 1 ]; then
    # Sparse files: no disk space, no disk reads, the same bytes on the wire for every target.
    BIGFILES+=("$OBJ/1g.bin" "$OBJ/4g.bin")
    truncate -s 1G "$OBJ/1g.bin"
    cat "$OBJ/1g.bin" > /dev/null   # into the page cache first: the first target would pay for it
    say "1 GiB object (sparse file), one transfer at a time, repeated for ${SECS}s"
    for id in "${LARGE_ORDER[@]}"; do curl_point "$id" 1g.bin $((1 << 30)); done
    rm -f "$OBJ/1g.bin"
    truncate -s 4G "$OBJ/4g.bin"
    cat "$OBJ/4g.bin" > /dev/null
    say "4 GiB transfer through bordergate, RSS every 250 ms"
    for id in bg bg-tls bg-file bg-file-tls; do rss_point "$id" 4g.bin $((4 << 30)); done
    rm -f "$OBJ/4g.bin"
  fi
fi

# ---------------------------------------------------------------- audit check
if want small || want large; then
  say "stopping the gateways; checking their audit logs"
  for name in bg bgtls bgshm; do
    [ -n "${BG_PID[$name]:-}" ] || continue
    pid=${BG_PID[$name]}
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { fail "$name did not stop within 10 s of SIGTERM"; kill -KILL "$pid"; }
    log=${BG_LOG[$name]}
    decisions=$(grep -c '"kind":"decision"' "$log" || true)
    records=$(wc -l < "$log")
    if vout=$("$BG" audit verify "$log" 2>&1); then verdict=pass; else verdict=FAIL; fail "$name: audit verify $log: $vout"; fi
    say "$name: $(tr '\n' ' ' <<< "$vout")"
    say "$name: ${BG_REQS[$name]} requests reported by wrk and curl, $decisions decision records"
    [ "$decisions" -ge "${BG_REQS[$name]}" ] || fail "$name: $decisions decision records < ${BG_REQS[$name]} requests"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$log" "$(fstype "$(dirname "$log")")" "${BG_REQS[$name]}" "$decisions" "$records" "$verdict: $(head -1 <<< "$vout")" >> "$RES/audit.tsv"
  done
fi

# ---------------------------------------------------------------- report
read -r M1_BUSY M1_TOTAL M1_STEAL < <(read_stat)
{
  echo "steal_pct=$(awk -v s=$((M1_STEAL - M0_STEAL)) -v t=$((M1_TOTAL - M0_TOTAL)) 'BEGIN {printf "%.1f", t ? 100 * s / t : 0}')"
  echo "busy_pct=$(awk -v b=$((M1_BUSY - M0_BUSY)) -v t=$((M1_TOTAL - M0_TOTAL)) 'BEGIN {printf "%.1f", t ? 100 * b / t : 0}')"
  echo "load1=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "elapsed=$(( $(date +%s) - T_START ))"
  echo "clk_tck=$CLK_TCK"
  echo "large_conns=$LARGE_CONNS"
  echo "shm=$SHM"
  for f in "${FAILS[@]}"; do echo "fail=$f"; done
} >> "$RES/meta"
mkdir -p "$BENCH/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
[ "$QUICK" = 1 ] && stamp+=-quick
python3 "$BENCH/compare_report.py" "$RES" > "$BENCH/results/$stamp.md"
cp "$BENCH/results/$stamp.md" "$BENCH/results/latest.md"
cp -r "$RES" "$BENCH/results/$stamp-raw"
cat "$BENCH/results/latest.md"
say "written to bench/results/latest.md (and $stamp.md, raw numbers in $stamp-raw/); took $(( $(date +%s) - T_START )) s"
if [ ${#FAILS[@]} -gt 0 ]; then
  say "${#FAILS[@]} check(s) FAILED:"
  printf '  %s\n' "${FAILS[@]}" >&2
  exit 1
fi
