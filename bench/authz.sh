#!/usr/bin/env bash
# The decision API under load, on loopback, side by side in one run with
# alternating rounds (the start rotated each round), all in front of the same
# nginx upstream, wrk with one cached RS256 token:
#   A  direct           wrk -> upstream nginx (the rig's limit)
#   N  nginx-plain      wrk -> nginx reverse proxy, no auth -> upstream
#   NA nginx-authz      wrk -> nginx auth_request (deploy/authz/nginx.conf) -> rolegate's
#                       decision endpoint, then -> upstream
#   R  rolegate-proxy   wrk -> rolegate enforcing the same table -> upstream
# Reported per target: median req/s and p99 over the rounds, and CPU µs per
# request of each process taking part (/proc/<pid>/stat utime+stime of its
# process group, before and after each run, ÷ the requests wrk counted):
# the front nginx, rolegate (the decision endpoint's per check for NA; the
# proxy's per request for R) and the upstream.
#
# Layout as the shared harness's "sut": upstream, front nginx and rolegate on
# CPU 0 (one worker each), wrk alone on CPU 1. Bounded: ROUNDS x DURATION per
# target plus a 1 s warm-up each.
#   bench/authz.sh                         # 3 rounds x 10 s
#   ROUNDS=3 DURATION=5 bench/authz.sh     # shorter
# Settings: ROUNDS=3 DURATION=10 CONNS=32 BASE_PORT=28180 (ports BASE_PORT..+5).
# Needs nginx, wrk, curl, openssl (Debian packages, installed when missing, as root).
# Every process started here leads its own process group and is stopped by it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
BASE_PORT=${BASE_PORT:-28180}
UP=$BASE_PORT N=$((BASE_PORT + 1)) NA=$((BASE_PORT + 2)) R=$((BASE_PORT + 3))
AUTHZ=$((BASE_PORT + 4)) AUTHZ_PROXY=$((BASE_PORT + 5))
REQ_PATH=/v1/users/123
# Like the other proxies measured: no access log.
export RUST_LOG=warn

die() { echo "authz.sh: $*" >&2; exit 1; }
missing=()
for tool in nginx wrk curl openssl taskset setsid; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "authz.sh: installing nginx wrk curl openssl util-linux (missing: ${missing[*]})" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl openssl util-linux >/dev/null
fi
export PATH=$PATH:/usr/sbin
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (the system under test on CPU 0, wrk on CPU 1)"

(cd "$repo" && cargo build --release --quiet --bin rolegate)
work=$(mktemp -d "${TMPDIR:-/tmp}/rolegate-authz-bench.XXXXXX")
chmod 755 "$work"
cp "$repo/target/release/rolegate" "$work/rolegate"
PGIDS=()
cleanup() {
  local pg
  set +e
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null; done
  for pg in "${PGIDS[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UP" "$N" "$NA" "$R" "$AUTHZ" "$AUTHZ_PROXY"; do port_busy "$p" && die "port $p in use (set BASE_PORT)"; done

start() { # name cmd... (on CPU 0, own session and process group; its id is its pid)
  local name=$1; shift
  setsid taskset -c 0 "$@" >"$work/$name.log" 2>&1 </dev/null &
  PGIDS+=("$!")
  eval "PG_${name//-/_}=$!"
}
wait_port() { # name port
  for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/" || true) != 000 ]] && return 0
    sleep 0.05
  done
  tail -n 20 "$work/$1.log" >&2; die "$1 not answering on :$2"
}

# ---- keys, token, tables --------------------------------------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/idp.key" 2>/dev/null
openssl pkey -in "$work/idp.key" -pubout -out "$work/idp.pub.pem"
TOKEN=$("$work/rolegate" mint --key "$work/idp.key" --kid k1 --ttl 24h \
  --claims '{"iss":"https://idp.bench","aud":"bench","sub":"bench-user","ts_roles":["reader"],"ts_permissions":["users:read"]}')
table() { # server-listen [authz-listen]
  cat <<TOML
[server]
listen = "127.0.0.1:$1"
workers = 1
[upstreams.default]
url = "http://127.0.0.1:$UP"
[[issuers]]
issuer = "https://idp.bench"
audiences = ["bench"]
keys = [{ kid = "k1", pem_file = "$work/idp.pub.pem" }]
algorithms = ["RS256"]
roles_claim = "ts_roles"
permissions_claim = "ts_permissions"
[forward]
headers = { "x-auth-subject" = "sub", "x-auth-roles" = "\$roles" }
[[routes]]
name = "users read"
methods = ["GET"]
path = "/v1/users/*"
all_permissions = ["users:read"]
TOML
  [[ -n ${2:-} ]] && printf '[authz]\nlisten = "127.0.0.1:%s"\n' "$2"
  return 0
}
table "$R" >"$work/proxy.toml"
table "$AUTHZ_PROXY" "$AUTHZ" >"$work/authz.toml"

ngx_conf() { # dir http-block-content
  mkdir -p "$1/logs" "$1/tmp"
  cat >"$1/nginx.conf" <<CONF
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
$2
}
CONF
}
ngx_conf "$work/upstream" "    server { listen 127.0.0.1:$UP backlog=4096; location / { default_type application/json; return 200 '{\"ok\":true}\n'; } }"
ngx_conf "$work/plain" "    upstream backend { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:$N backlog=4096; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
# The README's snippet as it is, with this rig's addresses.
snippet=$(sed -e "s|127.0.0.1:9191|127.0.0.1:$AUTHZ|; s|127.0.0.1:9000|127.0.0.1:$UP|; s|listen 80;|listen 127.0.0.1:$NA backlog=4096;|" \
  -e "s|keepalive 32;|keepalive 64;|" "$repo/deploy/authz/nginx.conf")
ngx_conf "$work/front" "$snippet"

start upstream nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -g 'daemon off;'
wait_port upstream "$UP"
start nginx-plain nginx -p "$work/plain" -c "$work/plain/nginx.conf" -g 'daemon off;'
wait_port nginx-plain "$N"
start nginx-authz nginx -p "$work/front" -c "$work/front/nginx.conf" -g 'daemon off;'
wait_port nginx-authz "$NA"
start rolegate-proxy "$work/rolegate" run --config "$work/proxy.toml"
wait_port rolegate-proxy "$R"
start rolegate-authz "$work/rolegate" run --config "$work/authz.toml"
wait_port rolegate-authz "$AUTHZ"

# Every target answers the benchmark request with 200, and the check-based ones refuse without a token.
for port in "$UP" "$N" "$NA" "$R"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port$REQ_PATH")
  [[ $code == 200 ]] || die "GET $REQ_PATH on :$port answered $code"
done
for port in "$NA" "$R"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$REQ_PATH")
  [[ $code == 401 ]] || die "GET $REQ_PATH without a token on :$port answered $code, expected 401"
done

# ---- measuring ----------------------------------------------------------------------
cpu_ticks() { # process group id -> utime+stime of its processes, in clock ticks
  local pg=$1 f line rest total=0
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    rest=${line##*) }
    read -r -a fields <<<"$rest"
    # after "pid (comm) ": state ppid pgrp ... utime stime at 11 and 12 (from 0)
    [[ ${fields[2]} == "$pg" ]] && total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)
NAMES=(A-direct N-nginx-plain NA-nginx-authz R-rolegate-proxy)
PORTS=("$UP" "$N" "$NA" "$R")
# Process groups whose CPU each target is charged with: front, rolegate, upstream.
FRONT=("" "$PG_nginx_plain" "$PG_nginx_authz" "")
ROLEGATE=("" "" "$PG_rolegate_authz" "$PG_rolegate_proxy")
results=$work/results.tsv
: >"$results"
run() { # index seconds -> appends "name rps p99 requests front_us rolegate_us upstream_us" when measuring
  local i=$1 secs=$2 out=$work/wrk.txt pg a b
  declare -A before
  for pg in "${FRONT[$i]}" "${ROLEGATE[$i]}" "$PG_upstream"; do [[ -n $pg ]] && before[$pg]=$(cpu_ticks "$pg"); done
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:${PORTS[$i]}$REQ_PATH" >"$out" 2>&1
  local reqs rps p99 non2xx
  reqs=$(awk '/requests in/ {print $1}' "$out")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
  [[ -z $non2xx ]] || die "${NAMES[$i]}: $non2xx non-2xx responses"
  us() { # pg -> CPU µs per request over this run
    [[ -z $1 ]] && { echo "-"; return; }
    b=$(cpu_ticks "$1"); a=${before[$1]}
    awk -v d=$((b - a)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }'
  }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${NAMES[$i]}" "$rps" "$p99" "$reqs" \
    "$(us "${FRONT[$i]}")" "$(us "${ROLEGATE[$i]}")" "$(us "$PG_upstream")" >>"$3"
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc); $(nginx -v 2>&1); wrk -t1 -c$CONNS; $ROUNDS rounds x ${DURATION}s"
for i in "${!NAMES[@]}"; do run "$i" 1 /dev/null; done   # warm-up (the token cache, connection pools)
for ((r = 0; r < ROUNDS; r++)); do
  for ((j = 0; j < ${#NAMES[@]}; j++)); do
    k=$(((j + r) % ${#NAMES[@]}))
    run "$k" "$DURATION" "$results"
    tail -n1 "$results" | awk -F'\t' -v r=$((r + 1)) '{printf "  round %d  %-18s %10s req/s  p99 %-8s front %6s µs  rolegate %6s µs  upstream %6s µs\n", r, $1, $2, $3, $5, $6, $7}'
  done
done

# ---- summary: medians over the rounds -------------------------------------------------
echo
echo "| target | req/s (median) | p99 (median) | front nginx CPU µs/req | rolegate CPU µs/req | upstream CPU µs/req |"
echo "|---|---|---|---|---|---|"
for name in "${NAMES[@]}"; do
  awk -F'\t' -v n="$name" '$1 == n' "$results" | python3 -c '
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
def med(col, unit=None):
    vals = [r[col] for r in rows if r[col] != "-"]
    if not vals: return "-"
    if unit: # p99 as wrk prints it: 1.23ms / 812.00us
        def us(v): return float(v[:-2]) * (1000 if v.endswith("ms") else 1) if v.endswith(("ms", "us")) else float(v[:-1]) * 1e6
        return "%.0f µs" % statistics.median(us(v) for v in vals)
    return "%.1f" % statistics.median(float(v) for v in vals) if col > 3 else "%.0f" % statistics.median(float(v) for v in vals)
print("| %s | %s | %s | %s | %s | %s |" % (rows[0][0], med(1), med(2, "us"), med(4), med(5), med(6)))
'
done
