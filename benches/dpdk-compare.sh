#!/usr/bin/env bash
# vipgate on the dpdk driver against dpdk-testpmd on the same core, in one run: testpmd
# forwarding between two net_null ports (io, then macswap), and `vipgate bench --driver
# dpdk` (64-byte frames of live flows to VIPs, IPIP, sent to a net_null port), without
# hugepages and with them. Prints a table and writes benches/results/dpdk-compare.json.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: benches/dpdk-compare.sh [--seconds S] [--flows N] [--pages N] [--vipgate PATH]

  --seconds S    seconds per measurement (default 5)
  --flows N      live flows for vipgate (default 1000000)
  --pages N      2 MB hugepages to reserve for the hugepage runs (default 256; 0 skips them)
  --vipgate P    the vipgate binary, built with --features dpdk
                 (default target/release/vipgate)

Needs root, dpdk-testpmd (Debian: dpdk-dev) and jq. Every run forwards on core 1
(testpmd: -l 0,1; vipgate bench pins its worker to core 1).
USAGE
}

seconds=5
flows=1000000
pages=256
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vipgate="$root/target/release/vipgate"
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
        --flows) flows="${2:?--flows needs a number}"; shift 2 ;;
        --pages) pages="${2:?--pages needs a number}"; shift 2 ;;
        --vipgate) vipgate="${2:?--vipgate needs a path}"; shift 2 ;;
        *) echo "dpdk-compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
command -v dpdk-testpmd >/dev/null || { echo "dpdk-compare.sh: dpdk-testpmd not found (apt-get install dpdk-dev)" >&2; exit 1; }
command -v jq >/dev/null || { echo "dpdk-compare.sh: jq not found" >&2; exit 1; }
[[ -x "$vipgate" ]] || { echo "dpdk-compare.sh: $vipgate not found: cargo build --release -p vipgate-control --features dpdk" >&2; exit 1; }

# EAL's runtime files of this run's prefix go when it ends.
trap 'rm -rf "/var/run/dpdk/vgcmp$$"' EXIT

# testpmd MODE EAL_MEMORY...: forwarded packets per second, both ports added, from the
# last of its per-second statistics.
testpmd() {
    local mode="$1"
    shift
    local out
    out="$(timeout --signal=INT $((seconds + 3)) dpdk-testpmd -l 0,1 "$@" --no-pci \
        --vdev net_null0 --vdev net_null1 --file-prefix "vgcmp$$" -- \
        --forward-mode="$mode" --total-num-mbufs=16384 --stats-period=1 2>&1 || true)"
    # Per port, per second: "Rx-pps: N ... Rx-bps: ..."; the last two lines are the two
    # ports' last second.
    grep -o 'Rx-pps: *[0-9]*' <<<"$out" | tail -n 2 | awk '{ s += $2 } END { printf "%.3f", s / 1e6 }'
}

vg() {
    "$vipgate" bench --driver dpdk --workload 64b --flows "$flows" --seconds "$seconds" --json \
        --eal="$* --no-pci --vdev net_null0 --file-prefix vgcmp$$" 2>/dev/null |
        jq '.runs[0].workers[0] | {mpps, loop_mpps, ns_per_packet, load_ns_per_packet}'
}

results=()
run_set() {
    local memory="$1"
    shift
    local io macswap vgjson
    io="$(testpmd io "$@")"
    macswap="$(testpmd macswap "$@")"
    vgjson="$(vg "$@")"
    results+=("$(jq -n --arg memory "$memory" --argjson io "$io" --argjson macswap "$macswap" \
        --argjson vipgate "$vgjson" '{memory: $memory, testpmd_io_mpps: $io, testpmd_macswap_mpps: $macswap, vipgate: $vipgate,
          vipgate_loop_over_io: (($vipgate.loop_mpps / $io) * 1000 | round / 1000)}')")
}

run_set "no hugepages (--no-huge -m 512)" --no-huge -m 512
if ((pages > 0)); then
    "$root/scripts/setup-hugepages.sh" --pages "$pages" >&2
    # --huge-unlink: no hugepage files left behind under this run's prefix.
    run_set "$pages hugepages of 2 MB" -m 256 --huge-unlink
fi

printf '%s\n' "${results[@]}" | jq -s --argjson flows "$flows" --argjson seconds "$seconds" \
    '{flows: $flows, seconds: $seconds, runs: .}' >"$root/benches/results/dpdk-compare.json"
printf '%-34s %12s %12s %12s %12s %10s\n' memory "testpmd io" "macswap" "vipgate" "vg engine" "vg/io"
jq -r '.runs[] | [.memory, .testpmd_io_mpps, .testpmd_macswap_mpps, .vipgate.loop_mpps, .vipgate.mpps, .vipgate_loop_over_io] | @tsv' \
    "$root/benches/results/dpdk-compare.json" |
    while IFS=$'\t' read -r m io ms loop engine ratio; do
        printf '%-34s %12s %12s %12s %12s %10s\n' "$m" "$io" "$ms" "$loop" "$engine" "$ratio"
    done
echo "(Mpps on one core; vipgate: the whole loop (receive stand-in, pipeline, TX), and its engine part alone; vg/io: vipgate's loop over testpmd io)"
