#!/usr/bin/env bash
# End-to-end load benchmark, one run, ratios comparable (shared/reference/anchors.md):
#   nginx origin  |  nginx reverse proxy  |  bordergate file:// store  |  bordergate → nginx origin
# bordergate runs with policy evaluation and the fdatasync'ed, group-committed audit log on.
#   bench/load.sh [SECONDS] [CONNECTIONS]
# BORDERGATE_BENCH_AUDIT_DIR=/dev/shm puts the audit log on tmpfs (not durable) to show
# what durability costs.
# Needs wrk and nginx (apt-get install wrk nginx) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-32}
BG=$PWD/target/release/bordergate
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 2; }
command -v nginx >/dev/null || { echo "nginx is not installed (apt-get install nginx)"; exit 2; }
[ -x "$BG" ] || cargo build --release
WORK=$(mktemp -d)
chmod 755 "$WORK"   # nginx workers run unprivileged
AUDIT_DIR=${BORDERGATE_BENCH_AUDIT_DIR:-$WORK}
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  pkill -f "$WORK/gateway.yaml" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/store/datasets/eu-customers" "$WORK/logs"
head -c 768 /dev/urandom | base64 -w0 > "$WORK/store/datasets/eu-customers/1k.csv"   # 1 KiB
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server 127.0.0.1:18081; keepalive 64; }
  server { listen 127.0.0.1:18081; root $WORK/store; }
  server {
    listen 127.0.0.1:18082;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK"
cp examples/quickstart/catalog.yaml "$WORK/catalog.yaml"
cat >> "$WORK/catalog.yaml" <<YAML
  - id: mirror-customers
    kind: dataset
    match: { prefix: /mirror/datasets/eu-customers/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics, training]
YAML
cat > "$WORK/gateway.yaml" <<YAML
listen:
  address: 127.0.0.1:18080
  plaintext: true
auth:
  issuer: bordergate-dev
  audience: bordergate
  keys:
    - alg: HS256
      secret: { file: hs256.secret }
      generate_dev_secret: true
upstreams:
  - name: eu-store
    url: file://$WORK/store
    jurisdiction: DE
  - name: origin
    url: http://127.0.0.1:18081/
    jurisdiction: DE
routes:
  - prefix: /datasets/
    upstream: eu-store
  - prefix: /mirror/
    upstream: origin
catalog: catalog.yaml
policies: $PWD/policies
registry: $PWD/examples/quickstart/registry.yaml
audit:
  path: $AUDIT_DIR/bench-audit.log
YAML
# nginx's origin serves /mirror/… from the same files
mkdir -p "$WORK/store/mirror" && ln -s ../datasets "$WORK/store/mirror/datasets"
"$BG" serve --config "$WORK/gateway.yaml" > "$WORK/serve.out" 2> "$WORK/serve.err" &
for _ in $(seq 1 100); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
ALLOW=$("$BG" token --config "$WORK/gateway.yaml" --sub bench --org acme-de --jurisdiction DE --purpose analytics --ttl 1h)
DENY=$("$BG" token --config "$WORK/gateway.yaml" --sub bench --org acme-us --jurisdiction US --purpose analytics --ttl 1h)
cat > "$WORK/mixed.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local tok = (n % 2 == 0) and "$ALLOW" or "$DENY"
  return wrk.format("GET", "/datasets/eu-customers/1k.csv", { ["Authorization"] = "Bearer " .. tok })
end
LUA
run() {
  local name=$1; shift
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$@")
  printf '%-46s %10s req/s   p50 %8s   p99 %8s   %s\n' "$name" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" \
    "$(echo "$out" | awk '$1=="99%" {print $2}')" \
    "$(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr '\n' ' ')"
}
echo "1 KiB object, ${CONNS} connections, ${SECS}s each, HTTP/1.1 keep-alive, loopback"
run "nginx origin (static file)" http://127.0.0.1:18081/datasets/eu-customers/1k.csv
run "nginx reverse proxy -> nginx origin" http://127.0.0.1:18082/datasets/eu-customers/1k.csv
run "bordergate file:// store (policy+audit)" -H "Authorization: Bearer $ALLOW" http://127.0.0.1:18080/datasets/eu-customers/1k.csv
run "bordergate -> nginx origin (policy+audit)" -H "Authorization: Bearer $ALLOW" http://127.0.0.1:18080/mirror/datasets/eu-customers/1k.csv
run "bordergate mixed allow/451 (policy+audit)" -s "$WORK/mixed.lua" http://127.0.0.1:18080/
PID=$(pgrep -f "$WORK/gateway.yaml" | head -1)
echo "bordergate RSS after the runs: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
kill -TERM "$PID"; for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
echo "audit log: $(wc -l < "$AUDIT_DIR/bench-audit.log") records, $(grep -c '"kind":"decision"' "$AUDIT_DIR/bench-audit.log") decisions"
"$BG" audit verify "$AUDIT_DIR/bench-audit.log"
[ "$AUDIT_DIR" = "$WORK" ] || rm -f "$AUDIT_DIR/bench-audit.log"
