#!/usr/bin/env bash
# Anchor D for the shared load harness (../shared/bench/run.sh --extra-cmd):
# starts rolegate enforcing the harness's policy, configured only from the
# BENCH_* variables the harness exports. Runs in the foreground.
#   ROLEGATE_BIN   binary to run (default: target/release/rolegate of this repo)
#   TOKEN_CACHE    token cache size in entries (default 10000; 0 turns it off)
# With --print-config it prints the routes.toml it would serve, and exits.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${ROLEGATE_BIN:-$repo/target/release/rolegate}
dir=$(mktemp -d "${TMPDIR:-/tmp}/rolegate-d.XXXXXX")
trap 'rm -rf "$dir"' EXIT
ROLEGATE_BENCH_HS256=$(<"$BENCH_HS256_SECRET_FILE")
export ROLEGATE_BENCH_HS256
cat >"$dir/routes.toml" <<TOML
[server]
listen = "$BENCH_LISTEN_ADDR"

[upstreams.default]
url = "$BENCH_UPSTREAM_URL"

[[issuers]]
issuer = "$BENCH_ISS"
audiences = ["$BENCH_AUD"]
keys = [{ pem_file = "$BENCH_RSA_PUB" }, { pem_file = "$BENCH_EC_PUB" }]
secret_env = "ROLEGATE_BENCH_HS256"
algorithms = ["RS256", "ES256", "HS256"]
roles_claim = "ts_roles"
permissions_claim = "ts_permissions"

[defaults]
unmatched = "deny"
token_cache = ${TOKEN_CACHE:-10000}

[[routes]]
name = "users read"
methods = ["GET"]
path = "/v1/users/*"
all_permissions = ["users:read"]

[[routes]]
name = "admin"
path = "/admin/*"
all_roles = ["admin"]
TOML
if [[ ${1:-} == --print-config ]]; then cat "$dir/routes.toml"; exit 0; fi
RUST_LOG=${RUST_LOG:-warn} "$bin" run --config "$dir/routes.toml"
