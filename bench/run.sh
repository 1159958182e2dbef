#!/usr/bin/env bash
# Whole-proxy load comparison on loopback: rolegate (anchor D) side by side with
# the shared harness's anchors in the same run: A direct to an nginx upstream,
# B nginx plain proxy, B2 HAProxy plain proxy, C HAProxy enforcing the same
# policy with jwt_verify. Bounded: ROUNDS x DURATION per target (defaults 3 x 10s).
#
#   bench/run.sh                      # single token (cache-hit path), RS256/ES256/HS256
#   bench/run.sh --token-mode pool    # 1000 distinct tokens; pair with TOKEN_CACHE=0
#   TOKEN_CACHE=0 bench/run.sh --token-mode pool --algs "rs256 es256"
#   bench/run.sh --quick | --check-only
#
# Any option is passed to the harness (../shared/bench/run.sh --help). Needs the
# Debian packages nginx, haproxy, wrk (installed here when missing, as root).
# The harness is copied to a temporary directory so the shared copy stays
# untouched; results land in bench/results/<stamp>/ (summary.md + raw output).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${SHARED_BENCH:-$repo/../shared/bench}
[[ -x $shared/run.sh ]] || { echo "bench/run.sh: no harness at $shared" >&2; exit 1; }

missing=()
for tool in nginx haproxy wrk curl openssl taskset setsid; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "bench/run.sh: installing nginx haproxy wrk curl openssl util-linux (missing: ${missing[*]})" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy wrk curl openssl util-linux >/dev/null
fi

(cd "$repo" && cargo build --release --quiet --bin rolegate)

work=$(mktemp -d "${TMPDIR:-/tmp}/rolegate-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$shared/." "$work/"
chmod -R u+w "$work"
mkdir -p "$repo/bench/results"
# Keys and tokens are kept between runs in bench/.gen (git-ignored).
mkdir -p "$repo/bench/.gen"
rm -rf "$work/.gen" && ln -s "$repo/bench/.gen" "$work/.gen"

ROLEGATE_BIN=$repo/target/release/rolegate "$work/run.sh" \
  --extra-name rolegate --extra-cmd "$repo/bench/rolegate-as-d.sh" "$@"

if [[ -d $work/results ]]; then
  cp -r "$work/results/." "$repo/bench/results/"
  # The harness's run directories only (other scripts write files beside them).
  latest=$(ls -1 "$work/results" | sort | tail -1)
  echo "results: bench/results/$latest/summary.md"
fi
