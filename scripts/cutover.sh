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

Moves a running appliance from the old site's backends (OLD) to the new site's (NEW). The
new backends must already be in the config's VIPs (at weight 0, say). Then:
  1. prints the plan: `vipgate diff` of the config against its end state, and the steps;
  2. measures the drop rate for one step's time, as a baseline;
  3. in STEPS steps, raises the new backends' weight to WEIGHT and lowers the old ones'
     to 0 (runtime overrides); after each step waits STEP_WAIT seconds and checks that
     the new backends took packets and that drops did not rise above the baseline
     (more than half again plus DROP_SLACK per second): otherwise it rolls back (every
     override of OLD and NEW removed: the config's weights again) and exits 1;
  4. drains the old backends and waits until their live flows fall to FLOWS_BELOW or
     FLOWS_TIMEOUT passes (their established flows stay on them meanwhile);
  5. writes the end state to the config file (NEW at WEIGHT and active, OLD draining),
     reloads it, and removes the overrides: a restart keeps the new state.

  --from LIST            old backends, comma-separated (ADDRESS or ADDRESS:PORT)
  --to LIST              new backends, comma-separated
  --config FILE          the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  --weight N             the new backends' final weight (default 100)
  --steps N              how many steps (default 4)
  --step-wait SECONDS    time per step, and for the baseline (default 30)
  --drop-slack N         drops per second tolerated above 1.5 x the baseline (default 10)
  --flows-below N        old backends' live flows to wait for (default 0)
  --flows-timeout SECONDS  longest wait for them (default 900)
  --dry-run              print the plan and change nothing
  -h, --help             this text

Exit: 0 done; 1 rolled back or failed (the reason on stderr), 2 bad arguments; 3 done
but the old backends still carry more than FLOWS_BELOW flows (they stay drained, the
config file is not changed: run again later). Safe to run twice: a second run converges
on the same end state.
USAGE
}

from="" to="" weight=100 steps=4 step_wait=30 drop_slack=10 flows_below=0 flows_timeout=900 dry_run=0
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --from) from="${2:?--from needs backends}"; shift 2 ;;
        --to) to="${2:?--to needs backends}"; shift 2 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --weight) weight="${2:?}"; shift 2 ;;
        --steps) steps="${2:?}"; shift 2 ;;
        --step-wait) step_wait="${2:?}"; shift 2 ;;
        --drop-slack) drop_slack="${2:?}"; shift 2 ;;
        --flows-below) flows_below="${2:?}"; shift 2 ;;
        --flows-timeout) flows_timeout="${2:?}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        *) echo "cutover.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for n in "$weight" "$steps" "$step_wait" "$drop_slack" "$flows_below" "$flows_timeout"; do
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
known="$(jq -r '.vips[].backends[].backend' <<<"$stats" | sort -u)"
for b in "${old[@]}" "${new[@]}"; do
    grep -qxF -- "$b" <<<"$known" || die "backend $b is not in the running config: add the new site's backends to $VIPGATE_CONFIG (weight 0) and reload first"
done

# Each old backend's weight now, to scale down from.
declare -A old_weight
for b in "${old[@]}"; do
    old_weight[$b]="$(jq -r --arg b "$b" '[.vips[].backends[] | select(.backend == $b) | .weight] | max' <<<"$stats")"
done

# The plan.
end_state="$(mktemp --suffix=.toml)"
trap 'rm -f "$end_state"' EXIT
cp -- "$VIPGATE_CONFIG" "$end_state"
for b in "${new[@]}"; do "$VIPGATE" set-backend --config "$end_state" "$b" --weight "$weight" --state active >/dev/null; done
for b in "${old[@]}"; do "$VIPGATE" set-backend --config "$end_state" "$b" --state draining >/dev/null; done
say "plan for $VIPGATE_CONFIG: ${old[*]} -> ${new[*]} in $steps step(s) of ${step_wait}s"
"$VIPGATE" diff "$VIPGATE_CONFIG" "$end_state"
for ((k = 1; k <= steps; k++)); do
    line="  step $k:"
    for b in "${new[@]}"; do line+=" $b=$((weight * k / steps))"; done
    for b in "${old[@]}"; do line+=" $b=$((old_weight[$b] * (steps - k) / steps))"; done
    echo "$line"
done
echo "  then: drain ${old[*]}, wait for their flows <= $flows_below (at most ${flows_timeout}s), write the end state"
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
sleep "$step_wait"
b="$(ctl_json stats)"
baseline=$((($(drops "$b") - $(drops "$a")) / step_wait))
say "baseline: $baseline drops/s"

for ((k = 1; k <= steps; k++)); do
    for nb in "${new[@]}"; do ctl weight "$nb" "$((weight * k / steps))" >/dev/null || rollback "setting $nb's weight failed"; done
    for ob in "${old[@]}"; do ctl weight "$ob" "$((old_weight[$ob] * (steps - k) / steps))" >/dev/null || rollback "setting $ob's weight failed"; done
    a="$(ctl_json stats)"
    sleep "$step_wait"
    b="$(ctl_json stats)"
    rate=$((($(drops "$b") - $(drops "$a")) / step_wait))
    took=$(($(new_packets "$b") - $(new_packets "$a")))
    say "step $k/$steps: new backends took $took packets, $rate drops/s"
    ((rate <= baseline * 3 / 2 + drop_slack)) || rollback "drops rose from $baseline/s to $rate/s at step $k"
    ((took > 0)) || rollback "the new backends took no packets at step $k (are they down?)"
done

for ob in "${old[@]}"; do ctl drain "$ob" >/dev/null; done
say "drained ${old[*]}; waiting for their flows to fall to $flows_below"
deadline=$((SECONDS + flows_timeout))
while :; do
    live="$(ctl_json flows | jq --arg list "$from" '($list | split(",")) as $o | [.backends[] | select(.backend as $b | $o | index($b)) | .flows] | add // 0')"
    ((live > flows_below)) || break
    if ((SECONDS >= deadline)); then
        say "$live flows still on ${old[*]} after ${flows_timeout}s: they stay drained; the config file is unchanged (run again to finish)"
        exit 3
    fi
    sleep 1
done

for nb in "${new[@]}"; do "$VIPGATE" set-backend --config "$VIPGATE_CONFIG" "$nb" --weight "$weight" --state active >/dev/null; done
for ob in "${old[@]}"; do "$VIPGATE" set-backend --config "$VIPGATE_CONFIG" "$ob" --state draining >/dev/null; done
ctl reload >/dev/null
for b in "${new[@]}" "${old[@]}"; do "$here/undrain.sh" --config "$VIPGATE_CONFIG" "$b" >/dev/null; done
say "done: ${new[*]} at weight $weight, ${old[*]} draining, written to $VIPGATE_CONFIG (generation $(ctl_json status | jq .generation))"
