#!/usr/bin/env bash
# What the size of the table and of the tokens costs, and the token cache
# under churn: rolegate against itself with a small table, in one run, each
# round in a turned order (bench/order.sh); wrk keep-alive, RS256, [forward]
# subject and permission headers on in every variant, nginx upstream; upstream
# + rolegate on CPU 0, wrk on CPU 1:
#   small        1 issuer, 3 roles, 2 routes, a token with 1 role (the baseline)
#   issuers50    50 issuers; tokens of the last one
#   roles1000    1,000 roles in chains of 10 `includes`; the token has a chain's top
#   routes10k    10,000 routes before the one that matches
#   token200     a token with 200 roles (3.4 KB; its x-auth-roles header 2.2 KB)
#   pad200       a token of the same size with 1 role and 199 other strings:
#                token200 / pad200 is what the roles cost, token200 / small
#                what the roles and the bytes cost together
#   churn        token_cache = 1000, 2,000 distinct tokens rotated (every lookup misses)
#   nocache      token_cache = 0, the same 2,000 tokens (the reference for churn)
#   churn2/nocache2   the same with 2 workers (unpinned: both cores, wrk too)
# Prints each variant's req/s, its ratio to the row's reference (small, or
# nocache for churn) per round, and CPU µs per request.
#   ROUNDS=3 DURATION=8 bench/scale.sh
#   VARIANTS="small routes10k" bench/scale.sh
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/bench/order.sh"
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-8}; CONNS=${CONNS:-32}; BASE=${BASE:-29280}
VARIANTS=${VARIANTS:-"small issuers50 roles1000 routes10k token200 pad200 churn nocache churn2 nocache2"}
for tool in nginx wrk taskset openssl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk util-linux openssl >/dev/null; break; }
done
if [[ -z ${ROLEGATE_BIN:-} ]]; then
  (cd "$repo" && cargo build --release --quiet --bin rolegate) || exit 1
  ROLEGATE_BIN=$repo/target/release/rolegate
fi
LUA=$repo/../shared/bench/wrk/bearer.lua
W=$(mktemp -d /tmp/scale.XXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
openssl genpkey -algorithm RSA -out idp.key 2>/dev/null; openssl pkey -in idp.key -pubout -out idp.pub.pem
mkdir -p up/logs up/tmp
cat > up/nginx.conf <<NG
worker_processes 1; pid nginx.pid; error_log logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path tmp/b; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
  server { listen 127.0.0.1:$BASE backlog=4096; location / { default_type application/json; return 200 '{"id":"123","ok":true}\n'; } } }
NG
setsid taskset -c 0 nginx -p "$W/up" -c "$W/up/nginx.conf" -g 'daemon off;' & pids+=($!)
mint() { "$ROLEGATE_BIN" mint --key idp.key --kid k1 --ttl 3h --claims "$1"; }
# The tables, written by one Python script: every variant has the same route
# for the request (GET /v1/users/123 needs users:read) as its last route.
python3 - "$BASE" <<'PY'
import sys
up = sys.argv[1]
def table(issuers=1, roles="small", routes=1, cache=10000, workers=1):
    t = [f'[server]\nlisten = "127.0.0.1:0"\nworkers = {workers}\n[upstreams.default]\nurl = "http://127.0.0.1:{up}"\n']
    for i in range(issuers - 1):
        t.append(f'[[issuers]]\nissuer = "https://other{i}.bench"\nkeys = [{{ pem_file = "idp.pub.pem" }}]\nroles_claim = "ts_roles"\n')
    t.append('[[issuers]]\nissuer = "https://idp.bench"\naudiences = ["bench"]\nkeys = [{ kid = "k1", pem_file = "idp.pub.pem" }]\n'
             'roles_claim = "ts_roles"\npermissions_claim = "ts_permissions"\n')
    if roles == "small":
        t.append('[roles.reader]\npermissions = ["users:read"]\n[roles.manager]\nincludes = ["reader"]\n[roles.admin]\nincludes = ["manager"]\n')
    else:
        # 100 chains of 10: c{k}_0 includes c{k}_1 ... includes c{k}_9, which grants users:read
        for k in range(100):
            for d in range(10):
                inc = f'includes = ["c{k}_{d+1}"]\n' if d < 9 else 'permissions = ["users:read", "p:%d"]\n' % k
                t.append(f'[roles.c{k}_{d}]\n{inc}')
    # $roles is not forwarded: 200 roles would add 2.2 KB to every upstream request (bytes, not role work)
    t.append('[forward]\nheaders = { "x-auth-subject" = "sub", "x-auth-permissions" = "$permissions" }\n')
    t.append(f'[defaults]\ntoken_cache = {cache}\n')
    for i in range(routes - 1):
        kind = i % 4
        path = [f"/api/svc{i}/items", f"/api/svc{i}/items/*", f"/api/svc{i}/**", f"/t/{{tenant}}/svc{i}/{{id}}"][kind]
        t.append(f'[[routes]]\nname = "r{i}"\nmethods = ["GET", "POST"]\npath = "{path}"\nall_permissions = ["p{i}"]\n')
    t.append('[[routes]]\nname = "read users"\nmethods = ["GET"]\npath = "/v1/users/*"\nall_permissions = ["users:read"]\n')
    return "".join(t)
variants = {
    "small": table(), "issuers50": table(issuers=50), "roles1000": table(roles="deep"), "routes10k": table(routes=10000),
    "token200": table(), "pad200": table(), "churn": table(cache=1000), "nocache": table(cache=0),
    "churn2": table(cache=1000, workers=2), "nocache2": table(cache=0, workers=2),
}
for name, text in variants.items():
    open(f"rg-{name}.toml", "w").write(text)
PY
claims='"iss":"https://idp.bench","aud":"bench","sub":"u1"'
mint "{$claims,\"ts_roles\":[\"reader\"]}" > tok-small
mint "{$claims,\"ts_roles\":[\"c7_0\"]}" > tok-roles1000
roles200=$(python3 -c 'import json; print(json.dumps(["reader"] + [f"team-{i}" for i in range(199)]))')
mint "{$claims,\"ts_roles\":$roles200}" > tok-token200
pad199=$(python3 -c 'import json; print(json.dumps([f"team-{i}" for i in range(199)]))')
mint "{$claims,\"ts_roles\":[\"reader\"],\"pad\":$pad199}" > tok-pad200
echo "minting 2,000 tokens for the churn rows"
seq 1 2000 | xargs -P 2 -I{} "$ROLEGATE_BIN" mint --key idp.key --kid k1 --ttl 3h --claims "{$claims,\"jti\":\"{}\",\"ts_roles\":[\"reader\"]}" > pool.txt
declare -A PORT PID
port=$((BASE + 1))
for v in $VARIANTS; do
  sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" rg-$v.toml
  pin=(taskset -c 0); [[ $v == *2 ]] && pin=()
  RUST_LOG=warn setsid "${pin[@]}" "$ROLEGATE_BIN" run --config rg-$v.toml >rg-$v.out 2>rg-$v.log & pids+=($!)
  PORT[$v]=$port; PID[$v]=$!; port=$((port + 1))
done
for v in $VARIANTS; do
  for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/${PORT[$v]}) 2>/dev/null && break; sleep 0.1; done
done
token_for() { case $1 in roles1000|token200|pad200) cat tok-$1 ;; *) cat tok-small ;; esac; }
for v in $VARIANTS; do
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(token_for $v)" "http://127.0.0.1:${PORT[$v]}/v1/users/123")
  echo "check $v -> $c"; [[ $c == 200 ]] || { cat rg-$v.log; exit 1; }
done
cpu_ticks() { awk '{print $14+$15}' /proc/"$1"/stat 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
results=$repo/bench/results/scale-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p "$repo/bench/results"
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  order=($(round_order "$r" $VARIANTS))
  for v in "${order[@]}"; do
    env=(TOKEN="$(token_for $v)"); pin=(taskset -c 1)
    [[ $v == churn* || $v == nocache* ]] && env=(TOKEN_FILE="$W/pool.txt")
    [[ $v == *2 ]] && pin=()
    before=$(cpu_ticks ${PID[$v]})
    out=$(env "${env[@]}" "${pin[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$LUA" "http://127.0.0.1:${PORT[$v]}/v1/users/123" 2>&1)
    after=$(cpu_ticks ${PID[$v]})
    json=$(sed -n 's/^BENCHJSON //p' <<<"$out")
    python3 - "$v" "$json" "$before" "$after" "$hz" "$DURATION" <<'PY' | tee -a "$results"
import json, sys
v, j, b, a, hz, d = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
n = j["requests"]; errs = j["err_status"] + j["err_connect"] + j["err_read"] + j["err_timeout"]
print(f"{v} {n / (j['duration_us'] / 1e6):.0f} {j['p99_us']:.0f} {(a - b) / hz * 1e6 / max(n, 1):.1f} {errs}")
PY
  done
done
python3 - "$results" "$VARIANTS" <<'PY'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    p = l.split()
    if len(p) == 5: d[p[0]].append(tuple(float(x) for x in p[1:]))
print("| variant | req/s | vs reference (per round) | p99 | CPU µs/req |")
print("|---|---|---|---|---|")
for v in sys.argv[2].split():
    ref = {"churn": "nocache", "churn2": "nocache2"}.get(v, "small" if not v.startswith("nocache") else v)
    if v == "token200" and d.get("pad200"):
        ratios = [a[0] / b[0] for a, b in zip(d[v], d["pad200"])]
        print(f"| token200 vs pad200 (the roles alone) | | {st.median(ratios):.3f} ({', '.join(f'{x:.3f}' for x in ratios)}) | | |")
    rows, base = d[v], d.get(ref, [])
    if not rows: continue
    ratios = [a[0] / b[0] for a, b in zip(rows, base)] if base else []
    rs = f"{st.median(ratios):.3f} ({', '.join(f'{x:.3f}' for x in ratios)}) vs {ref}" if ratios and ref != v else "-"
    print(f"| {v} | {st.median(r[0] for r in rows):.0f} | {rs} | {st.median(r[1] for r in rows)/1000:.2f} ms | {st.median(r[2] for r in rows):.1f} |")
PY
echo "raw: $results"
