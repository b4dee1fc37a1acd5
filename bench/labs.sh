#!/usr/bin/env bash
# Runs N labs of M nodes in a row and prints, for each, how long the full mesh took to form
# after the last node was ready (issue 10, item 2: every pair within 10 s).
#
#   sudo bench/labs.sh [RUNS=10] [NODES=32] [DURATION=40s] [BIN=target/release/noctua]
#
# Needs root (network namespaces), iproute2, util-linux and jq. Each lab's event logs stay
# in $LABS_DIR (default /tmp/noctua-labs)/labK. Per lab it prints: the time from the first
# and from the last node's `ready` to the full mesh (every node with a session to every
# other: NODES*(NODES-1) sessions), the peers each node had a session with (summed), and
# the sessions that closed before their node had its full mesh; a lab whose mesh never
# formed within DURATION says so. Exit status 1 if any lab missed the 10 s bound.
# LABS_ANALYZE_ONLY=1 prints the figures of the labs already in $LABS_DIR, running none.
set -euo pipefail

runs=${1:-10}
nodes=${2:-32}
duration=${3:-40s}
bin=${4:-target/release/noctua}
dir=${LABS_DIR:-/tmp/noctua-labs}
bound_ms=10000
want=$((nodes * (nodes - 1)))

command -v jq >/dev/null || { echo "labs.sh: jq is required" >&2; exit 2; }
[ -n "${LABS_ANALYZE_ONLY:-}" ] || [ -x "$bin" ] || { echo "labs.sh: no binary at $bin (cargo build --release -p noctua)" >&2; exit 2; }

mkdir -p "$dir"
missed=0
printf '%-5s %12s %12s %9s %7s\n' lab first_ready last_ready sessions closed
for k in $(seq 1 "$runs"); do
    out="$dir/lab$k"
    if [ -z "${LABS_ANALYZE_ONLY:-}" ]; then
        rm -rf "$out"
        "$bin" lab --nodes "$nodes" --dir "$out" --duration "$duration" </dev/null \
            >"$dir/lab$k.out" 2>&1 || true
    fi
    # Per node: its ready time, and the time it had sessions with all NODES-1 others
    # (the first session_established of each peer; the mesh time is the last of these).
    stats=$(for f in "$out"/node*.jsonl; do
        jq -rs --argjson others $((nodes - 1)) '
            (map(select(.event=="ready"))[0].ts) as $ready
            | (map(select(.event=="session_established")) | group_by(.peer_id)
               | map(min_by(.ts).ts) | sort) as $firsts
            | (if ($firsts | length) >= $others then $firsts[$others - 1] else -1 end) as $mesh
            | [$ready, $mesh, ($firsts | length),
               (map(select(.event=="session_closed"
                           and ($mesh < 0 or .ts <= $mesh))) | length)]
            | @tsv' "$f"
    done)
    first_ready=$(awk '{print $1}' <<<"$stats" | sort -n | head -1)
    last_ready=$(awk '{print $1}' <<<"$stats" | sort -n | tail -1)
    incomplete=$(awk '$2 < 0' <<<"$stats" | wc -l)
    mesh=$(awk '{print $2}' <<<"$stats" | sort -n | tail -1)
    sessions=$(awk '{s += $3} END {print s}' <<<"$stats")
    closed=$(awk '{s += $4} END {print s}' <<<"$stats")
    if [ "$incomplete" -gt 0 ]; then
        printf '%-5s %12s %12s %9s %7s  (%d nodes never meshed)\n' "$k" never never \
            "$sessions/$want" "$closed" "$incomplete"
        missed=$((missed + 1))
        continue
    fi
    from_first=$((mesh - first_ready))
    from_last=$((mesh - last_ready))
    printf '%-5s %10d ms %10d ms %9s %7s\n' "$k" "$from_first" "$from_last" \
        "$sessions/$want" "$closed"
    [ "$from_last" -le "$bound_ms" ] || missed=$((missed + 1))
done
echo "labs over the ${bound_ms} ms bound (or never meshed): $missed of $runs"
[ "$missed" -eq 0 ]
