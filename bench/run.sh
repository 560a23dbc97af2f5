#!/usr/bin/env bash
# hookgate side by side with nginx on 127.0.0.1, then a backlog of queued events.
# Usage: bash bench/run.sh            (settings below can be changed through the environment)
# See bench/README.md for what each run measures and for recorded results.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source "$repo/bench/lib.sh"

duration=${BENCH_DURATION:-10}            # seconds of load per run
threads=${BENCH_THREADS:-2}               # wrk threads
connections=${BENCH_CONNECTIONS:-64}      # wrk connections, short payload
long_connections=${BENCH_LONG_CONNECTIONS:-8}
short_count=${BENCH_SHORT_COUNT:-400000}  # distinct short requests (hookgate runs must not wrap)
long_count=${BENCH_LONG_COUNT:-3000}      # distinct long requests, about 1.4 MB each
backlog=${BENCH_BACKLOG:-1000000}         # events queued while the upstream is down; 0 skips
# Attempts in flight per hookgate upstream: nginx keeps up to 64 connections to the upstream.
upstream_concurrency=${BENCH_UPSTREAM_CONCURRENCY:-64}
payloads=${BENCH_PAYLOADS-short long}      # empty: the backlog run only
# Runs at half the peak rate: their p99 moves by several times from run to run, so the
# target is judged on the median of a few.
half_runs=${BENCH_HALF_RUNS:-3}
work=$(realpath -m "${BENCH_WORK:-$repo/target/bench-run}")
secret=bench-secret-not-for-production

# Five loopback ports from here on, below the ephemeral range (32768 and up) so that no
# outgoing connection holds one.
base=${BENCH_PORT_BASE:-24440}
ceiling_port=$base proxy_port=$((base + 1)) gateway_port=$((base + 2))
upstream_port=$((base + 3)) admin_port=$((base + 4))
hookgate=${BENCH_HOOKGATE:-$repo/target/release/hookgate}  # another build, to compare
tools=$repo/bench/tools/target/release/hookgate-bench

trap stop_all EXIT
trap 'exit 130' INT TERM

# Arithmetic on decimals: $1 an expression, $2 the digits after the point (default 2).
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

say() { printf '%s\n' "$*" | tee -a "$work/results.txt"; }

# Takes a process that has ended off the list the exit trap stops.
forget() {
    local kept=() p
    for p in "${pids[@]}"; do
        [[ $p == "$1" ]] || kept+=("$p")
    done
    pids=("${kept[@]}")
}

# Stops one process this script started, by its id.
stop_one() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    command -v python3 >/dev/null || missing+=(python3)
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Refuses to start when another program listens on one of the ports.
check_ports() {
    local port
    for port in "$ceiling_port" "$proxy_port" "$gateway_port" "$upstream_port" "$admin_port"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "127.0.0.1:$port is in use; choose other ports with BENCH_PORT_BASE" >&2
            return 1
        fi
    done
}

fixtures() {
    local dir
    for dir in "$repo/../shared/fixtures/pulse" "$repo/fixtures/pulse"; do
        [[ -f $dir/success.json ]] && { echo "$dir"; return; }
    done
    echo "no Pulse fixtures in ../shared/fixtures/pulse or fixtures/pulse" >&2
    return 1
}

# CPU seconds (user + system) spent so far by the given processes.
cpu_seconds() {
    local total=0 pid fields
    for pid in "$@"; do
        read -ra fields <"/proc/$pid/stat" || continue
        total=$((total + fields[13] + fields[14]))
    done
    calc "$total / $(getconf CLK_TCK)"
}

# Peak resident memory in MiB of the given processes, summed.
peak_rss_mib() {
    local total=0 pid kib
    for pid in "$@"; do
        kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + kib))
    done
    calc "$total / 1024" 1
}

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# The process and its children (nginx's master and workers).
family() {
    echo "$1" $(ps -o pid= --ppid "$1")
}

start_upstream() {
    "$tools" upstream --listen "127.0.0.1:$upstream_port" --out "$1" &
    pids+=($!)
    upstream_pid=$!
    wait_for "http://127.0.0.1:$upstream_port/count"
}

upstream_count() { curl -fs "http://127.0.0.1:$upstream_port/count"; }

start_nginx() {
    local dir=$work/nginx user_line=""
    mkdir -p "$dir/tmp"
    [[ $EUID -eq 0 ]] && user_line="user root;"
    sed -e "s|@DIR@|$dir|g" -e "s|@WORK@|$work|g" -e "s|@USER@|$user_line|" \
        -e "s|@CEILING@|$ceiling_port|" -e "s|@PROXY@|$proxy_port|" \
        -e "s|@UPSTREAM@|$upstream_port|" "$repo/bench/nginx.conf" >"$dir/nginx.conf"
    "$(command -v nginx || echo /usr/sbin/nginx)" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
    pids+=($!)
    nginx_pid=$!
    wait_for "https://127.0.0.1:$ceiling_port/"
}

# hookgate's configuration for one run: $1 data folder, $2 upstream list, $3 extra upstream keys.
write_gateway_config() {
    local data=$1 list=$2 extra=$3 name
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\n' "$gateway_port"
        printf 'tls = { cert = "%s/cert.pem", key = "%s/key.pem", create = true }\nmax_body = "8MiB"\n' "$work" "$work"
        printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin_port"
        printf '\n[store]\npath = "%s/hookgate.db"\nhigh_water = %s\n' "$data" $((backlog * 2 + 1000000))
        for name in one two three; do
            printf '\n[upstreams.%s]\nurl = "http://127.0.0.1:%s/%s"\nconcurrency = %s\n%s\n' \
                "$name" "$upstream_port" "$name" "$upstream_concurrency" "$extra"
        done
        printf '\n[[routes]]\nname = "bench"\npath = "/hooks/bench"\n'
        printf 'verify = { scheme = "hmac", header = "x-signature", algorithm = "sha256", encoding = "hex", secrets = [{ env = "HOOKGATE_BENCH_SECRET" }] }\n'
        printf 'dedup = { key = "json:/request_id", window = "72h" }\nupstreams = [%s]\n' "$list"
    } >"$data/gateway.toml"
}

start_gateway() {
    local data=$1
    HOOKGATE_BENCH_SECRET=$secret "$hookgate" run -c "$data/gateway.toml" >"$data/hookgate.log" 2>&1 &
    pids+=($!)
    gateway_pid=$!
    wait_for "http://127.0.0.1:$admin_port/readyz"
}

# Events stored: counted in the database, since a request whose client went away after its
# commit is stored (and delivered) but never counted as answered.
accepted_count() {
    sqlite3 -readonly "$1/hookgate.db" 'SELECT COUNT(*) FROM events'
}

# The accepted count once requests cut off at the end of a run are answered.
settled_accepted() {
    local before after
    after=$(accepted_count "$1")
    until [[ $after == "${before:-}" ]]; do
        before=$after
        sleep 0.5
        after=$(accepted_count "$1")
    done
    echo "$after"
}

# Runs wrk: $1 port, $2 request prefix, $3 sent log prefix, $4 rate (0: as fast as it goes),
# $5 connections, $6 seconds, $7 wrap|stop. Leaves the RESULT line's fields in $wrk_result.
run_wrk() {
    local port=$1 requests=$2 sent=$3 rate=$4 conns=$5 secs=$6 at_end=$7
    rm -f "$sent".*
    wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 10s -s "$repo/bench/requests.lua" \
        "https://127.0.0.1:$port/hooks/bench" -- "$requests" "$sent" "$rate" "$at_end" "$threads" \
        >"$sent.wrk" 2>&1
    wrk_result=$(sed -n 's/^RESULT //p' "$sent.wrk")
    [[ -n $wrk_result ]] || { cat "$sent.wrk" >&2; return 1; }
}

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

sent_files() { ls "$1".[0-9]* | paste -sd, -; }

# Waits until the upstream has $1 requests, at most $2 seconds; prints how long it took.
wait_deliveries() {
    local want=$1 limit=$2 start=$SECONDS
    while (($(upstream_count) < want)); do
        ((SECONDS - start < limit)) || { echo "timeout: $(upstream_count) of $want" >&2; return 1; }
        sleep 0.2
    done
}

# Records one row: mode payload rps p50 p99 delivered/s e2e_p99 peak_rss cpu cpu_per_request extra.
row() { printf '%-8s %-6s %9s %8s %8s %9s %9s %9s %5s %7s  %s\n' "$@" | tee -a "$work/results.txt"; }

# Writes what earlier runs left in the page cache out to disk, so that their writeback does
# not compete with the next run's fsyncs.
settle() { sync; }

nginx_run() {
    local mode=$1 payload=$2 port=$3 conns=$4 cpu0 cpu1 report="" delivered="-" e2e="-"
    local dir=$work/$payload-$mode
    mkdir -p "$dir"
    settle
    [[ $mode == proxy ]] && start_upstream "$dir/received"
    cpu0=$(cpu_seconds $(family "$nginx_pid"))
    run_wrk "$port" "$work/requests-$payload" "$dir/sent" 0 "$conns" "$duration" wrap
    cpu1=$(cpu_seconds $(family "$nginx_pid"))
    if [[ $mode == proxy ]]; then
        curl -fs -o /dev/null "http://127.0.0.1:$upstream_port/dump"
        report=$("$tools" report --sent "$(sent_files "$dir/sent")" --received "$dir/received")
        delivered=$(field "$(tr '\n' ' ' <<<"$report")" delivered_per_s)
        e2e=$(field "$(tr '\n' ' ' <<<"$report")" e2e_p99_ms)
        stop_one "$upstream_pid"
    fi
    record "$mode" "$payload" "$delivered" "$e2e" "$(peak_rss_mib $(family "$nginx_pid"))" \
        "$cpu0" "$cpu1" "$dir"
}

# Keeps the run's numbers: results.txt for people, $dir/numbers for the ratios.
record() {
    local mode=$1 payload=$2 delivered=$3 e2e=$4 rss=$5 cpu0=$6 cpu1=$7 dir=$8
    local rps p50 p99 secs cpu per_request
    rps=$(field "$wrk_result" rps)
    p50=$(field "$wrk_result" p50_ms)
    p99=$(field "$wrk_result" p99_ms)
    secs=$(calc "$(field "$wrk_result" duration_us) / 1000000" 3)
    cpu=$(calc "100 * ($cpu1 - $cpu0) / $secs" 0)
    per_request=$(calc "1000000 * ($cpu1 - $cpu0) / $(field "$wrk_result" requests)" 0)
    local wraps
    wraps=$(field "$wrk_result" wraps)
    echo "rps=$rps delivered=$delivered p99=$p99 wraps=$wraps" >"$dir/numbers"
    row "$mode" "$payload" "$rps" "$p50" "$p99" "$delivered" "$e2e" "$rss" "$cpu%" "$per_request" \
        "non2xx=$(field "$wrk_result" non2xx) errors=$(($(field "$wrk_result" read_err) + $(field "$wrk_result" timeouts))) wraps=$wraps"
    # nginx answers a repeated request as it answered the first; hookgate answers it as a
    # duplicate, which costs far less than a new event.
    if [[ $mode != ceiling && $mode != proxy && $wraps != 0 ]]; then
        say "WARNING: the $payload requests ran out and started again ($wraps times): hookgate answered the repeats as duplicates, so this row overstates it; raise BENCH_$(tr a-z A-Z <<<"$payload")_COUNT"
    fi
}

# One hookgate run: $1 mode, $2 payload, $3 upstream list, $4 deliveries per event,
# $5 connections, $6 rate (0: as fast as it goes).
gateway_run() {
    local mode=$1 payload=$2 list=$3 per_event=$4 conns=$5 rate=$6
    local dir=$work/$payload-$mode cpu0 cpu1 accepted report idle
    rm -rf "$dir" && mkdir -p "$dir"
    settle
    write_gateway_config "$dir" "$list" ""
    start_upstream "$dir/received"
    start_gateway "$dir"
    sleep 1
    idle=$(rss_mib "$gateway_pid")
    cpu0=$(cpu_seconds "$gateway_pid")
    run_wrk "$gateway_port" "$work/requests-$payload" "$dir/sent" "$rate" "$conns" "$duration" wrap
    cpu1=$(cpu_seconds "$gateway_pid")
    accepted=$(settled_accepted "$dir")
    wait_deliveries $((accepted * per_event)) 300 || true
    curl -fs -o /dev/null "http://127.0.0.1:$upstream_port/dump"
    report=$("$tools" report --sent "$(sent_files "$dir/sent")" --received "$dir/received" |
        tr '\n' ' ')
    echo "$report" >"$dir/report"
    record "$mode" "$payload" "$(field "$report" delivered_per_s)" "$(field "$report" e2e_p99_ms)" \
        "$(peak_rss_mib "$gateway_pid")" "$cpu0" "$cpu1" "$dir"
    say "           idle RSS ${idle} MiB; accepted $accepted, received $(field "$report" received), distinct $(field "$report" distinct), repeated $(field "$report" repeated)"
    stop_one "$gateway_pid"
    stop_one "$upstream_pid"
}

ratio() { calc "$1 / $2"; }

number() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" "$work/$1/numbers"; }

side_by_side() {
    local payload=$1 conns=$2 peak
    say ""
    say "== payload: $payload ($(wc -c <"$work/$payload.json") bytes) =="
    row mode payload "req/s" "p50 ms" "p99 ms" "deliv/s" "e2e p99" "peak MiB" cpu "µs/req" ""
    nginx_run ceiling "$payload" "$ceiling_port" "$conns"
    nginx_run proxy "$payload" "$proxy_port" "$conns"
    gateway_run ingest "$payload" '"one"' 1 "$conns" 0
    gateway_run fanout "$payload" '"one", "two", "three"' 3 "$conns" 0
    peak=$(number "$payload-ingest" rps)
    local run p99s=()
    for run in $(seq "$half_runs"); do
        gateway_run "half-$run" "$payload" '"one"' 1 "$conns" "$(calc "$peak / 2" 0)"
        p99s+=("$(number "$payload-half-$run" p99)")
    done
    say "half-rate p99 ($payload, $half_runs runs): $(IFS=' '; echo "${p99s[*]}") ms;" \
        "median $(printf '%s\n' "${p99s[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') ms"
    local mode wrapped=""
    for mode in ingest fanout; do
        [[ $(number "$payload-$mode" wraps) == 0 ]] ||
            wrapped=" (overstated: the requests ran out, see the warnings above)"
    done
    say "ratios ($payload): ingest/ceiling $(ratio "$(number "$payload-ingest" rps)" "$(number "$payload-ceiling" rps)")," \
        "ingest/proxy $(ratio "$(number "$payload-ingest" rps)" "$(number "$payload-proxy" rps)")," \
        "delivered(one upstream)/proxy $(ratio "$(number "$payload-ingest" delivered)" "$(number "$payload-proxy" rps)")," \
        "fan-out/proxy $(ratio "$(number "$payload-fanout" rps)" "$(number "$payload-proxy" rps)")$wrapped"
}

backlog_run() {
    local dir=$work/backlog accepted start took report idle queued peak
    rm -rf "$dir" && mkdir -p "$dir"
    say ""
    say "== backlog: $backlog events while the upstream is down =="
    "$tools" generate --body "$work/short.json" --count "$backlog" --threads "$threads" \
        --secret "$secret" --host 127.0.0.1 --path /hooks/bench --tag backlog --out "$dir/requests"
    settle
    # Short breaker and retry times, so the drain starts soon after the upstream is back.
    write_gateway_config "$dir" '"one"' \
        'breaker = { cooldown = "1s", max_cooldown = "2s" }
retry = { initial = "1s", max_delay = "5s" }'
    start_gateway "$dir"
    sleep 1
    idle=$(rss_mib "$gateway_pid")
    (while sleep 1; do echo "$SECONDS $(rss_mib "$gateway_pid")"; done) >"$dir/rss.log" &
    pids+=($!)
    local sampler=$!
    # Every request is sent once (and a few of the first ones again as wrk stops, answered
    # as duplicates); wrk is stopped once all are accepted, or when time runs out.
    local limit=$((backlog / 200 + 60)) began ended wrk_pid
    began=$(date +%s.%N)
    wrk -t "$threads" -c "$connections" -d "${limit}s" --timeout 10s -s "$repo/bench/requests.lua" \
        "https://127.0.0.1:$gateway_port/hooks/bench" -- "$dir/requests" "$dir/sent" 0 stop "$threads" \
        >"$dir/sent.wrk" 2>&1 &
    pids+=($!)
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null && (($(accepted_count "$dir") < backlog)); do
        sleep 0.5
    done
    ended=$(date +%s.%N)
    # SIGINT makes wrk print its summary and flush the send times; wait for it to finish.
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    forget "$wrk_pid"
    wrk_result=$(sed -n 's/^RESULT //p' "$dir/sent.wrk")
    accepted=$(settled_accepted "$dir")
    queued=$(rss_mib "$gateway_pid")
    say "ingest: $accepted accepted in $(calc "$ended - $began" 1) s," \
        "$(calc "$accepted / ($ended - $began)" 0)/s; ack p50 $(field "$wrk_result" p50_ms) ms, p99 $(field "$wrk_result" p99_ms) ms"
    say "RSS: idle $idle MiB, with $accepted queued $queued MiB, peak while ingesting $(peak_rss_mib "$gateway_pid") MiB (samples in $dir/rss.log)"

    start_upstream "$dir/received"
    start=$SECONDS
    wait_deliveries "$accepted" $((backlog / 100 + 120)) || true
    took=$((SECONDS - start))
    stop_one "$sampler"
    curl -fs -o /dev/null "http://127.0.0.1:$upstream_port/dump"
    report=$("$tools" report --sent "$(sent_files "$dir/sent")" --received "$dir/received" |
        tr '\n' ' ')
    echo "$report" >"$dir/report"
    peak=$(peak_rss_mib "$gateway_pid")
    say "drain: $(field "$report" received) delivered in ${took} s after the upstream came back," \
        "$(field "$report" delivered_per_s)/s from first to last receipt; peak RSS $peak MiB"
    say "exactly once: accepted $accepted, distinct $(field "$report" distinct)," \
        "repeated $(field "$report" repeated), unknown $(field "$report" unknown)"
    stop_one "$gateway_pid"
    stop_one "$upstream_pid"
}

main() {
    install_tools
    check_ports
    rm -rf "$work" && mkdir -p "$work"
    cargo build --release --locked --quiet
    cargo build --release --locked --quiet --manifest-path "$repo/bench/tools/Cargo.toml"

    local dir count
    dir=$(fixtures)
    cp "$dir/success.json" "$work/short.json"
    python3 "$dir/make_long.py" 120 >"$work/long.json"
    "$tools" cert --cert "$work/cert.pem" --key "$work/key.pem"
    for payload in $payloads; do
        count=$short_count
        [[ $payload == long ]] && count=$long_count
        "$tools" generate --body "$work/$payload.json" --count "$count" --threads "$threads" \
            --secret "$secret" --host 127.0.0.1 --path /hooks/bench --tag "$payload" \
            --out "$work/requests-$payload"
    done

    say "hookgate $(git rev-parse --short HEAD) on $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB," \
        "$(date -u '+%Y-%m-%d %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    say "wrk -t $threads, ${duration}s per run; connections: short $connections, long $long_connections;" \
        "hookgate upstream concurrency $upstream_concurrency"
    start_nginx
    for payload in $payloads; do
        if [[ $payload == long ]]; then
            side_by_side long "$long_connections"
        else
            side_by_side "$payload" "$connections"
        fi
    done
    stop_one "$nginx_pid"
    ((backlog > 0)) && backlog_run
    say ""
    say "load after: $(cut -d' ' -f1-3 /proc/loadavg); results in $work/results.txt"
}

main "$@"
