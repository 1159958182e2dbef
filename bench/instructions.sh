#!/usr/bin/env bash
# Instructions per proxied request (cached RS256, keep-alive), counted with
# callgrind: benches/instructions.rs run for N and 2N requests, in `proxy` and
# `direct` mode; prints (I(2N) - I(N)) / N for each and their difference, the
# gateway's own instructions per request. Deterministic for a given binary.
#
#   bench/instructions.sh            # N = 2000
#   N=5000 bench/instructions.sh
#   HEADERS=1 bench/instructions.sh  # with the example table's identity headers
#   LOG=1 bench/instructions.sh      # with the access log on (JSON, as `run` writes it)
#   ROUTES=10000 bench/instructions.sh   # 10,000 routes, the matching one last
#   TOKEN_ROLES=200 bench/instructions.sh  # a token with 200 roles
#   DEEP=1 bench/instructions.sh     # 1,000 roles in chains of 10 `includes`
#   CHURN=1 bench/instructions.sh    # a new connection per request
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
command -v valgrind >/dev/null || { echo "bench/instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
n=${N:-2000}
bin=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="instructions" and m.get("executable"): print(m["executable"])' | tail -1)
[[ -x $bin ]] || { echo "no bench binary" >&2; exit 1; }
keys=$repo/bench/.gen/insn-keys
if [[ ! -f $keys/ec.pub.pem ]]; then
  mkdir -p "$keys"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rsa.key" 2>/dev/null
  openssl pkey -in "$keys/rsa.key" -pubout -out "$keys/rsa.pub.pem"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/ec.key" 2>/dev/null
  openssl pkey -in "$keys/ec.key" -pubout -out "$keys/ec.pub.pem"
fi
export ROLEGATE_INSN_KEYS=$keys
count() { # mode requests -> total instructions
  local out; out=$(mktemp)
  ROLEGATE_INSN_MODE=$1 ROLEGATE_INSN_REQUESTS=$2 ROLEGATE_INSN_HEADERS=${HEADERS:-0} ROLEGATE_INSN_LOG=${LOG:-0} \
    ROLEGATE_INSN_ROUTES=${ROUTES:-10} ROLEGATE_INSN_TOKEN_ROLES=${TOKEN_ROLES:-1} ROLEGATE_INSN_DEEP=${DEEP:-0} ROLEGATE_INSN_CHURN=${CHURN:-0} \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"; rm -f "$out"
}
declare -A per
for mode in direct proxy; do
  a=$(count "$mode" "$n"); b=$(count "$mode" $((2 * n)))
  per[$mode]=$(( (b - a) / n ))
  echo "$mode: $(( (b - a) / n )) instructions per request (I($n)=$a, I($((2 * n)))=$b)"
done
echo "gateway: $(( per[proxy] - per[direct] )) instructions per request (proxy - direct)"
