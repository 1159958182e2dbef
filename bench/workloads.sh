#!/usr/bin/env bash
# The workloads users load-test, nginx (a plain proxy, no auth) beside rolegate
# (RS256, cached token) in one run, each round in a turned order (bench/order.sh):
#   keepalive   wrk, keep-alive, access logs off on both
#   logs        wrk, keep-alive, access logs on on both (nginx access_log to a
#               file; rolegate's default access log: JSON on stderr, to a file)
#   churn       wrk with "Connection: close": one TCP connection per request
#   tls         wrk over HTTPS (TLS 1.3, P-256 certificate), keep-alive
#   tls-full    a new TLS connection per request, full handshake (benches/churn.rs)
#   tls-resume  a new TLS connection per request, resuming the session
# Each row: req/s of both, the ratio, p99 of both, and each proxy's CPU µs per
# request (utime+stime from /proc, over the run); the raw lines also split it
# into user and kernel time and give the proxy's context switches per request
# (every thread, from /proc), then the voluntary and the involuntary ones
# apart. Pinning: upstream + proxy on CPU 0, the load generator on CPU 1 (as
# ../shared/bench, LAYOUT=sut).
#
#   bench/workloads.sh                          # 3 rounds x 8 s, every row
#   ROUNDS=5 DURATION=10 ROWS="keepalive logs" bench/workloads.sh
#   ROLEGATE_BIN=/path/to/other/rolegate bench/workloads.sh
#   ROLEGATE_B=/path/to/variant bench/workloads.sh   # an A/B: a third column, "b"
#   UPSTREAM_SCHED=batch bench/workloads.sh   # the upstream nginx as SCHED_BATCH:
#       a woken upstream then never preempts the proxy on their shared CPU (an
#       experiment on the scheduler, not a setting of either proxy)
# Installs nginx and wrk from Debian's packages when missing (as root).
# Results: bench/results/workloads-<stamp>.txt (every run's line) and the table on stdout.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/bench/order.sh"
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-8}; CONNS=${CONNS:-32}; BASE=${BASE:-29180}
ROWS=${ROWS:-"keepalive logs churn tls tls-full tls-resume"}
UPSTREAM_SCHED=${UPSTREAM_SCHED:-other}
for tool in nginx wrk taskset openssl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk util-linux openssl >/dev/null; break; }
done
if [[ -z ${ROLEGATE_BIN:-} ]]; then
  (cd "$repo" && cargo build --release --quiet --bin rolegate) || exit 1
  ROLEGATE_BIN=$repo/target/release/rolegate
fi
CHURN=$(cd "$repo" && cargo bench --bench churn --no-run --message-format=json 2>/dev/null | python3 -c '
import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="churn" and m.get("executable"): print(m["executable"])' | tail -1)
W=$(mktemp -d /tmp/workloads.XXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key -out tls.pem -days 2 -subj /CN=localhost 2>/dev/null
openssl genpkey -algorithm RSA -out idp.key 2>/dev/null; openssl pkey -in idp.key -pubout -out idp.pub.pem
TOKEN=$("$ROLEGATE_BIN" mint --key idp.key --kid k1 --ttl 2h --claims '{"iss":"https://idp.bench","aud":"bench","sub":"u1","ts_permissions":["users:read"]}')
declare -A PID
mk_nginx() { # name listen-directive http-extra server-body [scheduling policy]
  mkdir -p "$1"/logs "$1"/tmp
  cat > "$1/nginx.conf" <<NG
worker_processes 1; pid nginx.pid; error_log logs/error.log warn;
events { worker_connections 4096; multi_accept on; }
http { access_log off; server_tokens off; keepalive_requests 1000000; keepalive_timeout 75s;
  client_body_temp_path tmp/b; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
  $3
  server { $2
    $4 } }
NG
  setsid taskset -c 0 chrt --"${5:-other}" 0 nginx -p "$W/$1" -c "$W/$1/nginx.conf" -g 'daemon off;' & pids+=($!); PID[$1]=$!
}
UP=$BASE
mk_nginx up "listen 127.0.0.1:$UP backlog=4096;" "" "location / { default_type application/json; return 200 '{\"id\":\"123\",\"ok\":true}\n'; }" "$UPSTREAM_SCHED"
PX='upstream backend { server 127.0.0.1:'$UP'; keepalive 64; keepalive_requests 1000000; }'
LOC='location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'
mk_nginx ng-plain "listen 127.0.0.1:$((BASE+1)) backlog=4096;" "$PX" "$LOC"
mk_nginx ng-log "listen 127.0.0.1:$((BASE+2)) backlog=4096; access_log $W/ng-log/logs/access.log;" "$PX" "$LOC"
# nginx's defaults for TLS session reuse: tickets on (no shared cache).
mk_nginx ng-tls "listen 127.0.0.1:$((BASE+3)) ssl backlog=4096; ssl_certificate $W/tls.pem; ssl_certificate_key $W/tls.key; ssl_protocols TLSv1.2 TLSv1.3;" "$PX" "$LOC"
rg() { # name port extra-server-lines log-level [binary]
  local bin=${5:-$ROLEGATE_BIN}
  cat > rg-$1.toml <<T
[server]
listen = "127.0.0.1:$2"
workers = 1
$3
[upstreams.default]
url = "http://127.0.0.1:$UP"
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
  RUST_LOG=$4 setsid taskset -c 0 "$bin" run --config rg-$1.toml >rg-$1.out 2>rg-$1.log & pids+=($!); PID[rg-$1]=$!
}
rg plain $((BASE+11)) "" warn
rg log $((BASE+12)) "" info
rg tls $((BASE+13)) 'tls = { cert = "tls.pem", key = "tls.key" }' warn
ports="$UP $((BASE+1)) $((BASE+2)) $((BASE+3)) $((BASE+11)) $((BASE+12)) $((BASE+13))"
targets="nginx rolegate"
if [[ -n ${ROLEGATE_B:-} ]]; then
  rg b-plain $((BASE+21)) "" warn "$ROLEGATE_B"
  rg b-log $((BASE+22)) "" info "$ROLEGATE_B"
  rg b-tls $((BASE+23)) 'tls = { cert = "tls.pem", key = "tls.key" }' warn "$ROLEGATE_B"
  ports="$ports $((BASE+21)) $((BASE+22)) $((BASE+23))"; targets="nginx rolegate b"
fi
for port in $ports; do
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
for u in http://127.0.0.1:$((BASE+1)) http://127.0.0.1:$((BASE+2)) https://127.0.0.1:$((BASE+3)) http://127.0.0.1:$((BASE+11)) http://127.0.0.1:$((BASE+12)) https://127.0.0.1:$((BASE+13)); do
  c=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$u/v1/users/123"); echo "check $u -> $c"
  [[ $c == 200 ]] || { echo "not serving: $u"; exit 1; }
done
usage() { # every process of the group $1 leads (nginx's workers, rolegate's threads): "utime stime voluntary involuntary", ticks and switches
  local user=0 sys=0 vol=0 inv=0 p t v i
  for p in $(ps -eo pid=,pgid= | awk -v g="$1" '$2==g {print $1}'); do
    read -r u s < <(awk '{print $14, $15}' /proc/"$p"/stat 2>/dev/null || echo 0 0)
    user=$((user + ${u:-0})); sys=$((sys + ${s:-0}))
    for t in /proc/"$p"/task/*; do
      read -r v i < <(awk '/^voluntary_ctxt_switches/ {v = $2} /^nonvoluntary_ctxt_switches/ {i = $2} END {print v + 0, i + 0}' "$t"/status 2>/dev/null || echo 0 0)
      vol=$((vol + ${v:-0})); inv=$((inv + ${i:-0}))
    done
  done
  echo "$user $sys $vol $inv"
}
results=$repo/bench/results/workloads-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p "$repo/bench/results"
hz=$(getconf CLK_TCK)
per_request() { # two `usage` lines (before, after) and a request count: "cpu_us user_us sys_us switches voluntary involuntary" per request
  python3 -c "import sys
a, b, n = [int(x) for x in sys.argv[1].split()], [int(x) for x in sys.argv[2].split()], max(int(sys.argv[3] or 0), 1)
u, s, v, i = ((y - x) / n for x, y in zip(a, b))
u, s = u / $hz * 1e6, s / $hz * 1e6
print(f'{u+s:.1f} {u:.1f} {s:.1f} {v+i:.3f} {v:.3f} {i:.3f}')" "$1" "$2" "$3"
}
measure() { # row target pidkey url ...: one line "row target rps p99_us cpu_us_per_req user_us sys_us switches_per_req
  # voluntary involuntary" (the proxy's), then the upstream's "cpu_us_per_req voluntary involuntary"
  local row=$1 target=$2 pid=${PID[$3]} url=$4; shift 4
  local out rps p99 n p0 p1 u0 u1 up_cpu up_vol up_inv
  p0=$(usage "$pid"); u0=$(usage "${PID[up]}")
  case $row in
    tls-full|tls-resume)
      local resume=0; [[ $row == tls-resume ]] && resume=1
      out=$(CHURN_URL="$url/v1/users/123" CHURN_TOKEN=$TOKEN CHURN_CONNS=$CONNS CHURN_SECS=$DURATION CHURN_RESUME=$resume taskset -c 1 "$CHURN")
      rps=$(awk '{print $4}' <<<"$out"); p99=$(awk '{print $8}' <<<"$out"); n=$(awk '{print $2}' <<<"$out")
      [[ $(awk '{print $10}' <<<"$out") == 0 ]] || echo "  errors: $out" ;;
    *)
      out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$@" "$url/v1/users/123" 2>&1)
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {v=$2; if (v ~ /ms$/) {sub(/ms/,"",v); v*=1000} else if (v ~ /us$/) {sub(/us/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000000}; print v}' <<<"$out")
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      grep -qE 'Non-2xx|Socket errors' <<<"$out" && echo "  $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')" ;;
  esac
  p1=$(usage "$pid"); u1=$(usage "${PID[up]}")
  read -r up_cpu _ _ _ up_vol up_inv < <(per_request "$u0" "$u1" "$n")
  echo "$row $target $rps $p99 $(per_request "$p0" "$p1" "$n") $up_cpu $up_vol $up_inv" | tee -a "$results"
}
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  for row in $ROWS; do
    pair=($(round_order "$r" $targets))
    for t in "${pair[@]}"; do
      case $row-$t in
        keepalive-nginx) measure "$row" nginx ng-plain http://127.0.0.1:$((BASE+1)) ;;
        keepalive-rolegate) measure "$row" rolegate rg-plain http://127.0.0.1:$((BASE+11)) ;;
        logs-nginx) measure "$row" nginx ng-log http://127.0.0.1:$((BASE+2)) ;;
        logs-rolegate) measure "$row" rolegate rg-log http://127.0.0.1:$((BASE+12)) ;;
        churn-nginx) measure "$row" nginx ng-plain http://127.0.0.1:$((BASE+1)) -H "Connection: close" ;;
        churn-rolegate) measure "$row" rolegate rg-plain http://127.0.0.1:$((BASE+11)) -H "Connection: close" ;;
        tls-nginx|tls-full-nginx|tls-resume-nginx) measure "$row" nginx ng-tls https://127.0.0.1:$((BASE+3)) ;;
        tls-rolegate|tls-full-rolegate|tls-resume-rolegate) measure "$row" rolegate rg-tls https://127.0.0.1:$((BASE+13)) ;;
        keepalive-b) measure "$row" b rg-b-plain http://127.0.0.1:$((BASE+21)) ;;
        logs-b) measure "$row" b rg-b-log http://127.0.0.1:$((BASE+22)) ;;
        churn-b) measure "$row" b rg-b-plain http://127.0.0.1:$((BASE+21)) -H "Connection: close" ;;
        tls-b|tls-full-b|tls-resume-b) measure "$row" b rg-b-tls https://127.0.0.1:$((BASE+23)) ;;
      esac
    done
  done
done
echo "access-log lines written by rolegate: $(wc -l < rg-log.log)"
python3 - "$results" "$ROWS" <<'PY'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    p = l.split()
    if len(p) >= 5:
        d[(p[0], p[1])].append(tuple(float(x) for x in p[2:]))
print("| workload | nginx req/s | rolegate req/s | ratio (per round) | p99 nginx / rolegate | CPU µs/req nginx / rolegate |")
print("|---|---|---|---|---|---|")
for row in sys.argv[2].split():
    n, g, b = d[(row, "nginx")], d[(row, "rolegate")], d[(row, "b")]
    if not n or not g: continue
    ratios = [y[0] / x[0] for x, y in zip(n, g)]
    med = lambda xs, i: st.median(x[i] for x in xs)
    print(f"| {row} | {med(n,0):.0f} | {med(g,0):.0f} | {st.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) | "
          f"{med(n,1)/1000:.2f} / {med(g,1)/1000:.2f} ms | {med(n,2):.1f} / {med(g,2):.1f} |")
    if b:
        rb = [y[0] / x[0] for x, y in zip(g, b)]
        print(f"| {row}: b | | {med(b,0):.0f} | b/rolegate {st.median(rb):.3f} ({', '.join(f'{r:.3f}' for r in rb)}) | "
              f"b {med(b,1)/1000:.2f} ms | b {med(b,2):.1f} |")
PY
echo "raw: $results"
