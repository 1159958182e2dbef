#!/usr/bin/env bash
# How long `rolegate import openapi` and `rolegate check --openapi` take on a
# large real description: GitHub's REST API (1,223 operations, the test
# fixture), release build, each run ROUNDS times (elapsed seconds and peak RSS
# from /usr/bin/time). The target: under a second each.
#   ROUNDS=5 bench/openapi.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
if [[ -z ${ROLEGATE_BIN:-} ]]; then
  (cd "$repo" && cargo build --release --quiet --bin rolegate)
  ROLEGATE_BIN=$repo/target/release/rolegate
fi
[[ -x /usr/bin/time ]] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
zcat "$repo/tests/fixtures/openapi/github-api.json.gz" > "$W/github.json"
openssl genpkey -algorithm RSA -out "$W/idp.key" 2>/dev/null
openssl pkey -in "$W/idp.key" -pubout -out "$W/rsa.pub.pem"
printf '[server]\nlisten = "127.0.0.1:0"\n[upstreams.default]\nurl = "http://127.0.0.1:9"\n[[issuers]]\nissuer = "https://idp.test"\nkeys = [{ kid = "k1", pem_file = "rsa.pub.pem" }]\npermissions_claim = "scope"\n' > "$W/routes.toml"
"$ROLEGATE_BIN" import openapi "$W/github.json" >> "$W/routes.toml" 2>/dev/null
for r in $(seq 1 "$ROUNDS"); do
  /usr/bin/time -f "import openapi: %e s, peak RSS %M KiB" "$ROLEGATE_BIN" import openapi "$W/github.json" >/dev/null 2>"$W/err"
  tail -1 "$W/err"
  /usr/bin/time -f "check --openapi: %e s, peak RSS %M KiB" "$ROLEGATE_BIN" check --config "$W/routes.toml" --openapi "$W/github.json" >"$W/out" 2>"$W/err"
  echo "$(tail -1 "$W/err") ($(tail -1 "$W/out" | sed 's/.*: //'))"
done
