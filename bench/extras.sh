#!/usr/bin/env bash
# The performance targets the shared harness does not measure, on loopback,
# bounded (a few minutes in all), against the harness's own nginx upstream:
#   1. memory: idle RSS, and peak RSS while wrk holds 1,000 keep-alive connections;
#   2. route-table scale: req/s with 10 routes vs 10,000 routes (same binary, alternating);
#   3. reload: SIGHUP -> new 10,000-route table serving (idle and under full load),
#      and p50/p99 during 10 s of load with and without a reload every second.
# Every proxy is pinned like the harness's "sut" layout (proxy + upstream on
# CPU 0, wrk on CPU 1). Needs what bench/run.sh needs; run it from the repo.
#   bench/extras.sh            # all three
#   bench/extras.sh memory     # or: routes, reload
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-all}
port=${EXTRAS_PORT:-28090}
work=$(mktemp -d "${TMPDIR:-/tmp}/rolegate-extras.XXXXXX")
harness_pgid=
cleanup() {
  pkill -f "$work/rolegate run" 2>/dev/null || true
  [[ -n $harness_pgid ]] && kill -- "-$harness_pgid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$repo" && cargo build --release --quiet --bin rolegate)
cp "$repo/target/release/rolegate" "$work/rolegate"
bin=$work/rolegate

# The harness in --serve mode provides the upstream (port 28080), keys and tokens.
setsid bash "$repo/bench/run.sh" --only 'nginx-proxy' --algs rs256 --serve 900 >"$work/harness.log" 2>&1 &
harness_pgid=$!
for _ in $(seq 600); do grep -q "^serving for" "$work/harness.log" && break; sleep 0.2; done
grep -q "^serving for" "$work/harness.log" || { cat "$work/harness.log"; echo "extras: the harness did not start" >&2; exit 1; }
gen=$repo/bench/.gen
token=$(<"$gen/tokens/rs256_user.jwt")
export ROLEGATE_BENCH_HS256=$(<"$gen/keys/hs256.secret")

# The harness's D table (bench/rolegate-as-d.sh) on $port, and the same with 9,998 more routes in front.
BENCH_LISTEN_ADDR=127.0.0.1:$port BENCH_UPSTREAM_URL=http://127.0.0.1:28080 BENCH_ISS=https://auth.bench.local/ \
  BENCH_AUD=bench-gateway BENCH_RSA_PUB=$gen/keys/rsa_pub.pem BENCH_EC_PUB=$gen/keys/ec_pub.pem \
  BENCH_HS256_SECRET_FILE=$gen/keys/hs256.secret bash "$repo/bench/rolegate-as-d.sh" --print-config >"$work/routes10.toml"
python3 - "$work/routes10.toml" "$work/routes10k.toml" <<'PY'
import sys
head, rest = open(sys.argv[1]).read().split('[[routes]]', 1)
mix = ["/api/svc{i}/items", "/api/svc{i}/items/*", "/api/svc{i}/**", "/t/{{tenant}}/svc{i}/{{id}}", "/v{k}/svc{i}/{{id}}/sub/*"]
routes = "".join(
    f'[[routes]]\nname = "r{i}"\nmethods = ["GET", "POST"]\npath = "{mix[i % 5].format(i=i, k=i % 3)}"\nall_permissions = ["p{i}"]\n\n'
    for i in range(9998))
open(sys.argv[2], "w").write(head + routes + "[[routes]]" + rest)
PY

start() { # config -> starts rolegate pinned to CPU 0, waits until it answers
  RUST_LOG=${RUST_LOG_EXTRAS:-warn} setsid taskset -c 0 "$bin" run --log-format json --config "$1" >"$work/rolegate.log" 2>&1 &
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.05; done
  echo "extras: rolegate did not start" >&2; cat "$work/rolegate.log" >&2; exit 1
}
stop() { pkill -f "$bin run" || true; for _ in $(seq 100); do pgrep -f "$bin run" >/dev/null || return 0; sleep 0.05; done; }
pid() { pgrep -f "$bin run" | head -1; }
load() { # seconds [connections] -> wrk output
  taskset -c 1 wrk -t1 -c"${2:-32}" -d"$1"s --latency -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/users/123"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
summary() { awk '/Requests\/sec/{r=$2} / 50%/{p50=$2} / 99%/{p99=$2} END{printf "%s req/s, p50 %s, p99 %s", r, p50, p99}'; }

if [[ $what == all || $what == memory ]]; then
  echo "## memory"
  start "$work/routes10.toml"; p=$(pid)
  echo "idle RSS: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' "/proc/$p/status")"
  out=$(load 6 1000)
  echo "1,000 keep-alive connections for 6 s: peak RSS $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' "/proc/$p/status") ($(summary <<<"$out"))"
  stop
fi

if [[ $what == all || $what == routes ]]; then
  echo "## 10 routes vs 10,000 routes (alternating, 5 s each)"
  for round in 1 2 3; do
    for table in routes10 routes10k; do
      start "$work/$table.toml"; p=$(pid); t0=$(cpu_ticks "$p")
      out=$(load 5); t1=$(cpu_ticks "$p")
      n=$(awk '/requests in/{print $1}' <<<"$out")
      echo "round $round $table: $(summary <<<"$out"), proxy CPU $(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)/$n*1e6:.1f}')") us/req"
      stop
    done
  done
fi

if [[ $what == all || $what == reload ]]; then
  echo "## reload of the 10,000-route table"
  RUST_LOG_EXTRAS="warn,rolegate::reload=info" start "$work/routes10k.toml"; p=$(pid)
  live() { # -> ms from SIGHUP to the "route table reloaded" log line
    local before t0
    before=$(grep -c "route table reloaded" "$work/rolegate.log" || true)
    t0=$(date +%s.%N); kill -HUP "$p"
    for _ in $(seq 1000); do [[ $(grep -c "route table reloaded" "$work/rolegate.log") -gt $before ]] && break; sleep 0.005; done
    grep "route table reloaded" "$work/rolegate.log" | tail -1 | python3 -c "
import sys, json, datetime
t = datetime.datetime.fromisoformat(json.loads(sys.stdin.read())['timestamp'].replace('Z', '+00:00')).timestamp()
print(f'{(t - $t0) * 1000:.0f} ms')"
  }
  for i in 1 2 3; do echo "idle: SIGHUP -> new table serving: $(live)"; sleep 1; done
  load 8 >/dev/null & w=$!; sleep 2
  for i in 1 2 3; do echo "under full load: SIGHUP -> new table serving: $(live)"; sleep 1; done
  wait $w
  for round in 1 2; do
    echo "round $round, no reload:           $(load 10 | summary)"
    load 10 >"$work/wrk.txt" & w=$!
    sleep 5; kill -HUP "$p"; wait $w
    echo "round $round, one reload at 5 s:   $(summary <"$work/wrk.txt")"
    load 10 >"$work/wrk.txt" & w=$!
    for i in $(seq 9); do sleep 1; kill -HUP "$p"; done
    wait $w
    echo "round $round, reload every second: $(summary <"$work/wrk.txt")"
  done
  stop
fi
