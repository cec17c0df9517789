# Shared by the bench scripts (sourced): tokens as a pipeline would send them.

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# rs256_token KEY: a fresh RS256 token (1 h, kid `bench`, issuer `bordergate-bench`) for a
# caller in Germany, signed with the private key KEY: the policy pack allows the transfer.
rs256_token() {
  local now h p
  now=$(date +%s)
  h=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
  p=$(printf '{"iss":"bordergate-bench","aud":"bordergate","sub":"bench","org":"acme-de","jurisdiction":"DE","purpose":"analytics","iat":%d,"exp":%d}' \
      "$now" $((now + 3600)) | b64url)
  printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1" -binary | b64url)"
}

# quickstart_yaml STORE: the gateway config's upstreams, routes, catalog, policies and
# registry for the quickstart's data served from STORE (a copy of examples/quickstart/store)
# as a file:// store in Germany, with the whole policy pack. Uses $REPO.
quickstart_yaml() {
  cat <<YAML
upstreams:
  - name: eu-store
    url: file://$1
    jurisdiction: DE
routes:
  - prefix: /datasets/
    upstream: eu-store
catalog: $REPO/examples/quickstart/catalog.yaml
policies: $REPO/policies
registry: $REPO/examples/quickstart/registry.yaml
YAML
}
