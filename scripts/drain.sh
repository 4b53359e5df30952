#!/usr/bin/env bash
# Drains a backend on the running appliance: no new flows, established flows stay.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'USAGE'
Usage: drain.sh [--config FILE] BACKEND

Drains BACKEND (ADDRESS, or ADDRESS:PORT) in every VIP that has it: it takes no new flows,
and its established flows stay until they end. The drain is a runtime override: it
survives reloads until undrain.sh, and `vipgate ctl status` shows it. It is not written
to the config file (cutover.sh does that at the end of a migration).

  --config FILE   the appliance's config (default: $VIPGATE_CONFIG or /etc/vipgate/vipgate.toml)
  -h, --help      this text

Exit: 0 drained (also when it already was); 1 failed (the reason on stderr).
USAGE
}

backend=""
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --config) VIPGATE_CONFIG="${2:?--config needs a file}"; shift 2 ;;
        -*) echo "drain.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
        *) [[ -z "$backend" ]] || { echo "drain.sh: one BACKEND only" >&2; exit 2; }; backend="$1"; shift ;;
    esac
done
[[ -n "$backend" ]] || { usage >&2; exit 2; }

need_vipgate
ctl drain "$backend"
