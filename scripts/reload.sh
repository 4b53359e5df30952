#!/usr/bin/env bash
# Reloads the running appliance's config, after `vipgate check` has passed it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: reload.sh [--config FILE]

Checks FILE with `vipgate check`; when it passes, asks the running appliance to reload it
(`vipgate ctl reload`), which answers once every worker runs the new config. A config that
fails the check is refused here, and the running one stays.

  --config FILE   the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  -h, --help      this text

Exit: 0 reloaded; 1 refused or failed (the reason on stderr). Safe to run twice.
USAGE
}

while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        *) echo "reload.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

need_vipgate
if ! "$VIPGATE" check --config "$VIPGATE_CONFIG" >/dev/null; then
    die "refused: $VIPGATE_CONFIG fails vipgate check (above); the running config stays"
fi
ctl reload
