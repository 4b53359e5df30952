#!/usr/bin/env bash
# Drains a backend on the running appliance: no new flows, established flows stay.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: drain.sh [--config FILE] [--vip VIP] [--force] BACKEND

Drains BACKEND (ADDRESS, or ADDRESS:PORT) in every VIP that has it, or with --vip in that
VIP alone: it takes no new flows, and its established flows stay until they end. The
drain is a runtime override: it is saved in the appliance's state file, survives reloads
and restarts until undrain.sh, and `vipgate ctl status` shows it. It is not written to
the config file (cutover.sh does that at the end of a migration).

A drain that would leave a VIP with no backend taking new flows is refused, naming the
VIP and what it would keep; --force drains all the same.

  --config FILE   the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  --vip VIP       drain it in this VIP only (ADDRESS[:PORT][/PROTOCOL] or its name)
  --force         drain even though a VIP would keep no backend taking new flows
  -h, --help      this text

Exit: 0 drained (also when it already was); 1 failed (the reason on stderr).
USAGE
}

backend="" extra=()
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --vip) extra+=(--vip "${2:?--vip needs a VIP}"); shift 2 ;;
        --force) extra+=(--force); shift ;;
        -*) echo "drain.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
        *) [[ -z "$backend" ]] || { echo "drain.sh: one BACKEND only" >&2; exit 2; }; backend="$1"; shift ;;
    esac
done
[[ -n "$backend" ]] || { usage >&2; exit 2; }

need_vipgate
ctl drain "$backend" "${extra[@]}"
