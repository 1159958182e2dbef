#!/usr/bin/env bash
# HTTP/2 in front, nginx (a plain proxy, no auth) beside rolegate (RS256, cached
# token) in one run, each round in a turned order (bench/order.sh), h2load as
# the client:
#   h2-tls     HTTP/2 over TLS (ALPN h2) in front, HTTP/1.1 keep-alive upstream
#   h2c        cleartext HTTP/2 (prior knowledge) in front, HTTP/1.1 upstream
#   h2c-h2c    cleartext HTTP/2 in front and behind (rolegate protocol = "h2c";
#              nginx grpc_pass, its only HTTP/2 upstream module), to an h2c nginx
# Each row: req/s of both, the ratio, p99 of both (from h2load's per-request
# log), and each proxy's CPU µs per request (utime+stime from /proc). Pinning:
# upstream + proxy on CPU 0, h2load on CPU 1.
#
#   bench/h2.sh                                  # 3 rounds x 8 s, every row
#   ROUNDS=5 CONNS=8 STREAMS=32 ROWS="h2-tls" bench/h2.sh
# Installs nginx and h2load (nghttp2-client) from Debian's packages when missing.
# Results: bench/results/h2-<stamp>.txt (every run's line) and the table on stdout.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/bench/order.sh"
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-8}; CONNS=${CONNS:-8}; STREAMS=${STREAMS:-16}; BASE=${BASE:-29280}
ROWS=${ROWS:-"h2-tls h2c h2c-h2c"}
for tool in nginx h2load taskset openssl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx nghttp2-client util-linux openssl >/dev/null; break; }
done
if [[ -z ${ROLEGATE_BIN:-} ]]; then
  (cd "$repo" && cargo build --release --quiet --bin rolegate) || exit 1
  ROLEGATE_BIN=$repo/target/release/rolegate
fi
W=$(mktemp -d /tmp/h2bench.XXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key -out tls.pem -days 2 -subj /CN=localhost 2>/dev/null
openssl genpkey -algorithm RSA -out idp.key 2>/dev/null; openssl pkey -in idp.key -pubout -out idp.pub.pem
TOKEN=$("$ROLEGATE_BIN" mint --key idp.key --kid k1 --ttl 2h --claims '{"iss":"https://idp.bench","aud":"bench","sub":"u1","ts_permissions":["users:read"]}')
declare -A PID
mk_nginx() { # name listen-directive http-extra server-body
  mkdir -p "$1"/logs "$1"/tmp
  cat > "$1/nginx.conf" <<NG
worker_processes 1; pid nginx.pid; error_log logs/error.log warn;
events { worker_connections 4096; multi_accept on; }
http { access_log off; server_tokens off; keepalive_requests 1000000; keepalive_timeout 75s; http2_max_requests 1000000;
  http2_max_concurrent_streams 256;
  client_body_temp_path tmp/b; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
  $3
  server { $2
    $4 } }
NG
  setsid taskset -c 0 nginx -p "$W/$1" -c "$W/$1/nginx.conf" -g 'daemon off;' & pids+=($!); PID[$1]=$!
}
UP=$BASE; UP2=$((BASE+1))
BODY="location / { default_type application/json; return 200 '{\"id\":\"123\",\"ok\":true}\n'; }"
mk_nginx up "listen 127.0.0.1:$UP backlog=4096;" "" "$BODY"
mk_nginx up-h2c "listen 127.0.0.1:$UP2 http2 backlog=4096;" "" "$BODY"
PX='upstream backend { server 127.0.0.1:'$UP'; keepalive 64; keepalive_requests 1000000; }'
LOC='location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'
mk_nginx ng-tls "listen 127.0.0.1:$((BASE+2)) ssl http2 backlog=4096; ssl_certificate $W/tls.pem; ssl_certificate_key $W/tls.key;" "$PX" "$LOC"
mk_nginx ng-h2c "listen 127.0.0.1:$((BASE+3)) http2 backlog=4096;" "$PX" "$LOC"
mk_nginx ng-h2h2 "listen 127.0.0.1:$((BASE+4)) http2 backlog=4096;" \
  'upstream backend2 { server 127.0.0.1:'$UP2'; keepalive 64; keepalive_requests 1000000; }' \
  'location / { grpc_pass grpc://backend2; }'
rg() { # name port upstream-url extra-server-lines extra-upstream-lines
  cat > rg-$1.toml <<T
[server]
listen = "127.0.0.1:$2"
workers = 1
$4
[upstreams.default]
url = "$3"
$5
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
  RUST_LOG=warn setsid taskset -c 0 "$ROLEGATE_BIN" run --config rg-$1.toml >rg-$1.out 2>rg-$1.log & pids+=($!); PID[rg-$1]=$!
}
rg tls $((BASE+12)) http://127.0.0.1:$UP 'tls = { cert = "tls.pem", key = "tls.key" }' ""
rg h2c $((BASE+13)) http://127.0.0.1:$UP 'h2c = true' ""
rg h2h2 $((BASE+14)) http://127.0.0.1:$UP2 'h2c = true' 'protocol = "h2c"'
for port in $UP $UP2 $((BASE+2)) $((BASE+3)) $((BASE+4)) $((BASE+12)) $((BASE+13)) $((BASE+14)); do
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
for u in https://127.0.0.1:$((BASE+2)) http://127.0.0.1:$((BASE+3)) http://127.0.0.1:$((BASE+4)) https://127.0.0.1:$((BASE+12)) http://127.0.0.1:$((BASE+13)) http://127.0.0.1:$((BASE+14)); do
  out=$(h2load -n 10 -c 1 -H "authorization: Bearer $TOKEN" "$u/v1/users/123" 2>&1)
  grep -q '10 succeeded' <<<"$out" || { echo "not serving HTTP/2 with 200: $u"; echo "$out" | tail -5; exit 1; }
  echo "check $u -> 10 x 2xx over $(awk '/Application protocol/ {print $3}' <<<"$out")"
done
cpu_ticks() { # every process of the group $1 leads: utime+stime, in ticks
  local total=0 p
  for p in $(ps -eo pid=,pgid= | awk -v g="$1" '$2==g {print $1}'); do
    total=$((total + $(awk '{print $14+$15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
  done
  echo "$total"
}
results=$repo/bench/results/h2-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p "$repo/bench/results"
hz=$(getconf CLK_TCK)
measure() { # row target pidkey url: one line "row target rps p99_us cpu_us_per_req"
  local row=$1 target=$2 pid=${PID[$3]} url=$4
  local before after out rps p99 n
  before=$(cpu_ticks "$pid")
  rm -f h2.log
  out=$(taskset -c 1 h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" --log-file=h2.log \
        -H "authorization: Bearer $TOKEN" "$url/v1/users/123" 2>&1)
  after=$(cpu_ticks "$pid")
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
  n=$(awk '/^requests:/ {print $8}' <<<"$out")
  grep -qE '^requests:.* 0 failed, 0 errored' <<<"$out" || echo "  $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ')"
  p99=$(awk -F'\t' '{print $3}' h2.log | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; print v[i]}')
  # CPU over the whole run (connection set-up included): per request h2load counted as succeeded.
  local cpu; cpu=$(python3 -c "print(f'{($after-$before)/$hz*1e6/max($n,1):.1f}')")
  echo "$row $target $rps $p99 $cpu" | tee -a "$results"
}
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  for row in $ROWS; do
    pair=($(round_order "$r" nginx rolegate))
    for t in "${pair[@]}"; do
      case $row-$t in
        h2-tls-nginx) measure "$row" nginx ng-tls https://127.0.0.1:$((BASE+2)) ;;
        h2-tls-rolegate) measure "$row" rolegate rg-tls https://127.0.0.1:$((BASE+12)) ;;
        h2c-nginx) measure "$row" nginx ng-h2c http://127.0.0.1:$((BASE+3)) ;;
        h2c-rolegate) measure "$row" rolegate rg-h2c http://127.0.0.1:$((BASE+13)) ;;
        h2c-h2c-nginx) measure "$row" nginx ng-h2h2 http://127.0.0.1:$((BASE+4)) ;;
        h2c-h2c-rolegate) measure "$row" rolegate rg-h2h2 http://127.0.0.1:$((BASE+14)) ;;
      esac
    done
  done
done
python3 - "$results" "$ROWS" <<'PY'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    p = l.split()
    if len(p) == 5:
        d[(p[0], p[1])].append(tuple(float(x) for x in p[2:]))
print("| workload | nginx req/s | rolegate req/s | ratio (per round) | p99 nginx / rolegate | CPU µs/req nginx / rolegate |")
print("|---|---|---|---|---|---|")
for row in sys.argv[2].split():
    n, g = d[(row, "nginx")], d[(row, "rolegate")]
    if not n or not g: continue
    ratios = [b[0] / a[0] for a, b in zip(n, g)]
    med = lambda xs, i: st.median(x[i] for x in xs)
    print(f"| {row} | {med(n,0):.0f} | {med(g,0):.0f} | {st.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) | "
          f"{med(n,1)/1000:.2f} / {med(g,1)/1000:.2f} ms | {med(n,2):.1f} / {med(g,2):.1f} |")
PY
echo "raw: $results"
