#!/usr/bin/env bash
# Undoes drain.sh (and any weight override) for a backend on the running appliance.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: undrain.sh [--config FILE] BACKEND

Removes the runtime overrides of BACKEND (drain, weight): it takes new flows again as the
config file says.

  --config FILE   the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  -h, --help      this text

Exit: 0 done, or nothing to undo; 1 failed (the reason on stderr).
USAGE
}

backend=""
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        -*) echo "undrain.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
        *) [[ -z "$backend" ]] || { echo "undrain.sh: one BACKEND only" >&2; exit 2; }; backend="$1"; shift ;;
    esac
done
[[ -n "$backend" ]] || { usage >&2; exit 2; }

need_vipgate
need jq jq
overrides="$(ctl_json status | jq -r '.overrides.drained[], (.overrides.weights | keys[])')"
if ! grep -qxF -- "$backend" <<<"$overrides"; then
    echo "undrain.sh: $backend has no override; nothing to do"
    exit 0
fi
ctl undrain "$backend"
