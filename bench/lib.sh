# Shell functions the bench scripts share; sourced, not run.

# Waits until a URL answers 200: $1 the URL, $2 seconds at most (default 30).
wait_for() {
    local url=$1 tenths=$((${2:-30} * 10)) n
    for n in $(seq "$tenths"); do
        curl -fsk -o /dev/null "$url" && return 0
        sleep 0.1
    done
    echo "no answer from $url" >&2
    return 1
}

# Processes a script started; `stop_all` ends them, and scripts run it on exit.
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
