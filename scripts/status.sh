#!/usr/bin/env bash
# One screen of the running appliance's health.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: status.sh [--config FILE] [--interval SECONDS]

One screen of health: generation and uptime, each worker's rate and busy share, packets
per second in and out over the interval, drops by reason (per second, and since start:
the pipeline's and the port's own, such as its software spread's full queues and the
device's RX misses; a kind the device cannot report is said so),
and per VIP each backend's state, weight, share of the packets in the interval and live
flows in that VIP (TCP established and closing, UDP). Takes two samples of the counters INTERVAL seconds apart (default 1).

  --config FILE       the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  --interval SECONDS  between the two samples (default 1)
  -h, --help          this text

Exit: 0; 1 when the appliance cannot be reached.
USAGE
}

interval=1
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --interval) interval="${2:?--interval needs seconds}"; shift 2 ;;
        *) echo "status.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$interval" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--interval $interval is not a number of seconds"

need_vipgate
need jq jq
before="$(ctl_json stats)" || die "cannot reach the appliance (see above)"
sleep "$interval"
after="$(ctl_json stats)"
status="$(ctl_json status)"
flows="$(ctl_json flows)"

jq -rn --argjson a "$before" --argjson b "$after" --argjson s "$status" --argjson f "$flows" \
    --argjson dt "$interval" '
  def rate(k): (($b.counters[k] - $a.counters[k]) / $dt);
  def mpps(x): (x / 1e6 * 1000 | round / 1000);
  def pct(x): (x * 1000 | round / 10);
  "generation \($s.generation)   up \($s.uptime_s | floor) s   reloads \($s.reloads)   config \($s.config)",
  "in \(mpps(rate("rx_packets"))) Mpps   out \(mpps(rate("forwarded") + rate("replied"))) Mpps   dropped \([$b.counters | keys[] | select(startswith("drop_")) | rate(.)] | add | floor)/s",
  ($s.workers[] as $w
    | ([$a.workers[] | select(.id == $w.id)][0].counters.rx_packets) as $r0
    | ([$b.workers[] | select(.id == $w.id)][0].counters.rx_packets) as $r1
    | "worker \($w.id): core \($w.core // "-")  generation \($w.generation)  busy \($w.busy_percent)%  \(mpps(($r1 - $r0) / $dt)) Mpps"),
  (if $b.port then "port \($b.port.device) (\($b.port.device_driver)): link \(if $b.port.link.up then "up" else "DOWN" end) \($b.port.link.speed_mbps) Mb/s   queues \($b.port.queues)\(if $b.port.software_rss then " (software spread)" else "" end)   mbufs free \($b.port.mbufs_free)   missed \($b.port.xstats.rx_missed_errors // 0)   no mbuf \($b.port.xstats.rx_mbuf_allocation_errors // 0)" else empty end),
  (if ($s.overrides.drained | length) + ($s.overrides.weights | length) > 0
   then "overrides: drained \($s.overrides.drained | join(", "))  weights \($s.overrides.weights | tostring)"
   else "overrides: none" end),
  "",
  "drops            per second   since start",
  ($b.counters | to_entries[] | select(.key | startswith("drop_"))
    | "  \(.key[5:] | . + (" " * (14 - length)))\((.value - $a.counters[.key]) / $dt | floor | tostring | (" " * (10 - length)) + .)   \(.value)"),
  ($b.unseen // {} | to_entries[] | "  \(.key[5:] | . + (" " * (14 - length)))cannot be seen: \(.value)"),
  "",
  ($b.vips[] as $v
    | ([$a.vips[] | select(.vip == $v.vip)][0] // {backends: []}) as $av
    | ([$v.backends[] | . as $x | ($x.packets - ([$av.backends[] | select(.backend == $x.backend)][0].packets // 0))] | add) as $tot
    | "\($v.vip)",
      ($v.backends[] | . as $x
        | ($x.packets - ([$av.backends[] | select(.backend == $x.backend)][0].packets // 0)) as $d
        | ([$f.vips[] | select(.vip == $v.vip) | .backends[] | select(.backend == $x.backend)][0] // {flows: 0, tcp_established: 0, tcp_closing: 0, udp: 0}) as $fl
        | "  \($x.backend | . + (" " * (28 - length))) \($x.state | . + (" " * (9 - length))) weight \($x.weight)   share \(if $tot > 0 then pct($d / $tot) else 0 end)%   live flows \($fl.flows) (TCP \($fl.tcp_established) open, \($fl.tcp_closing) closing; UDP \($fl.udp))"))
'
