#!/usr/bin/env bash
# Reloads the running appliance's config, after `vipgate check` has passed it and the
# change has been shown.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: reload.sh [--config FILE] [--allow-removals]

Checks FILE with `vipgate check`, shows what a reload would change against the running
tables (`vipgate ctl reload --dry-run`: per VIP the slots that move, what would be
removed, what needs a restart), then asks the running appliance to reload it
(`vipgate ctl reload`), which answers once every worker runs the new config.

A config that fails the check is refused here. A reload that would remove a VIP or a
subnet, or leave a VIP with no backend taking new flows, is refused by the appliance
and named; the running config stays. Pass --allow-removals to apply such a change on
purpose. Keys that only a restart applies (workers, the port, [control] socket ...) are
named; the rest is applied.

  --config FILE       the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  --allow-removals    apply it even though it removes VIPs or subnets (never the default)
  -h, --help          this text

Exit: 0 reloaded; 1 refused or failed (the reason on stderr). Safe to run twice.
USAGE
}

allow=()
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --allow-removals) allow=(--allow-removals); shift ;;
        *) echo "reload.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

need_vipgate
if ! "$VIPGATE" check --config "$VIPGATE_CONFIG" >/dev/null; then
    die "refused: $VIPGATE_CONFIG fails vipgate check (above); the running config stays"
fi
echo "== what the reload changes (vipgate ctl reload --dry-run)"
ctl reload --dry-run || die "cannot show the change; nothing reloaded"
echo "== reload"
ctl reload "${allow[@]}"
