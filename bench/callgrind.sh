#!/usr/bin/env bash
# The gateway's own work per request, counted in instructions rather than timed: hookgate
# runs under callgrind while wrk sends signed short requests at a low, held rate, and the
# script prints what the request path's main functions cost per request, everything they
# call included. Instruction counts repeat to within a few percent where timings on a
# shared machine move by tens of percent.
#
# Usage: bash bench/callgrind.sh [RATE] [SECONDS]      (default 200 requests/s for 10 s)
# Another build to count: BENCH_HOOKGATE=path/to/hookgate bash bench/callgrind.sh
#
# Under valgrind SHA-256 runs without the CPU's SHA instructions, so the HMAC check counts
# for far more here (about 40 k instructions a request) than it costs on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source "$repo/bench/lib.sh"
rate=${1:-200}
seconds=${2:-10}
work=$(realpath -m "${BENCH_WORK:-$repo/target/bench-callgrind}")
hookgate=${BENCH_HOOKGATE:-$repo/target/release/hookgate}
tools=$repo/bench/tools/target/release/hookgate-bench
secret=bench-secret-not-for-production
base=${BENCH_PORT_BASE:-24440}
gateway_port=$((base + 2)) upstream_port=$((base + 3)) admin_port=$((base + 4))

# The request path's functions whose cost is printed, as callgrind names them.
functions=(
    'hookgate::ingress::handler::handle::{{closure}}'
    'hookgate::ingress::handler::verify'
    'hookgate::json::view'
    'hookgate::store::sqlite::apply_together'
    'hookgate::deliver::worker::attempt::{{closure}}'
    'hookgate::deliver::worker::log_decision'
    '<tracing_subscriber::fmt::Subscriber<N,E,F,W> as tracing_core::subscriber::Subscriber>::event'
)

trap stop_all EXIT

missing=()
for tool in wrk valgrind curl python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -n ${BENCH_HOOKGATE:-} ]] || cargo build --release --locked --quiet
cargo build --release --locked --quiet --manifest-path "$repo/bench/tools/Cargo.toml"

rm -rf "$work" && mkdir -p "$work"
fixtures=$repo/../shared/fixtures/pulse
[[ -f $fixtures/success.json ]] || fixtures=$repo/fixtures/pulse
"$tools" cert --cert "$work/cert.pem" --key "$work/key.pem"
"$tools" generate --body "$fixtures/success.json" --count $((rate * seconds * 2)) --threads 1 \
    --secret "$secret" --host 127.0.0.1 --path /hooks/bench --tag count --out "$work/requests"
cat >"$work/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$gateway_port"
tls = { cert = "$work/cert.pem", key = "$work/key.pem", create = true }

[admin]
listen = "127.0.0.1:$admin_port"

[store]
path = "$work/data/hookgate.db"

[upstreams.one]
url = "http://127.0.0.1:$upstream_port/one"

[[routes]]
name = "bench"
path = "/hooks/bench"
verify = { scheme = "hmac", header = "x-signature", algorithm = "sha256", encoding = "hex", secrets = [{ env = "HOOKGATE_BENCH_SECRET" }] }
dedup = { key = "json:/request_id", window = "72h" }
upstreams = ["one"]
EOF

"$tools" upstream --listen "127.0.0.1:$upstream_port" --out "$work/received" &
pids+=($!)
wait_for "http://127.0.0.1:$upstream_port/count"
# Counting starts once the gateway is up, so start-up is left out.
HOOKGATE_BENCH_SECRET=$secret valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$work/callgrind.out" "$hookgate" run -c "$work/gateway.toml" \
    >"$work/hookgate.log" 2>&1 &
gateway=$!
pids+=("$gateway")
# Under valgrind the gateway starts slowly.
wait_for "http://127.0.0.1:$admin_port/readyz" 60
callgrind_control -i on "$gateway" >/dev/null 2>&1
wrk -t 1 -c 8 -d "${seconds}s" --timeout 10s -s "$repo/bench/requests.lua" \
    "https://127.0.0.1:$gateway_port/hooks/bench" -- "$work/requests" "$work/sent" "$rate" stop 1 \
    >"$work/wrk.out" 2>&1
sleep 3
kill -INT "$gateway"
wait "$gateway" || true

requests=$(sed -n 's/^RESULT .*requests=\([0-9]*\).*/\1/p' "$work/wrk.out")
((requests > 0)) || { cat "$work/wrk.out" >&2; exit 1; }
echo "$hookgate ($(git rev-parse --short HEAD 2>/dev/null || echo '?') checked out): $requests requests at $rate/s"
# Under valgrind the gateway may not keep up, and the per-request figures then move with
# how the requests fell into commits.
if ((requests * 10 < rate * seconds * 9)); then
    echo "WARNING: $requests requests answered, not the $((rate * seconds)) planned: the gateway did not keep up; try a lower rate"
fi
callgrind_annotate --inclusive=yes "$work/callgrind.out" >"$work/annotated.txt"
total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$work/annotated.txt")
printf '%-12s %s\n' "$((total / requests))" "all user-space instructions, per request"
for function in "${functions[@]}"; do
    count=$(grep -F "???:$function [" "$work/annotated.txt" | head -1 | awk '{ gsub(",", "", $1); print $1 }')
    printf '%-12s %s\n' "$((${count:-0} / requests))" "$function"
done
