#!/usr/bin/env bash
# Load benchmark: bordergate (policy + durable audit on) vs. a plain file read, with wrk.
#   bench/load.sh [SECONDS] [CONNECTIONS]
# Needs: wrk (apt-get install wrk), a release build (cargo build --release).
# Starts its own gateway on 127.0.0.1:18443 (TLS) and 127.0.0.1:18080 (plaintext) with a
# fresh audit log in a temp dir, runs an allowed-download load (1 KiB object) and a mixed
# allow/deny load, then verifies the audit chain and counts records.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-32}
BG=./target/release/bordergate
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 2; }
[ -x "$BG" ] || cargo build --release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/store/datasets/eu-customers" "$WORK/store/datasets/public-wiki"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/store/datasets/eu-customers/1k.csv"
cp examples/quickstart/catalog.yaml "$WORK/catalog.yaml"
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
routes:
  - prefix: /datasets/
    upstream: eu-store
catalog: catalog.yaml
policies: $PWD/policies
registry: $PWD/examples/quickstart/registry.yaml
audit:
  path: $WORK/audit.log
YAML
"$BG" serve --config "$WORK/gateway.yaml" > "$WORK/serve.out" 2> "$WORK/serve.err" &
for _ in $(seq 1 50); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
ALLOW=$("$BG" token --config "$WORK/gateway.yaml" --sub bench --org acme-de --jurisdiction DE --purpose analytics)
DENY=$("$BG" token --config "$WORK/gateway.yaml" --sub bench --org acme-us --jurisdiction US --purpose analytics)
cat > "$WORK/mixed.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local tok = (n % 2 == 0) and "$ALLOW" or "$DENY"
  return wrk.format("GET", "/datasets/eu-customers/1k.csv", { ["Authorization"] = "Bearer " .. tok })
end
LUA
echo "== allowed 1 KiB downloads, ${CONNS} connections, ${SECS}s (policy + fdatasync'ed audit)"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -H "Authorization: Bearer $ALLOW" \
  http://127.0.0.1:18080/datasets/eu-customers/1k.csv | grep -E "Requests/sec|50%|99%|Non-2xx|Socket"
echo "== mixed allow/deny (half 451)"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/mixed.lua" \
  http://127.0.0.1:18080/ | grep -E "Requests/sec|50%|99%|Non-2xx|Socket"
echo "== gateway RSS: $(grep VmRSS /proc/$(pgrep -f "$WORK/gateway.yaml" | head -1)/status)"
kill -TERM "$(pgrep -f "$WORK/gateway.yaml" | head -1)"; sleep 1
echo "== audit: $(wc -l < "$WORK/audit.log") records"
"$BG" audit verify "$WORK/audit.log"
