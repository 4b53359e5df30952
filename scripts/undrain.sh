#!/usr/bin/env bash
# Undoes drain.sh (and any weight override) for a backend on the running appliance.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: undrain.sh [--config FILE] [--vip VIP] BACKEND

Removes the runtime overrides of BACKEND (drain, weight): it takes new flows again as the
config file says. Without --vip, every override of the backend goes (those for every VIP
and those for one); with --vip, those made for that VIP.

  --config FILE   the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  --vip VIP       only the overrides made for this VIP (ADDRESS[:PORT][/PROTOCOL] or its name)
  -h, --help      this text

Exit: 0 done, or nothing to undo; 1 failed (the reason on stderr).
USAGE
}

backend="" vip=()
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --vip) vip=(--vip "${2:?--vip needs a VIP}"); shift 2 ;;
        -*) echo "undrain.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
        *) [[ -z "$backend" ]] || { echo "undrain.sh: one BACKEND only" >&2; exit 2; }; backend="$1"; shift ;;
    esac
done
[[ -n "$backend" ]] || { usage >&2; exit 2; }

need_vipgate
need jq jq
# Overrides read "BACKEND" (every VIP) or "BACKEND in VIP".
overrides="$(ctl_json status | jq -r '.overrides.drained[], (.overrides.weights | keys[])' | sed 's/ in .*//')"
if ! grep -qxF -- "$backend" <<<"$overrides"; then
    echo "undrain.sh: $backend has no override; nothing to do"
    exit 0
fi
ctl undrain "$backend" "${vip[@]}"
