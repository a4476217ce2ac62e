#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions are called through traps and by name
# Switchyard benchmark (`make bench`): the gateway against nginx as a plain reverse
# proxy, both in front of the same fast fake upstream, measured in one run,
# alternating direct → nginx → gateway, and judged against DESIGN.md §6; then
# failover: the gateway with a broken primary target against the same gateway's
# healthy single-target model (issue 5); then limits: a key with limits against
# one without, on the same gateway (issue 6); then logging: a gateway with the
# access log on against one with it off, and where the CPU goes (issue 7); then
# reload: a gateway reloaded all the time against one never reloaded (issue 8).
# See bench/README.md for what is measured and how to read the output.
#
# Knobs (environment variables, defaults in brackets):
#   BENCH_SCENARIOS [openai azure bedrock failover_refused failover_hang limits logging reload]
#                                         scenarios to run, space-separated
#   BENCH_TARGETS [direct nginx gateway]  drop `gateway` to check the harness alone
#   BENCH_ROUNDS [3]                      alternating rounds per measure (medians)
#   BENCH_LATENCY_REQUESTS [5000]  BENCH_LATENCY_WARMUP [500]
#   BENCH_TTFC_REQUESTS [2000]     BENCH_TTFC_WARMUP [200]
#   BENCH_TRANSLATOR_REQUESTS [20] long Bedrock streams read whole per round
#   BENCH_THROUGHPUT_SECS [4]      BENCH_CONNECTIONS [32]
#   BENCH_STREAMS [1000]           BENCH_STREAM_CHUNKS [8]
#   BENCH_FAILOVER_SECS [2]        steady load per model and kind per failover round
#   BENCH_RELOAD_INTERVAL_MS [100] reload scenario: pause between one reload taking
#                                  effect and the next trigger
#   BENCH_PROXY_CORE [0]           BENCH_CLIENT_CORE [1]
#   BENCH_STRICT [0]                      1: exit 1 when a budget FAILs
#   BENCH_NO_BUILD [0]                    1: use the binaries already built
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/bench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

SCENARIOS=${BENCH_SCENARIOS:-openai azure bedrock failover_refused failover_hang limits logging reload}
TARGETS=${BENCH_TARGETS:-direct nginx gateway}
ROUNDS=${BENCH_ROUNDS:-3}
LATENCY_REQUESTS=${BENCH_LATENCY_REQUESTS:-5000}
LATENCY_WARMUP=${BENCH_LATENCY_WARMUP:-500}
TTFC_REQUESTS=${BENCH_TTFC_REQUESTS:-2000}
TRANSLATOR_REQUESTS=${BENCH_TRANSLATOR_REQUESTS:-20}
TTFC_WARMUP=${BENCH_TTFC_WARMUP:-200}
THROUGHPUT_SECS=${BENCH_THROUGHPUT_SECS:-4}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
STREAMS=${BENCH_STREAMS:-1000}
STREAM_CHUNKS=${BENCH_STREAM_CHUNKS:-8}
FAILOVER_SECS=${BENCH_FAILOVER_SECS:-2}
RELOAD_INTERVAL_MS=${BENCH_RELOAD_INTERVAL_MS:-100}
PROXY_CORE=${BENCH_PROXY_CORE:-0}
CLIENT_CORE=${BENCH_CLIENT_CORE:-1}
STRICT=${BENCH_STRICT:-0}
NO_BUILD=${BENCH_NO_BUILD:-0}
# How long the fake upstream keeps a `bench-hold` stream open, and the loadgen
# at most holds its streams; the harness ends them as soon as RSS is read.
HOLD_SECS=20
STREAMS_READY_SECS=30
# The failover scenarios' primary: its circuit breaker, and the first_byte
# timeout of the model it serves (gateway-failover.yaml.template).
BREAKER_FAILURES=3
BREAKER_RECOVERY_SECS=5
FIRST_BYTE_MS=200
UPSTREAM_KEY=sk-upstream
GATEWAY_KEY=sk-bench
# The limits scenario's capped key: 6,000 a minute, 100 more every second.
CAPPED_RPM=6000
# The reload scenario: how long a trigger may take to show as a new generation
# on /readyz, and how many reloads are timed once the load has stopped.
RELOAD_TIMEOUT_SECS=5
RELOAD_SAMPLES=20

log() { printf '%s\n' "$*" >&2; }
die() {
    log "bench: error: $*"
    exit 1
}
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

for v in ROUNDS LATENCY_REQUESTS LATENCY_WARMUP TTFC_REQUESTS TTFC_WARMUP THROUGHPUT_SECS \
    CONNECTIONS STREAMS STREAM_CHUNKS FAILOVER_SECS RELOAD_INTERVAL_MS PROXY_CORE CLIENT_CORE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done
((ROUNDS >= 1)) || die "BENCH_ROUNDS must be at least 1"
((FAILOVER_SECS >= 1)) || die "BENCH_FAILOVER_SECS must be at least 1"
for t in $TARGETS; do
    [[ $t == direct || $t == nginx || $t == gateway ]] || die "unknown target '$t' in BENCH_TARGETS"
done

# ---------------------------------------------------------------------------
# Set-up: system packages, file limits, build.

ensure_packages() {
    local missing=() cmd
    local -A wanted=([nginx]=nginx-light [taskset]=util-linux [getconf]=libc-bin)
    if has_target gateway && [[ $NO_BUILD != 1 ]]; then
        wanted[cmake]=cmake
        wanted[cc]=build-essential
    fi
    for cmd in "${!wanted[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${wanted[$cmd]}")
    done
    ((${#missing[@]} == 0)) && return 0
    local install="apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "bench: installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $install >&2
    else
        die "missing packages; run as root: apt-get update && $install"
    fi
}

ensure_packages
command -v cargo >/dev/null 2>&1 || die "cargo is not installed (https://rustup.rs)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(getconf _NPROCESSORS_ONLN)

# 1,000 streams through a proxy hold 2,000+ sockets in one process.
NOFILE=$((4 * STREAMS + 1024))
if (($(ulimit -n) < NOFILE)); then
    ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
(($(ulimit -n) >= 2 * STREAMS + 256)) ||
    die "open-file limit $(ulimit -n) is too low for $STREAMS streams; raise 'ulimit -n'"

if [[ $NO_BUILD != 1 ]]; then
    packages=(-p switchyard-bench)
    has_target gateway && packages+=(-p switchyard)
    log "bench: cargo build --release ${packages[*]}"
    (cd "$ROOT" && cargo build --release "${packages[@]}") >&2 || die "build failed"
fi
LOADGEN=$BIN/loadgen
FAKE=$BIN/fake-upstream
GATEWAY=$BIN/switchyard
for b in "$LOADGEN" "$FAKE"; do [[ -x $b ]] || die "$b is missing"; done
if has_target gateway; then [[ -x $GATEWAY ]] || die "$GATEWAY is missing"; fi

# ---------------------------------------------------------------------------
# Processes: everything started is recorded by PID and stopped on exit.

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
chmod 755 "$TMP" # nginx's worker may run as nobody and must reach its temp dirs
PIDS=()
declare -A PROC_NAME # PID -> what it is, for messages

# track PID NAME: remembers a started process so that it is stopped on exit.
track() {
    PIDS+=("$1")
    PROC_NAME[$1]=$2
}

running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

stop_pid() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        log "bench: ${PROC_NAME[$pid]:-process} (PID $pid) did not exit within 5 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# HANG_PORT: the fake's never-answering listener; CLOSED_PORT: nothing listens;
# LOGGED_*: the logging scenario's second gateway; RELOAD_*: the reload scenario's.
read -ra PORTS <<<"$("$LOADGEN" free-ports --count 10)"
UPSTREAM_PORT=${PORTS[0]} NGINX_PORT=${PORTS[1]} GATEWAY_PORT=${PORTS[2]} ADMIN_PORT=${PORTS[3]}
HANG_PORT=${PORTS[4]} CLOSED_PORT=${PORTS[5]} LOGGED_PORT=${PORTS[6]} LOGGED_ADMIN_PORT=${PORTS[7]}
RELOAD_PORT=${PORTS[8]} RELOAD_ADMIN_PORT=${PORTS[9]}

# render TEMPLATE OUT KEY=VALUE... : replaces each @KEY@ in TEMPLATE.
render() {
    local template=$1 out=$2 kv script=()
    shift 2
    for kv in "$@"; do script+=(-e "s#@${kv%%=*}@#${kv#*=}#g"); done
    sed "${script[@]}" "$template" >"$out"
}

# wait_http NAME PID LOGFILE URL [HEADER]: waits until URL answers 200; fails
# the run if it never does or if process PID exits first.
wait_http() {
    local name=$1 pid=$2 logfile=$3 url=$4 header=${5:-} i
    local args=(wait --url "$url" --timeout-secs 1)
    [[ -n $header ]] && args+=(--header "$header")
    for ((i = 0; i < 30; i++)); do
        running "$pid" || break
        "$LOADGEN" "${args[@]}" 2>/dev/null && return 0
    done
    if running "$pid"; then
        log "bench: $name did not answer 200 on $url within 30 s; last lines of $logfile:"
    else
        log "bench: $name exited during start-up; last lines of $logfile:"
    fi
    tail -n 20 "$logfile" >&2 || true
    exit 1
}

start_fake() {
    taskset -c "$CLIENT_CORE" "$FAKE" --port "$UPSTREAM_PORT" --api-key "$UPSTREAM_KEY" \
        --chunks "$STREAM_CHUNKS" --hold-ms $((HOLD_SECS * 1000)) --hang-port "$HANG_PORT" \
        >/dev/null 2>"$TMP/fake.log" &
    FAKE_PID=$!
    track "$FAKE_PID" "fake upstream"
    wait_http "fake upstream" "$FAKE_PID" "$TMP/fake.log" "http://127.0.0.1:$UPSTREAM_PORT/v1/models" \
        "Authorization: Bearer $UPSTREAM_KEY"
}

start_nginx() {
    render "$BENCH_DIR/nginx.conf.template" "$TMP/nginx.conf" \
        TMP="$TMP" LISTEN_PORT="$NGINX_PORT" UPSTREAM_PORT="$UPSTREAM_PORT"
    # A Debian nginx built without some module rejects its *_temp_path directive.
    local module
    for module in fastcgi uwsgi scgi; do
        if "$NGINX" -V 2>&1 | grep -q -- "--without-http_${module}_module"; then
            sed -i "/^ *${module}_temp_path /d" "$TMP/nginx.conf"
        fi
    done
    local early_log=()
    "$NGINX" -h 2>&1 | grep -q -- '-e filename' && early_log=(-e "$TMP/nginx-error.log")
    taskset -c "$PROXY_CORE" "$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" "${early_log[@]}" \
        >/dev/null 2>>"$TMP/nginx-error.log" &
    NGINX_PID=$!
    track "$NGINX_PID" nginx
    wait_http nginx "$NGINX_PID" "$TMP/nginx-error.log" "http://127.0.0.1:$NGINX_PORT/v1/models" \
        "Authorization: Bearer $UPSTREAM_KEY"
    NGINX_WORKER=$(child_of "$NGINX_PID")
    [[ -n $NGINX_WORKER ]] || die "cannot find nginx's worker process"
    NGINX_RSS_START=$(rss_kb "$NGINX_WORKER")
}

# child_of PID: the PID of PID's (only) child process.
child_of() {
    local f stat
    if [[ -r /proc/$1/task/$1/children ]]; then
        read -r f _ <"/proc/$1/task/$1/children" || true
        [[ -n ${f:-} ]] && echo "$f" && return 0
    fi
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r _ ppid _ <<<"$stat"
        [[ $ppid == "$1" ]] && basename "$(dirname "$f")" && return 0
    done
    return 0
}

# start_gateway CONFIG_TEMPLATE [KEY=VALUE...]: the ports, and the scenario's
# own KEY=VALUE pairs, are filled into the template, written to GATEWAY_CONF
# (by default $TMP/gateway.yaml). A second gateway needs a file of its own: the
# gateway reloads its file when it changes. The access log (one JSON line per
# request) goes to GATEWAY_STDOUT, by default discarded; stderr to GATEWAY_LOG.
start_gateway() {
    local conf=${GATEWAY_CONF:-$TMP/gateway.yaml} logfile=${GATEWAY_LOG:-$TMP/gateway.log}
    render "$1" "$conf" LISTEN_PORT="$GATEWAY_PORT" ADMIN_PORT="$ADMIN_PORT" \
        UPSTREAM_PORT="$UPSTREAM_PORT" "${@:2}"
    taskset -c "$PROXY_CORE" "$GATEWAY" -c "$conf" >"${GATEWAY_STDOUT:-/dev/null}" \
        2>"$logfile" &
    GATEWAY_PID=$!
    track "$GATEWAY_PID" gateway
    wait_http gateway "$GATEWAY_PID" "$logfile" "http://127.0.0.1:$ADMIN_PORT/readyz"
}

# ---------------------------------------------------------------------------
# Measuring helpers.

declare -A RES # RES[measure:target:round] and RES[measure:target] (medians)

# kv KEY LINE: the value of KEY=value in a loadgen output line.
kv() {
    local word
    for word in $2; do
        [[ $word == "$1="* ]] && echo "${word#*=}" && return 0
    done
    die "loadgen output lacks '$1': $2"
}

# run_loadgen TARGET COMMAND ARGS...: runs the load generator on the client core
# against TARGET (URL, key and body chosen by the scenario), sets LINE to its
# output and adds the CPU that other processes used meanwhile to the noise tally.
run_loadgen() {
    local target=$1 command=$2 kind=${LOADGEN_KIND:-plain}
    shift 2
    [[ $command == ttfc ]] && kind=stream
    local busy0 ours0 wall0=$EPOCHREALTIME busy1 ours1 wall1
    busy0=$(busy_ticks)
    ours0=$(ours_ticks)
    if ! LINE=$(taskset -c "$CLIENT_CORE" "$LOADGEN" "$command" --url "$(target_url "$target" "$kind")" \
        --header "$(target_header "$target")" --body "$(target_body "$target" "$kind")" "$@"); then
        proc_logs "$target"
        die "loadgen $command against $target failed"
    fi
    wall1=$EPOCHREALTIME
    busy1=$(busy_ticks)
    ours1=$(ours_ticks)
    NOISE_OTHER=$((NOISE_OTHER + (busy1 - busy0) - (ours1 - ours0)))
    NOISE_WINDOW=$(calc "$NOISE_WINDOW + ($wall1 - $wall0) * $NCPU * $CLK_TCK" 0)
}

# busy_ticks: ticks the whole machine spent busy (user, nice, system, irq,
# softirq: a process's stime includes the interrupt work done in its context).
busy_ticks() {
    local _cpu user nice system _idle _iowait irq softirq
    read -r _cpu user nice system _idle _iowait irq softirq _ </proc/stat
    echo $((user + nice + system + irq + softirq))
}

# ours_ticks: CPU ticks of this run's processes: the live servers, plus every
# reaped descendant of this shell (its cutime + cstime), loadgen runs included.
ours_ticks() {
    local stat f total pid
    stat=$(cat "/proc/$$/stat")
    stat=${stat##*) }
    read -ra f <<<"$stat"
    total=$((f[13] + f[14]))
    for pid in "$FAKE_PID" "${NGINX_PID:-}" "${NGINX_WORKER:-}" "${GATEWAY_PID:-}" "${LOGGED_PID:-}" \
        "${RELOAD_PID:-}"; do
        [[ -n $pid ]] && running "$pid" && total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

proc_logs() {
    local f
    case $1 in
    nginx) f=$TMP/nginx-error.log ;;
    direct) f=$TMP/fake.log ;;
    reloading) f=$TMP/gateway-reloading.log ;;
    *) f=$TMP/gateway.log ;;
    esac
    log "bench: last lines of $f:"
    tail -n 20 "$f" >&2 || true
}

# target_url TARGET [KIND]: where TARGET is sent a request of KIND (plain,
# stream, hold, long); upstream dialects may put streams on other paths. The
# failover scenarios' targets, healthy and failover, are two models of the gateway;
# the limits scenario's, free, limited and capped, are three of its keys; the
# logging scenario's quiet is the gateway, logged a second one; so are the reload
# scenario's steady and reloading.
target_url() {
    if [[ $1 == logged ]]; then
        echo "http://127.0.0.1:$LOGGED_PORT$SC_GATEWAY_PATH"
        return 0
    fi
    if [[ $1 == reloading ]]; then
        echo "http://127.0.0.1:$RELOAD_PORT$SC_GATEWAY_PATH"
        return 0
    fi
    if ! is_upstream_side "$1"; then
        echo "http://127.0.0.1:$GATEWAY_PORT$SC_GATEWAY_PATH"
        return 0
    fi
    local path=$SC_UPSTREAM_PATH
    case ${2:-plain} in
    stream) path=$SC_UPSTREAM_STREAM_PATH ;;
    hold) path=$SC_UPSTREAM_HOLD_PATH ;;
    long) path=$SC_UPSTREAM_LONG_PATH ;;
    esac
    case $1 in
    direct) echo "http://127.0.0.1:$UPSTREAM_PORT$path" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT$path" ;;
    esac
}
# is_upstream_side TARGET: whether TARGET is sent the upstream's dialect.
is_upstream_side() { [[ $1 == direct || $1 == nginx ]]; }
target_header() {
    case $1 in
    direct | nginx) echo "$SC_UPSTREAM_HEADER" ;;
    free | limited | capped) echo "Authorization: Bearer sk-bench-$1" ;;
    *) echo "$SC_GATEWAY_HEADER" ;;
    esac
}
target_body() {
    case $1 in
    direct | nginx) echo "$SC_UPSTREAM_BODIES/$2.json" ;;
    failover) echo "$SC_FAILOVER_BODIES/$2.json" ;;
    *) echo "$SC_GATEWAY_BODIES/$2.json" ;;
    esac
}

# The process whose CPU and memory count for a target.
target_pid() {
    case $1 in
    direct) echo "$FAKE_PID" ;;
    nginx) echo "$NGINX_WORKER" ;;
    logged) echo "$LOGGED_PID" ;;
    reloading) echo "$RELOAD_PID" ;;
    *) echo "$GATEWAY_PID" ;;
    esac
}

# cpu_ticks PID: utime + stime of the whole process, in clock ticks.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat") || die "process $1 is gone"
    stat=${stat##*) }
    local f
    read -ra f <<<"$stat"
    echo $((f[11] + f[12]))
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || die "process $1 is gone"; }

calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

# larger A B: the larger of two numbers.
larger() { awk -v a="$1" -v b="$2" 'BEGIN { m = (a + 0 > b + 0) ? a : b; print m }'; }

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# finish MEASURE: stores the median over rounds for each measured target.
finish() {
    local t r vals
    for t in $MEASURED; do
        vals=()
        for ((r = 1; r <= ROUNDS; r++)); do
            [[ -n ${RES[$1:$t:$r]:-} ]] && vals+=("${RES[$1:$t:$r]}")
        done
        ((${#vals[@]})) && RES[$1:$t]=$(median "${vals[@]}")
    done
    return 0
}

# added MEASURE: per round, target minus the baseline (direct; the healthy model
# in a failover scenario); then the median over rounds.
added() {
    [[ " $MEASURED " == *" $BASELINE "* ]] || return 0
    local t r
    for t in $MEASURED; do
        [[ $t == "$BASELINE" ]] && continue
        for ((r = 1; r <= ROUNDS; r++)); do
            RES[added_$1:$t:$r]=$(calc "${RES[$1:$t:$r]} - ${RES[$1:$BASELINE:$r]}")
        done
    done
    finish "added_$1"
}

# One percentile measure over every target and round: $1 result key prefix,
# $2 loadgen subcommand, $3 requests, $4 warm-up requests, $5 label for the log.
# A failed request ends the run, unless the scenario counts them (SC_COUNT_FAILED):
# then they add up in RES[failed:TARGET].
measure_percentiles() {
    local key=$1 command=$2 requests=$3 warmup=$4 label=$5
    local r t line summary keep_going=()
    ((SC_COUNT_FAILED)) && keep_going=(--max-errors $((requests + warmup)))
    for ((r = 1; r <= ROUNDS; r++)); do
        summary=""
        for t in $MEASURED; do
            run_loadgen "$t" "$command" --requests "$requests" --warmup "$warmup" "${keep_going[@]}"
            line=$LINE
            RES[${key}_p50:$t:$r]=$(kv p50_us "$line")
            RES[${key}_p99:$t:$r]=$(kv p99_us "$line")
            summary+=" $t p50=${RES[${key}_p50:$t:$r]} p99=${RES[${key}_p99:$t:$r]}"
            if ((SC_COUNT_FAILED)); then
                RES[failed:$t]=$((${RES[failed:$t]:-0} + $(kv errors "$line")))
                [[ $(kv errors "$line") == 0 ]] || summary+=" FAILED=$(kv errors "$line")"
            fi
        done
        log "  $label round $r/$ROUNDS (µs):$summary"
    done
    finish "${key}_p50" && finish "${key}_p99" && added "${key}_p50" && added "${key}_p99"
}

measure_latency() {
    measure_percentiles lat latency "$LATENCY_REQUESTS" "$LATENCY_WARMUP" latency
}

measure_ttfc() {
    measure_percentiles ttfc ttfc "$TTFC_REQUESTS" "$TTFC_WARMUP" "time to first chunk"
}

measure_throughput() {
    local r t line summary pid before after responses elapsed errors
    for ((r = 1; r <= ROUNDS; r++)); do
        summary=""
        for t in $MEASURED; do
            pid=$(target_pid "$t")
            before=$(cpu_ticks "$pid")
            run_loadgen "$t" throughput --connections "$CONNECTIONS" --duration-secs "$THROUGHPUT_SECS"
            line=$LINE
            after=$(cpu_ticks "$pid")
            responses=$(kv responses "$line")
            elapsed=$(kv elapsed_s "$line")
            errors=$(($(kv errors "$line") + $(kv non200 "$line")))
            ((errors == 0)) || log "bench: warning: $t had $errors errors or non-200 answers: $line"
            RES[failed:$t]=$((${RES[failed:$t]:-0} + errors))
            ((responses > 0)) || die "no responses from $t under load: $line"
            RES[rps:$t:$r]=$(kv rps "$line")
            RES[cpu:$t:$r]=$(calc "($after - $before) * 1000000 / $CLK_TCK / $responses" 2)
            RES[busy:$t:$r]=$(calc "($after - $before) * 100 / $CLK_TCK / $elapsed" 0)
            summary+=" $t ${RES[rps:$t:$r]}/s ${RES[cpu:$t:$r]}µs/req core=${RES[busy:$t:$r]}%"
        done
        log "  throughput round $r/$ROUNDS:$summary"
    done
    finish rps && finish cpu && finish busy
}

# streams_rss TARGET: opens the streams through TARGET and reads its RSS while
# they are all open.
streams_rss() {
    local t=$1 out=$TMP/streams-$1.out pid i line
    taskset -c "$CLIENT_CORE" "$LOADGEN" streams --url "$(target_url "$t" hold)" \
        --header "$(target_header "$t")" --body "$(target_body "$t" hold)" --count "$STREAMS" \
        --hold-secs "$HOLD_SECS" --timeout-secs "$STREAMS_READY_SECS" >"$out" 2>"$TMP/streams-$t.err" &
    pid=$!
    track "$pid" "loadgen streams"
    for ((i = 0; i < STREAMS_READY_SECS * 20 + 40; i++)); do
        line=$(cat "$out" 2>/dev/null || true)
        [[ -n $line ]] && break
        running "$pid" || break
        sleep 0.05
    done
    if [[ $line != ready* ]]; then
        cat "$TMP/streams-$t.err" >&2
        proc_logs "$t"
        die "$STREAMS streams through $t never became ready"
    fi
    RES[rss_streams:$t]=$(rss_kb "$(target_pid "$t")")
    local failed
    failed=$(kv failed "$line")
    ((failed == 0)) || log "bench: warning: $failed of $STREAMS streams through $t failed"
    log "  $STREAMS streams through $t: $line, RSS ${RES[rss_streams:$t]} kB"
    stop_pid "$pid"
}

measure_memory() {
    local t
    for t in nginx gateway; do
        has_target "$t" || continue
        RES[rss_idle:$t]=$(rss_kb "$(target_pid "$t")")
        streams_rss "$t"
    done
}

# ---------------------------------------------------------------------------
# Scenarios. Each sets the SC_* variables: the gateway config template, what the
# direct and nginx targets are sent (path, header, bodies: an upstream-dialect
# request) and what the gateway is sent (OpenAI dialect), and the latency budget.
# A new scenario is one more function here and its name in BENCH_SCENARIOS; the
# failover and limits scenarios (below) measure two models, or two keys, of one
# gateway instead of the three targets.

# write_bodies DIR MODEL HOLD_MODEL: OpenAI chat requests (plain, stream, hold,
# long: a stream of the fake's long Bedrock model).
write_bodies() {
    mkdir -p "$1"
    local messages='"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hi."}],"max_tokens":16,"temperature":0'
    printf '{"model":"%s",%s}' "$2" "$messages" >"$1/plain.json"
    printf '{"model":"%s",%s,"stream":true}' "$2" "$messages" >"$1/stream.json"
    printf '{"model":"%s",%s,"stream":true}' "$3" "$messages" >"$1/hold.json"
    printf '{"model":"bench-long",%s,"stream":true}' "$messages" >"$1/long.json"
}

# The same requests in Bedrock's Converse shape (the model is in the path).
write_converse_bodies() {
    mkdir -p "$1"
    local body='{"messages":[{"role":"user","content":[{"text":"Say hi."}]}],"system":[{"text":"You are a helpful assistant."}],"inferenceConfig":{"maxTokens":16,"temperature":0}}'
    local kind
    for kind in plain stream hold long; do printf '%s' "$body" >"$1/$kind.json"; done
}

# One upstream path for every kind of request (OpenAI, Azure: the body says
# whether it streams).
same_upstream_path() {
    SC_UPSTREAM_STREAM_PATH=$SC_UPSTREAM_PATH
    SC_UPSTREAM_HOLD_PATH=$SC_UPSTREAM_PATH
    SC_UPSTREAM_LONG_PATH=$SC_UPSTREAM_PATH
}

# The gateway's side, the same in every scenario: apps send OpenAI requests.
openai_clients() {
    SC_GATEWAY_PATH=/v1/chat/completions
    SC_GATEWAY_HEADER="Authorization: Bearer $GATEWAY_KEY"
    SC_GATEWAY_BODIES=$TMP/openai
    SC_TRANSLATOR=0
    write_bodies "$TMP/openai" bench-model bench-hold
}

scenario_openai() {
    SC_TITLE="OpenAI → OpenAI"
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway.yaml.template
    SC_UPSTREAM_PATH=/v1/chat/completions
    SC_UPSTREAM_HEADER="Authorization: Bearer $UPSTREAM_KEY"
    SC_UPSTREAM_BODIES=$TMP/openai
    SC_P50_MAX=1.5
    SC_P99_MAX=2
    same_upstream_path
    openai_clients
}

# Apps speak OpenAI to the gateway; direct and nginx send what the gateway sends
# Azure: the deployments path with api-version, `api-key`, the deployment as model.
scenario_azure() {
    SC_TITLE="OpenAI → Azure"
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway-azure.yaml.template
    SC_UPSTREAM_PATH="/openai/deployments/bench-model/chat/completions?api-version=2024-10-21"
    SC_UPSTREAM_HEADER="api-key: $UPSTREAM_KEY"
    SC_UPSTREAM_BODIES=$TMP/openai
    SC_P50_MAX=1.5
    SC_P99_MAX=2
    same_upstream_path
    openai_clients
}

scenario_bedrock() {
    SC_TITLE="OpenAI → Bedrock (Converse)"
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway-bedrock.yaml.template
    SC_UPSTREAM_PATH=/model/bench-model/converse
    SC_UPSTREAM_STREAM_PATH=/model/bench-model/converse-stream
    SC_UPSTREAM_HOLD_PATH=/model/bench-hold/converse-stream
    SC_UPSTREAM_LONG_PATH=/model/bench-long/converse-stream
    # The fake checks the access key id; direct and nginx send a fixed header.
    SC_UPSTREAM_HEADER="Authorization: AWS4-HMAC-SHA256 Credential=$UPSTREAM_KEY/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0"
    SC_UPSTREAM_BODIES=$TMP/converse
    SC_P50_MAX=3
    SC_P99_MAX=3
    openai_clients
    SC_TRANSLATOR=1
    write_converse_bodies "$TMP/converse"
}

# The long Bedrock stream through each target: its bytes over the median time
# to read it whole give how fast an event stream is taken in (MB/s).
measure_translator() {
    ((SC_TRANSLATOR)) || return 0
    local bytes r t line summary
    bytes=$(sed -n 's/.*bedrock long stream \([0-9]*\) bytes.*/\1/p' "$TMP/fake.log" | head -n 1)
    [[ -n $bytes ]] || die "the fake upstream did not report its long stream's size"
    for ((r = 1; r <= ROUNDS; r++)); do
        summary=""
        for t in $MEASURED; do
            LOADGEN_KIND=long run_loadgen "$t" latency --requests "$TRANSLATOR_REQUESTS" --warmup 1
            line=$LINE
            RES[translate:$t:$r]=$(calc "$bytes / $(kv p50_us "$line")" 1)
            summary+=" $t ${RES[translate:$t:$r]} MB/s"
        done
        log "  event-stream intake round $r/$ROUNDS:$summary"
    done
    finish translate
}

# ---------------------------------------------------------------------------
# Failover (issue 5): one gateway serves two models. bench-model is the healthy
# baseline (the fake upstream, its only target); bench-failover has a broken
# primary at priority 1 and the fake upstream at priority 2. Steady sequential
# load goes to each in turn; what reached the broken primary is counted.

# failover_scenario PRIMARY_PORT: what both failover scenarios share: OpenAI
# clients, gateway-failover.yaml.template with its primary on PRIMARY_PORT, and
# the two models as the measured targets.
failover_scenario() {
    SC_FAILOVER=1
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway-failover.yaml.template
    SC_GATEWAY_VARS=(PRIMARY_PORT="$1" BREAKER_FAILURES="$BREAKER_FAILURES"
        BREAKER_RECOVERY_SECS="$BREAKER_RECOVERY_SECS" FIRST_BYTE_MS="$FIRST_BYTE_MS")
    SC_FAILOVER_BODIES=$TMP/failover
    MEASURED="healthy failover"
    BASELINE=healthy
    openai_clients
    write_bodies "$SC_FAILOVER_BODIES" bench-failover bench-hold
}

# The primary is a port nothing listens on: every connect is refused at once.
scenario_failover_refused() {
    SC_TITLE="failover, primary refuses connections"
    failover_scenario "$CLOSED_PORT"
    assert_closed "$CLOSED_PORT"
    SC_PRIMARY="closed port 127.0.0.1:$CLOSED_PORT"
    SC_PRIMARY_HITS=(refused_connects)
    SC_PRIMARY_HITS_LABEL="connects refused (kernel count)"
    SC_PRIMARY_REQUESTS=()
    SC_ADDED_MAX_US=""
}

# The primary accepts connections and reads requests but never answers: each
# try on it costs a first_byte timeout.
scenario_failover_hang() {
    SC_TITLE="failover, primary hangs"
    failover_scenario "$HANG_PORT"
    SC_PRIMARY="127.0.0.1:$HANG_PORT, which never answers"
    SC_PRIMARY_HITS=(hang_count "connection accepted")
    SC_PRIMARY_HITS_LABEL="connections the primary accepted"
    SC_PRIMARY_REQUESTS=(hang_count "request held")
    SC_ADDED_MAX_US=$((FIRST_BYTE_MS * 1000))
}

# assert_closed PORT: fails the run unless a connect to PORT is refused.
assert_closed() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        die "port $1 should be closed for the refusing primary, but something listens on it"
    fi
}

# refused_connects: failed TCP connection attempts so far, machine-wide
# (AttemptFails in /proc/net/snmp); a connect to a closed port is one.
refused_connects() {
    awk '$1 == "Tcp:" { if (col) { print $col; exit } for (i = 2; i <= NF; i++) if ($i == "AttemptFails") col = i }' \
        /proc/net/snmp
}

# hang_count WHAT: how many `hang: WHAT` lines the fake upstream has logged.
hang_count() { grep -c "hang: $1" "$TMP/fake.log" || true; }

# scrape_metrics ADMIN_PORT: a gateway's /metrics text.
scrape_metrics() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || die "cannot reach the gateway's admin port $1"
    printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    timeout 5 cat <&3 || true
    exec 3<&-
}

# metric_sum ADMIN_PORT NAME [FILTER]: the sum of every series of NAME (whose
# labels match the awk regex FILTER) on that gateway's /metrics.
metric_sum() {
    scrape_metrics "$1" | awk -v name="$2" -v filter="${3:-}" \
        '($1 == name || index($1, name "{") == 1) && $0 ~ filter { n += $NF } END { printf "%d\n", n }'
}

# gateway_primary_tries: upstream tries on the provider `primary` so far, by
# the gateway's own count (switchyard_upstream_attempts_total on /metrics).
gateway_primary_tries() {
    metric_sum "$ADMIN_PORT" switchyard_upstream_attempts_total 'provider="primary"'
}

# measure_failover: ROUNDS alternating rounds; in each, FAILOVER_SECS of steady
# sequential plain requests and as long of streams through the healthy model,
# then the same through the failover model. Even rounds start with the streams,
# so that a circuit's trial (a round's first request once recovery_timeout has
# passed) is sometimes a stream. Meanwhile counts what reached the broken
# primary, and how long the failover model was under load (first to last request).
measure_failover() {
    local r t kind kinds summary first="" last="" hits0 requests0=0 tries0
    hits0=$("${SC_PRIMARY_HITS[@]}")
    ((${#SC_PRIMARY_REQUESTS[@]})) && requests0=$("${SC_PRIMARY_REQUESTS[@]}")
    tries0=$(gateway_primary_tries)
    for ((r = 1; r <= ROUNDS; r++)); do
        summary=""
        kinds="plain stream"
        ((r % 2)) || kinds="stream plain"
        for t in $MEASURED; do
            [[ $t == failover && -z $first ]] && first=$EPOCHREALTIME
            for kind in $kinds; do steady_run "$t" "$kind" "$r"; done
            [[ $t == failover ]] && last=$EPOCHREALTIME
            summary+=" $t p50=${RES[lat_p50:$t:$r]} first-chunk p50=${RES[ttfc_p50:$t:$r]}"
        done
        log "  steady load round $r/$ROUNDS (µs):$summary"
    done
    RES[primary_hits:failover]=$(($("${SC_PRIMARY_HITS[@]}") - hits0))
    if ((${#SC_PRIMARY_REQUESTS[@]})); then
        RES[primary_requests:failover]=$(($("${SC_PRIMARY_REQUESTS[@]}") - requests0))
    fi
    RES[primary_tries:failover]=$(($(gateway_primary_tries) - tries0))
    LOAD_SECS=$(calc "$last - $first" 1)
    local m
    for m in lat_p50 lat_p99 ttfc_p50 ttfc_p99; do finish "$m" && added "$m"; done
}

# steady_run TARGET KIND ROUND: one `loadgen steady` run of KIND (plain: timed
# to the whole answer, lat_*; stream: to the first content, ttfc_*). Stores its
# percentiles, keeps the slowest request, and adds up requests and errors.
steady_run() {
    local t=$1 kind=$2 r=$3 m=lat
    [[ $kind == stream ]] && m=ttfc
    LOADGEN_KIND=$kind run_loadgen "$t" steady --duration-secs "$FAILOVER_SECS"
    RES[${m}_p50:$t:$r]=$(kv p50_us "$LINE")
    RES[${m}_p99:$t:$r]=$(kv p99_us "$LINE")
    RES[${m}_max:$t]=$(larger "$(kv max_us "$LINE")" "${RES[${m}_max:$t]:-0}")
    RES[requests:$t]=$((${RES[requests:$t]:-0} + $(kv requests "$LINE")))
    RES[errors:$t]=$((${RES[errors:$t]:-0} + $(kv errors "$LINE")))
}

# ---------------------------------------------------------------------------
# Limits (issue 6): one gateway, three keys (gateway-limits.yaml.template).
# free (no limits) is the baseline; limited has budgets the load never reaches,
# so the difference between the two is what the limiter costs; capped has a
# small request budget, and a throughput run against it counts what it admits.

scenario_limits() {
    SC_TITLE="limits, a key with limits against one without"
    SC_LIMITS=1
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway-limits.yaml.template
    SC_GATEWAY_VARS=(CAPPED_RPM="$CAPPED_RPM")
    MEASURED="free limited"
    BASELINE=free
    openai_clients
}

# measure_capped: one throughput run against the capped key, whose bucket
# starts full: it may admit its capacity plus what refilled during the run, and
# no more. Also the CPU the gateway spent per answer, most of them 429s.
measure_capped() {
    local before after line
    before=$(cpu_ticks "$GATEWAY_PID")
    run_loadgen capped throughput --connections "$CONNECTIONS" --duration-secs "$THROUGHPUT_SECS"
    line=$LINE
    after=$(cpu_ticks "$GATEWAY_PID")
    RES[capped_answers]=$(kv responses "$line")
    RES[capped_refused]=$(kv non200 "$line")
    RES[capped_errors]=$(kv errors "$line")
    RES[capped_admitted]=$((RES[capped_answers] - RES[capped_refused]))
    RES[capped_allowed]=$(calc "$CAPPED_RPM + $CAPPED_RPM * $(kv elapsed_s "$line") / 60" 0)
    RES[capped_cpu]=$(calc "($after - $before) * 1000000 / $CLK_TCK / ${RES[capped_answers]}" 2)
    log "  capped key: ${RES[capped_admitted]} admitted, ${RES[capped_refused]} refused," \
        "at most ${RES[capped_allowed]} allowed, ${RES[capped_cpu]} µs of CPU per answer"
}

# run_limits: the keys measured side by side on one gateway.
run_limits() {
    start_gateway "$SC_GATEWAY_CONFIG" "${SC_GATEWAY_VARS[@]}"
    measure_latency
    measure_ttfc
    measure_throughput
    measure_capped
    stop_gateway
    report_limits
}

# ---------------------------------------------------------------------------
# Logging (issue 7): two gateways on one config (gateway-logging.yaml.template),
# quiet with the access log off and logged with it on, writing to a file as it
# would to journald's pipe. Both keep their metrics: the difference between the
# two is what the access log costs. A perf profile of logged under load (when
# perf is installed) then says what the metrics and the log take of its CPU.

scenario_logging() {
    SC_TITLE="metrics and the access log: the log on against off"
    SC_LOGGING=1
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway-logging.yaml.template
    MEASURED="quiet logged"
    BASELINE=quiet
    openai_clients
}

# measure_log_lines: the logged gateway wrote one line per request it counted,
# less what it dropped (and says so).
measure_log_lines() {
    RES[log_requests]=$(metric_sum "$LOGGED_ADMIN_PORT" switchyard_requests_total)
    RES[log_dropped]=$(metric_sum "$LOGGED_ADMIN_PORT" switchyard_access_log_dropped_total)
    # The writer writes every 10 ms; give the last batch time to land.
    sleep 0.2
    RES[log_lines]=$(wc -l <"$TMP/access.log")
    RES[log_bytes]=$(calc "$(stat -c %s "$TMP/access.log") / ${RES[log_lines]}" 0)
}

# profile_share PATTERN: the share (%) of the profiled CPU spent in functions
# whose name matches the awk regex PATTERN, callees included.
profile_share() {
    awk -v pattern="$1" '$1 ~ /%$/ && $0 ~ pattern { v = $1 + 0; if (v > m) m = v } END { printf "%.2f\n", m }' \
        "$TMP/profile.txt"
}

# measure_profile: a perf profile of the logged gateway during one throughput
# run: the logging hook's share (metrics, then the access log's hand-off to its
# queue: the record's strings moved into a line), the hand-off's, and the writer's.
measure_profile() {
    if ! command -v perf >/dev/null 2>&1; then
        log "bench: perf is not installed: no profile (apt-get install linux-perf)"
        return 0
    fi
    taskset -c "$CLIENT_CORE" "$LOADGEN" throughput --url "$(target_url logged)" \
        --header "$(target_header logged)" --body "$(target_body logged plain)" \
        --connections "$CONNECTIONS" --duration-secs "$THROUGHPUT_SECS" >"$TMP/profile-load.out" &
    local load=$!
    track "$load" "loadgen under profile"
    sleep 0.5
    if ! perf record -q -F 299 --call-graph dwarf,65528 -p "$LOGGED_PID" -o "$TMP/perf.data" \
        -- sleep $((THROUGHPUT_SECS - 1)) >/dev/null 2>"$TMP/perf.log"; then
        log "bench: perf record failed (no profile): $(tail -n 1 "$TMP/perf.log")"
        stop_pid "$load"
        return 0
    fi
    stop_pid "$load"
    perf report -i "$TMP/perf.data" --children --stdio --sort symbol -g none 2>/dev/null >"$TMP/profile.txt"
    RES[share_hook]=$(profile_share 'ProxyHttp>::logging::')
    RES[share_handoff]=$(profile_share 'access_log::writer::AccessLog::write')
    RES[share_writer]=$(profile_share 'access_log::writer::write_lines')
    RES[share_metrics]=$(calc "${RES[share_hook]} - ${RES[share_handoff]}" 2)
    log "  profile of logged: logging hook ${RES[share_hook]}%, of which access-log hand-off" \
        "${RES[share_handoff]}%; writer thread ${RES[share_writer]}%"
}

# run_logging: the two gateways measured side by side, then the profile.
run_logging() {
    start_gateway "$SC_GATEWAY_CONFIG" ACCESS_LOG=false
    local quiet=$GATEWAY_PID
    GATEWAY_PORT=$LOGGED_PORT ADMIN_PORT=$LOGGED_ADMIN_PORT GATEWAY_STDOUT=$TMP/access.log \
        GATEWAY_CONF=$TMP/gateway-logged.yaml start_gateway "$SC_GATEWAY_CONFIG" ACCESS_LOG=true
    LOGGED_PID=$GATEWAY_PID
    GATEWAY_PID=$quiet
    measure_latency
    measure_ttfc
    measure_throughput
    measure_log_lines
    measure_profile
    stop_pid "$LOGGED_PID"
    LOGGED_PID=""
    stop_gateway
    report_logging
}

# ---------------------------------------------------------------------------
# Reload (issue 8): two gateways on one config (gateway-reload.yaml.template):
# steady, never reloaded, and reloading, which a background loop reloads all
# the time both are measured: by SIGHUP and by its file watcher in turn, each
# reload toggling two harmless values (the measured key's token budget and a
# price), so that every reload applies a changed config. The difference between
# the two is what the reloads cost the requests; then reloads are timed on the
# idle gateway, and the reloading gateway's own counts are read.

scenario_reload() {
    SC_TITLE="hot reload: a gateway reloaded all the time against one never reloaded"
    SC_RELOAD=1
    SC_COUNT_FAILED=1
    SC_GATEWAY_CONFIG=$BENCH_DIR/gateway-reload.yaml.template
    MEASURED="steady reloading"
    BASELINE=steady
    openai_clients
}

# read_generation ADMIN_PORT: sets GEN to the config generation that gateway's
# /readyz reports (empty when it cannot be read). Builtins only, no process
# forked: the reload loop polls it back to back.
read_generation() {
    local fd body=""
    GEN=""
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 0
    printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&"$fd" || true
    IFS= read -r -d '' -t 5 -u "$fd" body || true
    exec {fd}<&-
    body=${body##*\"config_generation\":}
    GEN=${body%%[!0-9]*}
}

now_us() { NOW=${EPOCHREALTIME/[.,]/}; }

# reload_once HOW: one reload of the reloading gateway. Its config file is
# replaced (written to a temporary file, then renamed over it, so the watcher
# never reads half a file) by the other of the two texts; then, for HOW=sighup,
# SIGHUP; for HOW=file, nothing: its 250 ms poll notices. Waits until /readyz
# shows a new generation, at most RELOAD_TIMEOUT_SECS, and sets RELOAD_US to the
# time from the trigger (the SIGHUP, or the rename) to the first /readyz answer
# that showed it; empty when it never came.
reload_once() {
    local how=$1 g0 t0 current="" next=0 conf=$TMP/gateway-reloading.yaml
    RELOAD_US=""
    read_generation "$RELOAD_ADMIN_PORT"
    g0=$GEN
    [[ -n $g0 ]] || return 0
    IFS= read -r -d '' current <"$conf" || true
    [[ $current == "${RELOAD_TEXT[0]}" ]] && next=1
    printf '%s' "${RELOAD_TEXT[$next]}" >"$conf.new"
    mv -f "$conf.new" "$conf"
    now_us
    t0=$NOW
    [[ $how == sighup ]] && kill -HUP "$RELOAD_PID"
    while :; do
        read_generation "$RELOAD_ADMIN_PORT"
        now_us
        if [[ -n $GEN ]] && ((GEN > g0)); then
            RELOAD_US=$((NOW - t0))
            return 0
        fi
        ((NOW - t0 < RELOAD_TIMEOUT_SECS * 1000000)) || return 0
        # The watcher takes 250-500 ms: no need to poll back to back.
        [[ $how == sighup ]] || sleep 0.02
    done
}

# reload_loop: reloads the reloading gateway until stopped (SIGTERM: it ends
# after the reload under way, so that none is left pending), alternately by
# SIGHUP and by the file watcher, pausing RELOAD_INTERVAL_MS after each reload
# took effect. One line per reload in $TMP/reload-loop.txt: `sighup
# MICROSECONDS`, `file MICROSECONDS`, or the way and `timeout`.
reload_loop() {
    local how=sighup pause
    RELOAD_STOP=0
    trap 'RELOAD_STOP=1' TERM
    pause=$(calc "$RELOAD_INTERVAL_MS / 1000" 3)
    while ((!RELOAD_STOP)); do
        reload_once "$how"
        printf '%s %s\n' "$how" "${RELOAD_US:-timeout}" >>"$TMP/reload-loop.txt"
        if [[ $how == sighup ]]; then how="file"; else how="sighup"; fi
        sleep "$pause"
    done
}

start_reload_loop() {
    : >"$TMP/reload-loop.txt"
    reload_loop &
    RELOAD_LOOP_PID=$!
    track "$RELOAD_LOOP_PID" "reload loop"
    taskset -p -c "$CLIENT_CORE" "$RELOAD_LOOP_PID" >/dev/null
}

# loop_reloads HOW: the reload loop's lines for HOW: sets RELOADS (how many took
# effect), TIMEOUTS (how many did not within RELOAD_TIMEOUT_SECS) and the
# median and largest time, in ms, of those that did (RELOAD_MEDIAN, RELOAD_MAX).
loop_reloads() {
    local times=()
    mapfile -t times < <(awk -v how="$1" '$1 == how && $2 != "timeout" { print $2 / 1000 }' \
        "$TMP/reload-loop.txt")
    RELOADS=${#times[@]}
    TIMEOUTS=$(awk -v how="$1" '$1 == how && $2 == "timeout"' "$TMP/reload-loop.txt" | wc -l)
    RELOAD_MEDIAN=- RELOAD_MAX=-
    if ((RELOADS)); then
        RELOAD_MEDIAN=$(calc "$(median "${times[@]}")" 2)
        RELOAD_MAX=$(calc "$(printf '%s\n' "${times[@]}" | sort -g | tail -n 1)" 2)
    fi
}

# measure_reload_idle: RELOAD_SAMPLES reloads by SIGHUP of the idle reloading
# gateway, each applying a changed file, timed as in the loop; and the time one
# /readyz poll takes, the resolution of those times.
measure_reload_idle() {
    local i t0 times=() polls=()
    for ((i = 0; i < RELOAD_SAMPLES; i++)); do
        reload_once sighup
        if [[ -n $RELOAD_US ]]; then
            times+=("$(calc "$RELOAD_US / 1000" 3)")
        else
            RES[idle_timeouts]=$((${RES[idle_timeouts]:-0} + 1))
        fi
        now_us
        t0=$NOW
        read_generation "$RELOAD_ADMIN_PORT"
        now_us
        polls+=("$(calc "($NOW - $t0) / 1000" 3)")
        sleep 0.05
    done
    RES[poll_ms]=$(calc "$(median "${polls[@]}")" 2)
    if ((${#times[@]})); then
        RES[idle_median]=$(calc "$(median "${times[@]}")" 2)
        RES[idle_max]=$(calc "$(printf '%s\n' "${times[@]}" | sort -g | tail -n 1)" 2)
    fi
    RES[idle_reloads]=${#times[@]}
    log "  $RELOAD_SAMPLES reloads by SIGHUP on the idle gateway: median ${RES[idle_median]:--} ms," \
        "max ${RES[idle_max]:--} ms (one /readyz poll: ${RES[poll_ms]} ms)"
}

# measure_loop_reloads: the reload loop's tally, by way.
measure_loop_reloads() {
    local how
    RES[loop_timeouts]=0
    for how in sighup file; do
        loop_reloads "$how"
        RES[loop_$how]=$RELOADS
        RES[loop_timeouts]=$((RES[loop_timeouts] + TIMEOUTS))
        RES[loop_${how}_median]=$RELOAD_MEDIAN
        RES[loop_${how}_max]=$RELOAD_MAX
    done
    log "  reload loop, while measuring: ${RES[loop_sighup]} reloads by SIGHUP (median" \
        "${RES[loop_sighup_median]} ms), ${RES[loop_file]} by the file watcher (median" \
        "${RES[loop_file_median]} ms), ${RES[loop_timeouts]} triggers without a reload"
}

# measure_reload_counts: the gateways' own counts: /metrics, and the reloading
# gateway's log lines by cause.
measure_reload_counts() {
    RES[reload_success]=$(metric_sum "$RELOAD_ADMIN_PORT" switchyard_config_reloads_total 'result="success"')
    RES[reload_error]=$(metric_sum "$RELOAD_ADMIN_PORT" switchyard_config_reloads_total 'result="error"')
    RES[generation:reloading]=$(metric_sum "$RELOAD_ADMIN_PORT" switchyard_config_generation)
    RES[generation:steady]=$(metric_sum "$ADMIN_PORT" switchyard_config_generation)
    RES[log_sighup]=$(grep -c 'config reloaded (SIGHUP)' "$TMP/gateway-reloading.log" || true)
    RES[log_file]=$(grep -c 'config reloaded (the file changed)' "$TMP/gateway-reloading.log" || true)
    RES[log_rejected]=$(grep -c 'config reload rejected' "$TMP/gateway-reloading.log" || true)
}

# run_reload: the two gateways measured side by side while the loop reloads
# one; then reloads timed on the idle gateway, and the counts.
run_reload() {
    start_gateway "$SC_GATEWAY_CONFIG" TOKENS_PER_MINUTE=1000000000 PRICE_IN=2.5
    local steady=$GATEWAY_PID conf=$TMP/gateway-reloading.yaml
    # The reloading gateway's two texts: it starts with the first.
    GATEWAY_PORT=$RELOAD_PORT ADMIN_PORT=$RELOAD_ADMIN_PORT GATEWAY_CONF=$conf \
        GATEWAY_LOG=$TMP/gateway-reloading.log \
        start_gateway "$SC_GATEWAY_CONFIG" TOKENS_PER_MINUTE=1000000000 PRICE_IN=2.5
    RELOAD_PID=$GATEWAY_PID
    GATEWAY_PID=$steady
    RELOAD_TEXT=()
    IFS= read -r -d '' "RELOAD_TEXT[0]" <"$conf" || true
    render "$SC_GATEWAY_CONFIG" "$TMP/reload-1.yaml" LISTEN_PORT="$RELOAD_PORT" \
        ADMIN_PORT="$RELOAD_ADMIN_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" \
        TOKENS_PER_MINUTE=999999999 PRICE_IN=3.0
    IFS= read -r -d '' "RELOAD_TEXT[1]" <"$TMP/reload-1.yaml" || true
    start_reload_loop
    local loop_start=$EPOCHREALTIME
    measure_latency
    measure_ttfc
    measure_throughput
    stop_pid "$RELOAD_LOOP_PID"
    RES[loop_secs]=$(calc "$EPOCHREALTIME - $loop_start" 3)
    measure_loop_reloads
    measure_reload_idle
    measure_reload_counts
    stop_pid "$RELOAD_PID"
    RELOAD_PID=""
    stop_gateway
    report_reload
}

# ---------------------------------------------------------------------------
# Report.

FAILS=0

# value MEASURE TARGET: the stored median, or "-".
value() { echo "${RES[$1:$2]:--}"; }

# ratio MEASURE [TARGET BASE]: TARGET's median over BASE's (gateway over nginx).
ratio() {
    local g=${RES[$1:${2:-gateway}]:-} n=${RES[$1:${3:-nginx}]:-}
    if [[ -n $g && -n $n ]] && awk "BEGIN { exit !($n > 0) }"; then calc "$g / $n" 2; else echo -; fi
}

# judge CONDITION NAME=VALUE...: sets VERDICT to PASS or FAIL by CONDITION (awk,
# over the named values), or to "-" when a value is missing; counts a FAIL.
judge() {
    local cond=$1 pair vars=()
    shift
    for pair in "$@"; do
        [[ -n ${pair#*=} ]] || { VERDICT=- && return 0; }
        vars+=(-v "$pair")
    done
    if awk "${vars[@]}" "BEGIN { exit !($cond) }"; then
        VERDICT=PASS
    else
        FAILS=$((FAILS + 1))
        VERDICT=FAIL
    fi
}

# verdict MEASURE CONDITION: judges CONDITION (awk, over g = gateway and
# n = nginx) on MEASURE's medians.
verdict() {
    local vars=(g="${RES[$1:gateway]:-}")
    [[ $2 == *n* ]] && vars+=(n="${RES[$1:nginx]:-}")
    judge "$2" "${vars[@]}"
}

row() { printf '%-34s %10s %10s %10s %9s  %-32s %s\n' "$@"; }

# line LABEL MEASURE [BUDGET COND]: one row with direct/nginx/gateway values.
line() {
    local label=$1 m=$2 budget=${3:-} cond=${4:-}
    VERDICT=""
    if [[ -n $cond ]]; then verdict "$m" "$cond"; fi
    row "$label" "$(value "$m" direct)" "$(value "$m" nginx)" "$(value "$m" gateway)" \
        "$(ratio "$m")" "$budget" "$VERDICT"
}

mb() { [[ -n ${RES[$1:$2]:-} ]] && calc "${RES[$1:$2]} * 1024 / 1000000" 1; }

report() {
    local t m
    for m in rss_start rss_idle rss_streams; do
        for t in nginx gateway; do
            [[ -n ${RES[$m:$t]:-} ]] && RES[${m}_mb:$t]=$(mb "$m" "$t")
        done
    done
    printf '\n== Switchyard benchmark: %s ==\n' "$SC_TITLE"
    printf 'medians of %s alternating rounds; proxies pinned to core %s, client and fake upstream to core %s\n\n' \
        "$ROUNDS" "$PROXY_CORE" "$CLIENT_CORE"
    row "measure" "direct" "nginx" "gateway" "gw/nginx" "budget (DESIGN.md §6)" "verdict"
    row "-------" "------" "-----" "-------" "--------" "---------------------" "-------"
    line "latency p50 (µs)" lat_p50
    line "latency p99 (µs)" lat_p99
    line "added latency p50 (µs)" added_lat_p50 "gateway <= ${SC_P50_MAX}x nginx" "g <= $SC_P50_MAX * n"
    line "added latency p99 (µs)" added_lat_p99 "gateway <= ${SC_P99_MAX}x nginx" "g <= $SC_P99_MAX * n"
    line "CPU per request (µs)" cpu "gateway <= 2x nginx" "g <= 2 * n"
    line "proxy core busy under load (%)" busy
    line "throughput, $CONNECTIONS conns (req/s)" rps "gateway >= 0.6x nginx" "g >= 0.6 * n"
    line "first chunk p50 (µs)" ttfc_p50
    line "first chunk p99 (µs)" ttfc_p99
    line "added first chunk p50 (µs)" added_ttfc_p50 "gateway <= nginx + 100 µs" "g <= n + 100"
    line "added first chunk p99 (µs)" added_ttfc_p99
    line "RSS right after start (MB)" rss_start_mb
    line "RSS idle after load (MB)" rss_idle_mb
    line "RSS with $STREAMS streams (MB)" rss_streams_mb "gateway < 50 MB" "g < 50"
    ((SC_TRANSLATOR)) && line "long event stream read whole (MB/s in)" translate
    printf '\nCPU, RSS: nginx worker process; gateway whole process; direct: the fake upstream.\n'
    printf 'added = target minus direct, per round; gw/nginx compares the gateway column to nginx.\n'
    report_noise
}

# report_noise: how much CPU other processes took while measuring, with a
# warning when that makes the numbers noisy.
report_noise() {
    local other=0
    # Accounting differences can make a quiet machine look slightly negative.
    ((NOISE_WINDOW > 0 && NOISE_OTHER > 0)) && other=$(calc "100 * $NOISE_OTHER / $NOISE_WINDOW" 1)
    printf 'CPU used by other processes while measuring: %s%% of the machine\n' "$other"
    if awk "BEGIN { exit !($other > 5) }"; then
        printf 'WARNING: the machine was busy with other work; numbers are noisy, rerun when it is quiet\n'
    fi
}

# pair_line LABEL MEASURE [MAX_ADDED_US]: one row of a table that compares two
# targets of one gateway (failover against healthy, limited against free); with
# MAX_ADDED_US the added median (target minus baseline) is judged against it.
pair_line() {
    local label=$1 m=$2 max=${3:-} budget="" t=${MEASURED#"$BASELINE "}
    VERDICT=""
    if [[ -n $max ]]; then
        budget="added <= $(calc "$max / 1000" 0) ms (first_byte)"
        judge "a <= $max" a="${RES[added_$m:$t]:-}"
    fi
    row "$label" "$(value "$m" "$BASELINE")" "$(value "$m" "$t")" "$(value "added_$m" "$t")" \
        "$(ratio "$m" "$t" "$BASELINE")" "$budget" "$VERDICT"
}

# report_failover: the failover table: both models' latency and errors, and
# what reached the broken primary against what the circuit breaker allows.
report_failover() {
    local most budget
    most=$(awk -v t="$LOAD_SECS" -v r="$BREAKER_RECOVERY_SECS" -v f="$BREAKER_FAILURES" \
        'BEGIN { print f + int(t / r) + 1 }')
    budget="<= $BREAKER_FAILURES + $LOAD_SECS s / $BREAKER_RECOVERY_SECS s + 1 = $most"
    printf '\n== Switchyard benchmark: %s ==\n' "$SC_TITLE"
    printf 'one gateway, two models: healthy = bench-model (the fake upstream, its only target);\n'
    printf 'failover = bench-failover (priority 1: %s; priority 2: the fake upstream),\n' "$SC_PRIMARY"
    printf 'circuit breaker %s failures / %s s, first_byte %s ms. Medians of %s alternating rounds of\n' \
        "$BREAKER_FAILURES" "$BREAKER_RECOVERY_SECS" "$FIRST_BYTE_MS" "$ROUNDS"
    printf '%s s of sequential plain requests and %s s of streams per model, on one connection\n\n' \
        "$FAILOVER_SECS" "$FAILOVER_SECS"
    row "measure" "healthy" "failover" "added" "ratio" "budget" "verdict"
    row "-------" "-------" "--------" "-----" "-----" "------" "-------"
    pair_line "latency p50 (µs)" lat_p50 "$SC_ADDED_MAX_US"
    pair_line "latency p99 (µs)" lat_p99
    pair_line "slowest request (µs)" lat_max
    pair_line "first chunk p50 (µs)" ttfc_p50 "$SC_ADDED_MAX_US"
    pair_line "first chunk p99 (µs)" ttfc_p99
    pair_line "slowest first chunk (µs)" ttfc_max
    pair_line "requests (plain + stream)" requests
    judge "h + f == 0" h="${RES[errors:healthy]:-}" f="${RES[errors:failover]:-}"
    row "errors (plain + stream)" "$(value errors healthy)" "$(value errors failover)" "" "" "0" "$VERDICT"
    judge "p <= $most" p="${RES[primary_hits:failover]:-}"
    row "$SC_PRIMARY_HITS_LABEL" "" "$(value primary_hits failover)" "" "" "$budget" "$VERDICT"
    ((${#SC_PRIMARY_REQUESTS[@]})) &&
        row "requests the primary read" "" "$(value primary_requests failover)" "" "" "" ""
    row "primary tries (gateway /metrics)" "" "$(value primary_tries failover)" "" "" "" ""
    printf '\nadded = failover minus healthy, per round; ratio = failover / healthy. Streams are timed to\n'
    printf 'their first content; an error is a failed request, a non-200 answer or a stream without\n'
    printf 'content or [DONE]. The budget for the primary counts the tries before the circuit opens,\n'
    printf 'then one trial per recovery timeout over the %s s the failover model was under load.\n' "$LOAD_SECS"
    report_noise
}

# pair_measures: the head of a two-target table (BASELINE, then the other of
# MEASURED) and its latency, first chunk, CPU and throughput rows.
pair_measures() {
    local t=${MEASURED#"$BASELINE "}
    row "measure" "$BASELINE" "$t" "added" "ratio" "budget" "verdict"
    row "-------" "${BASELINE//?/-}" "${t//?/-}" "-----" "-----" "------" "-------"
    pair_line "latency p50 (µs)" lat_p50
    pair_line "latency p99 (µs)" lat_p99
    pair_line "first chunk p50 (µs)" ttfc_p50
    pair_line "first chunk p99 (µs)" ttfc_p99
    RES[added_cpu:$t]=$(calc "${RES[cpu:$t]} - ${RES[cpu:$BASELINE]}" 2)
    pair_line "CPU per request (µs)" cpu
    pair_line "throughput, $CONNECTIONS conns (req/s)" rps
}

# report_limits: the limits table: both keys' latency, CPU and throughput, and
# what the capped key admitted against what its budget allows.
report_limits() {
    printf '\n== Switchyard benchmark: %s ==\n' "$SC_TITLE"
    printf 'one gateway, three keys: free (no limits); limited (requests and tokens per minute, never\n'
    printf 'reached: every request pays the whole limiter); capped (%s requests a minute). Medians of\n' "$CAPPED_RPM"
    printf '%s alternating rounds\n\n' "$ROUNDS"
    pair_measures
    local allowed=${RES[capped_allowed]}
    judge "a <= $allowed && a >= 0.98 * $allowed" a="${RES[capped_admitted]:-}"
    row "capped key: admitted in $THROUGHPUT_SECS s" "" "${RES[capped_admitted]}" "" "" \
        "$CAPPED_RPM + refill = $allowed" "$VERDICT"
    row "capped key: refused (429)" "" "${RES[capped_refused]}" "" "" "" ""
    judge "e == 0" e="${RES[capped_errors]:-}"
    row "capped key: failed connections" "" "${RES[capped_errors]}" "" "" "0" "$VERDICT"
    row "capped key: CPU per answer (µs)" "" "${RES[capped_cpu]}" "" "" "" ""
    printf '\nadded = limited minus free (CPU: of the medians); ratio = limited / free. The capped\n'
    printf 'budget allows its capacity plus what refilled during the run, %s a second.\n' \
        "$(calc "$CAPPED_RPM / 60" 0)"
    report_noise
}

# report_logging: the logging table: both gateways' latency, CPU and
# throughput; the log's completeness; and the profile's shares, in µs.
report_logging() {
    printf '\n== Switchyard benchmark: %s ==\n' "$SC_TITLE"
    printf 'two gateways on one config: quiet (access_log off); logged (on, to a file). Both count\n'
    printf 'every metric, a priced target included. Medians of %s alternating rounds\n\n' "$ROUNDS"
    pair_measures
    judge "l + d == r" l="${RES[log_lines]}" d="${RES[log_dropped]}" r="${RES[log_requests]}"
    row "access-log lines / requests" "" "${RES[log_lines]} / ${RES[log_requests]}" "" "" \
        "lines + dropped = requests" "$VERDICT"
    row "access-log lines dropped" "" "${RES[log_dropped]}" "" "" "" ""
    row "access-log bytes per line" "" "${RES[log_bytes]}" "" "" "" ""
    if [[ -n ${RES[share_hook]:-} ]]; then
        local cpu=${RES[cpu:logged]}
        row "profile: metrics (% / µs)" "" "${RES[share_metrics]}%" \
            "$(calc "${RES[share_metrics]} * $cpu / 100" 2)" "" "" ""
        row "profile: log hand-off (% / µs)" "" "${RES[share_handoff]}%" \
            "$(calc "${RES[share_handoff]} * $cpu / 100" 2)" "" "" ""
        row "profile: log writer (% / µs)" "" "${RES[share_writer]}%" \
            "$(calc "${RES[share_writer]} * $cpu / 100" 2)" "" "" ""
    fi
    printf '\nadded = logged minus quiet (CPU: of the medians); ratio = logged / quiet. Profile: shares of\n'
    printf "logged's CPU during one more throughput run (perf, callees included), and those shares of its\n"
    printf 'CPU per request. metrics = the logging hook less the hand-off (the line moved to the queue).\n'
    report_noise
}

# report_reload: the reload table: both gateways' latency, CPU, throughput and
# failed requests; the reloads done and counted; then how long reloads took.
report_reload() {
    printf '\n== Switchyard benchmark: %s ==\n' "$SC_TITLE"
    printf 'two gateways on one config: steady (never reloaded); reloading (reloaded throughout the\n'
    printf 'measurements, alternately by SIGHUP and by its file watcher, %s ms after the previous reload\n' \
        "$RELOAD_INTERVAL_MS"
    printf 'took effect; each reload toggles a token budget and a price). Medians of %s alternating rounds\n\n' \
        "$ROUNDS"
    pair_measures
    local expected=$((RES[loop_sighup] + RES[loop_file] + RES[idle_reloads]))
    judge "s + r == 0" s="${RES[failed:steady]:-}" r="${RES[failed:reloading]:-}"
    row "failed requests (all runs)" "${RES[failed:steady]:-}" "${RES[failed:reloading]:-}" "" "" "0" "$VERDICT"
    row "reloads by SIGHUP while measuring" "" "${RES[loop_sighup]}" "" "" \
        "gateway log: ${RES[log_sighup]}, ${RES[idle_reloads]} of them idle" ""
    row "reloads by the file watcher" "" "${RES[loop_file]}" "" "" "gateway log: ${RES[log_file]}" ""
    row "reloads per second while measuring" "" \
        "$(calc "(${RES[loop_sighup]} + ${RES[loop_file]}) / ${RES[loop_secs]}" 1)" "" "" \
        "over $(calc "${RES[loop_secs]}" 1) s" ""
    judge "t == 0" t="$((RES[loop_timeouts] + ${RES[idle_timeouts]:-0}))"
    row "triggers without a reload in ${RELOAD_TIMEOUT_SECS} s" "" \
        "$((RES[loop_timeouts] + ${RES[idle_timeouts]:-0}))" "" "" "0" "$VERDICT"
    row "reloads counted (/metrics success)" "" "${RES[reload_success]}" "" "" \
        "loop + ${RES[idle_reloads]} idle = $expected" ""
    judge "e == 0" e="${RES[reload_error]}"
    row "reloads rejected (/metrics error)" "" "${RES[reload_error]}" "" "" "0" "$VERDICT"
    row "config generation at the end" "${RES[generation:steady]}" "${RES[generation:reloading]}" "" "" "" ""
    printf '\nadded = reloading minus steady (CPU: of the medians); ratio = reloading / steady. Failed: failed\n'
    printf 'or timed-out requests and non-200 answers in the latency, first chunk and throughput runs.\n'
    printf '\nreload time: from the trigger (SIGHUP sent; the new file renamed into place) to the first\n'
    printf '/readyz answer that shows the new generation; one /readyz poll takes %s ms (the resolution).\n' \
        "${RES[poll_ms]}"
    printf '%-34s %10s %10s %10s\n' "trigger" "reloads" "median ms" "max ms"
    printf '%-34s %10s %10s %10s\n' "SIGHUP, idle gateway" "${RES[idle_reloads]}" \
        "${RES[idle_median]:--}" "${RES[idle_max]:--}"
    printf '%-34s %10s %10s %10s\n' "SIGHUP, under load" "${RES[loop_sighup]}" \
        "${RES[loop_sighup_median]}" "${RES[loop_sighup_max]}"
    printf '%-34s %10s %10s %10s\n' "file rewritten, under load" "${RES[loop_file]}" \
        "${RES[loop_file_median]}" "${RES[loop_file_max]}"
    printf 'The file watcher polls every 250 ms and applies a text once it held for one more poll.\n'
    report_noise
}

# run_scenario NAME: sets the scenario up, measures and reports it.
run_scenario() {
    local name=$1 k
    declare -F "scenario_$name" >/dev/null || die "unknown scenario '$name'"
    SC_FAILOVER=0
    SC_LIMITS=0
    SC_LOGGING=0
    SC_RELOAD=0
    SC_COUNT_FAILED=0
    SC_GATEWAY_VARS=()
    MEASURED=$TARGETS
    BASELINE=direct
    "scenario_$name"
    if ((SC_FAILOVER || SC_LIMITS || SC_LOGGING || SC_RELOAD)) && ! has_target gateway; then
        log "bench: scenario $name skipped: it measures the gateway, which BENCH_TARGETS leaves out"
        return 0
    fi
    log "bench: scenario $name ($SC_TITLE); targets: $MEASURED"
    for k in "${!RES[@]}"; do unset "RES[$k]"; done
    NOISE_OTHER=0
    NOISE_WINDOW=0
    if ((SC_FAILOVER)); then
        run_failover
    elif ((SC_LIMITS)); then
        run_limits
    elif ((SC_LOGGING)); then
        run_logging
    elif ((SC_RELOAD)); then
        run_reload
    else
        run_comparison
    fi
}

# run_comparison: direct, nginx and the gateway measured side by side and
# judged against DESIGN.md §6.
run_comparison() {
    has_target nginx && RES[rss_start:nginx]=$NGINX_RSS_START
    if has_target gateway; then
        start_gateway "$SC_GATEWAY_CONFIG"
        RES[rss_start:gateway]=$(rss_kb "$GATEWAY_PID")
    fi
    measure_latency
    measure_ttfc
    measure_throughput
    measure_memory
    measure_translator
    has_target gateway && stop_gateway
    report
}

# run_failover: the gateway with a broken primary, under steady load.
run_failover() {
    start_gateway "$SC_GATEWAY_CONFIG" "${SC_GATEWAY_VARS[@]}"
    measure_failover
    stop_gateway
    report_failover
}

stop_gateway() {
    stop_pid "$GATEWAY_PID"
}

start_fake
if has_target nginx; then
    start_nginx
fi

started=$SECONDS
for scenario in $SCENARIOS; do
    run_scenario "$scenario"
done
printf '\nbench: done in %ss' $((SECONDS - started))
if ((FAILS > 0)); then
    printf '; %s budget(s) FAILED\n' "$FAILS"
    [[ $STRICT == 1 ]] && exit 1
else
    printf '\n'
fi
exit 0
