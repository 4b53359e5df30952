#!/usr/bin/env bash
# The migration: moves new flows from the old site's backends to the new site's, in steps,
# watching the counters; drains the old ones; writes the end state to the config file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: cutover.sh --from OLD[,OLD...] --to NEW[,NEW...] [options]

Moves a running appliance from the old site's backends (OLD) to the new site's (NEW), in
the VIPs that list a new backend (or in the VIPs given with --vip). The new backends must
already be in those VIPs (at weight 0, say). VIPs that list an old backend but no new one
are left alone, and said so: their old backends keep taking new flows. Then:
  1. prints the plan: the VIPs it moves and those it leaves alone (and why), `vipgate diff`
     of the config against its end state, and the steps per VIP;
  2. refuses (exit 1, dry run too) when the end state would leave a VIP it moves with no
     backend taking new flows, naming the VIP and what it would keep, unless --force;
  3. measures the drop rate for one step's time, as a baseline;
  4. in STEPS steps, raises the new backends' weight to WEIGHT and lowers the old ones'
     to 0 in each VIP it moves (runtime overrides scoped to the VIP); after each step
     waits STEP_WAIT seconds and checks that the new backends took packets and that
     losses (every drop reason of `vipgate ctl stats`: the pipeline's and the port's
     own, such as full software-spread queues and the device's RX misses) did not rise
     above the baseline (more than half again plus DROP_SLACK per second): otherwise it
     rolls back (every override of OLD and NEW removed: the
     config's weights again) and exits 1;
  5. drains the old backends in those VIPs and waits until their open connections fall
     to FLOWS_BELOW or FLOWS_TIMEOUT passes (their established flows stay on them
     meanwhile): TCP flows with no FIN or RST seen, and UDP flows seen within UDP_WINDOW
     (closing TCP flows and quiet UDP ones in the flow table are not waited on). Flows
     are counted per VIP: an old backend's flows in a VIP left alone are not waited on;
  6. writes the end state to the config file for those VIPs (NEW at WEIGHT and active,
     OLD draining), reloads it, and removes the overrides: a restart keeps the new state.

  --from LIST            old backends, comma-separated (ADDRESS or ADDRESS:PORT)
  --to LIST              new backends, comma-separated
  --vip VIP              move this VIP (repeatable; ADDRESS[:PORT][/PROTOCOL] or a name such
                         as udp://203.0.113.10:8000); default: every VIP that lists a new backend
  --config FILE          the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  --weight N             the new backends' final weight (default 100)
  --steps N              how many steps (default 4)
  --step-wait SECONDS    time per step, and for the baseline (default 30)
  --drop-slack N         drops per second tolerated above 1.5 x the baseline (default 10)
  --flows-below N        old backends' open connections to wait for (default 0)
  --udp-window SECONDS   a UDP flow seen within this long is open (default 300: longer than
                         the clients' heartbeat)
  --flows-timeout SECONDS  longest wait for them (default 900)
  --force                go on even though a VIP would keep no backend taking new flows
  --dry-run              print the plan and change nothing
  -h, --help             this text

Exit: 0 done; 1 refused, rolled back or failed (the reason on stderr), 2 bad arguments;
3 done but the old backends still carry more than FLOWS_BELOW flows (they stay drained,
the config file is not changed: run again later). Safe to run twice: a second run
converges on the same end state.
USAGE
}

from="" to="" weight=100 steps=4 step_wait=30 drop_slack=10 flows_below=0 flows_timeout=900 dry_run=0 force=0
udp_window=300
asked_vips=()
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --from) from="${2:?--from needs backends}"; shift 2 ;;
        --to) to="${2:?--to needs backends}"; shift 2 ;;
        --vip) asked_vips+=("${2:?--vip needs a VIP}"); shift 2 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --weight) weight="${2:?}"; shift 2 ;;
        --steps) steps="${2:?}"; shift 2 ;;
        --step-wait) step_wait="${2:?}"; shift 2 ;;
        --drop-slack) drop_slack="${2:?}"; shift 2 ;;
        --flows-below) flows_below="${2:?}"; shift 2 ;;
        --flows-timeout) flows_timeout="${2:?}"; shift 2 ;;
        --udp-window) udp_window="${2:?}"; shift 2 ;;
        --force) force=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        *) echo "cutover.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for n in "$weight" "$steps" "$step_wait" "$drop_slack" "$flows_below" "$flows_timeout" "$udp_window"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "cutover.sh: '$n' is not a whole number" >&2; exit 2; }
done
[[ -n "$from" && -n "$to" ]] || { echo "cutover.sh: --from and --to are required (try --help)" >&2; exit 2; }
((steps >= 1)) || { echo "cutover.sh: --steps must be at least 1" >&2; exit 2; }
IFS=, read -r -a old <<<"$from"
IFS=, read -r -a new <<<"$to"

need_vipgate
need jq jq
"$VIPGATE" check --config "$VIPGATE_CONFIG" >/dev/null || die "$VIPGATE_CONFIG fails vipgate check (above)"

say() { echo "cutover: $*"; }

stats="$(ctl_json stats)" || die "cannot reach the appliance (see above)"
# Every VIP of the running config with its backends (those removed since start left out).
vips_json="$(jq -c '[.vips[] | {vip, backends: [.backends[] | select(.state != "removed")]}]' <<<"$stats")"
known="$(jq -r '.[].backends[].backend' <<<"$vips_json" | sort -u)"
for b in "${old[@]}" "${new[@]}"; do
    grep -qxF -- "$b" <<<"$known" || die "backend $b is not in the running config: add the new site's backends to $VIPGATE_CONFIG (weight 0) and reload first"
done
olds_json="$(jq -cn --arg l "$from" '$l | split(",")')"
news_json="$(jq -cn --arg l "$to" '$l | split(",")')"

# The VIPs to move: those asked for, or every VIP that lists a new backend.
if ((${#asked_vips[@]} > 0)); then
    scope=()
    for v in "${asked_vips[@]}"; do
        name="$(ctl_json table "$v" | jq -r .vip)" || die "--vip $v: no such VIP (above)"
        scope+=("$name")
    done
    scope_json="$(printf '%s\n' "${scope[@]}" | jq -R . | jq -cs 'unique')"
else
    scope_json="$(jq -c --argjson n "$news_json" '[.[] | select(any(.backends[]; .backend as $b | any($n[]; . == $b))) | .vip]' <<<"$vips_json")"
fi
[[ "$(jq length <<<"$scope_json")" -gt 0 ]] || die "no VIP lists any of ${new[*]}: nothing to move"
mapfile -t moved < <(jq -r '.[]' <<<"$scope_json")
# Per VIP moved: the old and new backends it lists, each "VIP<TAB>BACKEND<TAB>WEIGHT".
pairs() {
    jq -r --argjson s "$scope_json" --argjson l "$1" '.[] | select(.vip as $v | any($s[]; . == $v)) | .vip as $v
        | .backends[] | select(.backend as $b | any($l[]; . == $b)) | "\($v)\t\(.backend)\t\(.weight)"' <<<"$vips_json"
}
mapfile -t old_pairs < <(pairs "$olds_json")
mapfile -t new_pairs < <(pairs "$news_json")

say "plan for $VIPGATE_CONFIG: ${old[*]} -> ${new[*]} in $steps step(s) of ${step_wait}s"
for v in "${moved[@]}"; do say "moves $v"; done
# VIPs left alone that list an old backend: they keep it.
jq -r --argjson s "$scope_json" --argjson o "$olds_json" --arg to "$to" '.[] | select(.vip as $v | any($s[]; . == $v) | not)
    | select(any(.backends[]; .backend as $b | any($o[]; . == $b)))
    | "cutover: leaves \(.vip) alone: " + (if any(.backends[]; .backend as $b | ($to | split(",")) | index($b))
        then "not among the VIPs asked for (--vip)" else "it lists none of the new backends (\($to))" end)' <<<"$vips_json"

# The end state must leave every VIP moved with a backend taking new flows: a new one (at
# a weight above 0) or another that already takes them and is not an old one.
problems="$(jq -r --argjson s "$scope_json" --argjson o "$olds_json" --argjson n "$news_json" --argjson w "$weight" '
    .[] | select(.vip as $v | any($s[]; . == $v))
    | [.backends[] | select(
        ((.backend as $b | any($n[]; . == $b)) and $w > 0)
        or ((.backend as $b | any($o[]; . == $b) or any($n[]; . == $b)) | not) and .state == "active" and .weight > 0)] as $keeps
    | select($keeps | length == 0)
    | "\(.vip) would keep no backend taking new flows (it would keep: \([.backends[] | .backend + " " + (if (.backend as $b | any($o[]; . == $b)) then "draining" elif .state != "active" then .state else "weight \(.weight)" end)] | join(", ")))"' <<<"$vips_json")"
if [[ -n "$problems" ]]; then
    while IFS= read -r p; do echo "cutover.sh: $p" >&2; done <<<"$problems"
    if ((force)); then
        say "--force: going on all the same"
    else
        die "refused: the end state would leave a VIP with no backend taking new flows (above); --force to mean it"
    fi
fi
for ob in "${old[@]}"; do
    grep -q "$(printf '\t')${ob}$(printf '\t')" < <(printf '%s\n' "${old_pairs[@]}") || die "old backend $ob is in none of the VIPs moved: nothing to move off it"
done

# The plan's end state, in a copy of the file: only the VIPs moved change.
end_state="$(mktemp --suffix=.toml)"
trap 'rm -f "$end_state"' EXIT
cp -- "$VIPGATE_CONFIG" "$end_state"
write_end_state() {
    local file="$1" v b w
    for p in "${new_pairs[@]}"; do
        IFS=$'\t' read -r v b w <<<"$p"
        "$VIPGATE" set-backend --config "$file" --vip "$v" "$b" --weight "$weight" --state active >/dev/null
    done
    for p in "${old_pairs[@]}"; do
        IFS=$'\t' read -r v b w <<<"$p"
        "$VIPGATE" set-backend --config "$file" --vip "$v" "$b" --state draining >/dev/null
    done
}
write_end_state "$end_state"
"$VIPGATE" diff "$VIPGATE_CONFIG" "$end_state"
for v in "${moved[@]}"; do
    for ((k = 1; k <= steps; k++)); do
        line="  $v step $k:"
        for p in "${new_pairs[@]}"; do
            IFS=$'\t' read -r pv b w <<<"$p"
            [[ "$pv" == "$v" ]] && line+=" $b=$((weight * k / steps))"
        done
        for p in "${old_pairs[@]}"; do
            IFS=$'\t' read -r pv b w <<<"$p"
            [[ "$pv" == "$v" ]] && line+=" $b=$((w * (steps - k) / steps))"
        done
        echo "$line"
    done
done
echo "  then: drain ${old[*]} in the VIPs moved, wait for their flows <= $flows_below (at most ${flows_timeout}s), write the end state"
if ((dry_run)); then
    say "dry run: nothing changed"
    exit 0
fi

drops() { jq '[.counters | to_entries[] | select(.key | startswith("drop_")) | .value] | add' <<<"$1"; }
new_packets() {
    jq --arg list "$to" '($list | split(",")) as $n | [.vips[].backends[] | select(.backend as $b | $n | index($b)) | .packets] | add // 0' <<<"$1"
}
rollback() {
    say "rolling back: $*"
    for b in "${new[@]}" "${old[@]}"; do "$here/undrain.sh" --config "$VIPGATE_CONFIG" "$b" >/dev/null || true; done
    die "rolled back to the config's weights: $*"
}

a="$(ctl_json stats)"
jq -r '.unseen // {} | to_entries[] | "cutover: note: \(.key) is not counted: \(.value)"' <<<"$a"
sleep "$step_wait"
b="$(ctl_json stats)"
baseline=$((($(drops "$b") - $(drops "$a")) / step_wait))
say "baseline: $baseline drops/s"

for ((k = 1; k <= steps; k++)); do
    for p in "${new_pairs[@]}"; do
        IFS=$'\t' read -r v b w <<<"$p"
        ctl weight "$b" "$((weight * k / steps))" --vip "$v" >/dev/null || rollback "setting $b's weight in $v failed"
    done
    for p in "${old_pairs[@]}"; do
        IFS=$'\t' read -r v b w <<<"$p"
        ctl weight "$b" "$((w * (steps - k) / steps))" --vip "$v" >/dev/null || rollback "setting $b's weight in $v failed"
    done
    a="$(ctl_json stats)"
    sleep "$step_wait"
    b="$(ctl_json stats)"
    rate=$((($(drops "$b") - $(drops "$a")) / step_wait))
    took=$(($(new_packets "$b") - $(new_packets "$a")))
    say "step $k/$steps: new backends took $took packets, $rate drops/s"
    ((rate <= baseline * 3 / 2 + drop_slack)) || rollback "drops rose from $baseline/s to $rate/s at step $k"
    ((took > 0)) || rollback "the new backends took no packets at step $k (are they down?)"
done

for p in "${old_pairs[@]}"; do
    IFS=$'\t' read -r v b w <<<"$p"
    ctl drain "$b" --vip "$v" >/dev/null || rollback "draining $b in $v failed"
done
# Flows are counted per VIP and backend: the wait is on the old backends' flows in the VIPs
# moved, not on their flows in VIPs left alone.
pairs_json="$(for p in "${old_pairs[@]}"; do IFS=$'\t' read -r v b w <<<"$p"; jq -n --arg v "$v" --arg b "$b" '{vip: $v, backend: $b}'; done | jq -s .)"
say "drained ${old[*]} in the VIPs moved; waiting for their open connections there (TCP established, UDP seen in ${udp_window}s) to fall to $flows_below"
deadline=$((SECONDS + flows_timeout))
while ((${#old_pairs[@]} > 0)); do
    live="$(ctl_json flows --udp-window "${udp_window}s" | jq --argjson pairs "$pairs_json" '[.vips[] | .vip as $v | .backends[] | .backend as $b | select(any($pairs[]; .vip == $v and .backend == $b)) | .tcp_established + .udp_recent] | add // 0')"
    ((live > flows_below)) || break
    if ((SECONDS >= deadline)); then
        say "$live open connections still on ${old[*]} in the VIPs moved after ${flows_timeout}s: they stay drained; the config file is unchanged (run again to finish)"
        exit 3
    fi
    sleep 1
done

write_end_state "$VIPGATE_CONFIG"
ctl reload >/dev/null
for b in "${new[@]}" "${old[@]}"; do "$here/undrain.sh" --config "$VIPGATE_CONFIG" "$b" >/dev/null || true; done
say "done: ${new[*]} at weight $weight, ${old[*]} draining, written to $VIPGATE_CONFIG (generation $(ctl_json status | jq .generation))"
