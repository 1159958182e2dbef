#!/usr/bin/env bash
# Latency at a fixed rate, not at saturation: oha sends requests at 50% and
# 80% of nginx's own maximum (measured first, with wrk) to the upstream
# directly, through nginx (a plain proxy) and through rolegate (RS256, cached
# token), each round in a turned order (bench/order.sh); the added p50 and
# p99 over direct are each proxy's cost in latency. Upstream + proxy on CPU 0, the load generator on CPU 1.
# oha measures with coordinated-omission correction (`--latency-correction`).
#   ROUNDS=3 DURATION=10 bench/latency.sh
# Needs oha (`cargo install oha`), nginx and wrk (Debian packages).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/bench/order.sh"
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; CONNS=${CONNS:-32}; BASE=${BASE:-29380}
command -v oha >/dev/null || cargo install oha --locked
for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk util-linux >/dev/null; break; }
done
if [[ -z ${ROLEGATE_BIN:-} ]]; then
  (cd "$repo" && cargo build --release --quiet --bin rolegate) || exit 1
  ROLEGATE_BIN=$repo/target/release/rolegate
fi
W=$(mktemp -d /tmp/latency.XXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
openssl genpkey -algorithm RSA -out idp.key 2>/dev/null; openssl pkey -in idp.key -pubout -out idp.pub.pem
TOKEN=$("$ROLEGATE_BIN" mint --key idp.key --kid k1 --ttl 3h --claims '{"iss":"https://idp.bench","aud":"bench","sub":"u1","ts_permissions":["users:read"]}')
mk_nginx() { # name listen body http-extra
  mkdir -p "$1"/logs "$1"/tmp
  cat > "$1/nginx.conf" <<NG
worker_processes 1; pid nginx.pid; error_log logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path tmp/b; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
  $4
  server { listen 127.0.0.1:$2 backlog=4096; $3 } }
NG
  setsid taskset -c 0 nginx -p "$W/$1" -c "$W/$1/nginx.conf" -g 'daemon off;' & pids+=($!)
}
mk_nginx up $BASE "location / { default_type application/json; return 200 '{\"id\":\"123\",\"ok\":true}\n'; }" ""
mk_nginx px $((BASE+1)) 'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }' \
  "upstream backend { server 127.0.0.1:$BASE; keepalive 64; keepalive_requests 1000000; }"
cat > rg.toml <<T
[server]
listen = "127.0.0.1:$((BASE+2))"
workers = 1
[upstreams.default]
url = "http://127.0.0.1:$BASE"
[[issuers]]
issuer = "https://idp.bench"
audiences = ["bench"]
keys = [{ kid = "k1", pem_file = "idp.pub.pem" }]
permissions_claim = "ts_permissions"
[[routes]]
name = "read users"
methods = ["GET"]
path = "/v1/users/*"
all_permissions = ["users:read"]
T
RUST_LOG=warn setsid taskset -c 0 "$ROLEGATE_BIN" run --config rg.toml >rg.out 2>rg.log & pids+=($!)
for port in $BASE $((BASE+1)) $((BASE+2)); do
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
url() { case $1 in direct) echo "http://127.0.0.1:$BASE/v1/users/123" ;; nginx) echo "http://127.0.0.1:$((BASE+1))/v1/users/123" ;; rolegate) echo "http://127.0.0.1:$((BASE+2))/v1/users/123" ;; esac; }
for t in direct nginx rolegate; do
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$(url $t)"); echo "check $t -> $c"
done
max=$(taskset -c 1 wrk -t1 -c"$CONNS" -d5s -H "Authorization: Bearer $TOKEN" "$(url nginx)" | awk '/Requests\/sec/ {printf "%d", $2}')
echo "nginx maximum: $max req/s"
results=$repo/bench/results/latency-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p "$repo/bench/results"
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  for share in 50 80; do
    rate=$((max * share / 100))
    order=($(round_order "$r" direct nginx rolegate))
    for t in "${order[@]}"; do
      out=$(taskset -c 1 oha -z "${DURATION}s" -q "$rate" -c "$CONNS" --latency-correction --no-tui --output-format json -H "Authorization: Bearer $TOKEN" "$(url $t)")
      python3 -c 'import json,sys; j=json.load(sys.stdin); p=j["latencyPercentiles"]; s=j["summary"]; print(*sys.argv[1:4], round(s["requestsPerSec"]), round(p["p50"]*1e6), round(p["p99"]*1e6), round(s["successRate"], 4))' "$share" "$t" "$rate" <<<"$out" | tee -a "$results"
    done
  done
done
python3 - "$results" <<'PY'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    share, t, rate, rps, p50, p99, ok = l.split()
    d[(share, t)].append((float(p50), float(p99), float(rps), float(ok)))
print("| load | direct p50 / p99 | nginx added p50 / p99 | rolegate added p50 / p99 | rolegate <= nginx |")
print("|---|---|---|---|---|")
for share in ("50", "80"):
    if not d[(share, "direct")]: continue
    m = {t: (st.median(x[0] for x in d[(share, t)]), st.median(x[1] for x in d[(share, t)])) for t in ("direct", "nginx", "rolegate")}
    an = (m["nginx"][0] - m["direct"][0], m["nginx"][1] - m["direct"][1])
    ar = (m["rolegate"][0] - m["direct"][0], m["rolegate"][1] - m["direct"][1])
    ok = "yes" if ar[0] <= an[0] and ar[1] <= an[1] else "no"
    print(f"| {share}% of nginx's max | {m['direct'][0]:.0f} / {m['direct'][1]:.0f} µs | {an[0]:.0f} / {an[1]:.0f} µs | {ar[0]:.0f} / {ar[1]:.0f} µs | {ok} |")
PY
echo "raw: $results"
