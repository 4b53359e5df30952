#!/usr/bin/env bash
# Installs vipgate: the binary, the operator scripts, the systemd unit, a first config.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<'USAGE'
Usage: install.sh [--binary PATH] [--prefix DIR] [--root DIR] [--no-systemd] [--dry-run]

Installs:
  PREFIX/bin/vipgate                    the binary (default: target/release/vipgate)
  PREFIX/lib/vipgate/*.sh               the operator scripts (reload, drain, undrain,
                                        status, cutover, setup-hugepages, bind-nic)
  /etc/systemd/system/vipgate.service   the unit (restart on failure; hugepages and the
                                        socket directory before start; reload = reload.sh)
  /etc/vipgate/vipgate.toml             configs/example.toml, only if there is none
  /etc/default/vipgate                  the unit's settings, only if there is none
then runs `systemctl daemon-reload` (not with --root or --no-systemd). An existing config
or settings file is never overwritten. Safe to run twice.

  --binary PATH   the vipgate binary to install
  --prefix DIR    default /usr/local
  --root DIR      install under DIR instead of / (for packaging and tests)
  --no-systemd    do not call systemctl
  --dry-run       say what would be done, do nothing
  -h, --help      this text
USAGE
}

binary="$here/../target/release/vipgate" prefix=/usr/local root="" systemd=1 dry_run=0
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --root) root="${2:?--root needs a directory}"; systemd=0; shift 2 ;;
        --no-systemd) systemd=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        *) echo "install.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[[ -x "$binary" ]] || { echo "install.sh: no binary at $binary: cargo build --release first (with --features dpdk for NICs), or give --binary" >&2; exit 1; }

run() {
    if ((dry_run)); then echo "would: $*"; else "$@"; fi
}

run install -d "$root$prefix/bin" "$root$prefix/lib/vipgate" "$root/etc/systemd/system" "$root/etc/vipgate" "$root/etc/default"
run install -m 0755 "$binary" "$root$prefix/bin/vipgate"
for s in lib reload drain undrain status cutover setup-hugepages bind-nic; do
    run install -m 0755 "$here/$s.sh" "$root$prefix/lib/vipgate/$s.sh"
done
unit="$(sed "s#@PREFIX@#$prefix#g" "$here/vipgate.service")"
if ((dry_run)); then
    echo "would write $root/etc/systemd/system/vipgate.service"
else
    printf '%s\n' "$unit" >"$root/etc/systemd/system/vipgate.service"
fi
if [[ -e "$root/etc/vipgate/vipgate.toml" ]]; then
    echo "keeping $root/etc/vipgate/vipgate.toml"
else
    run install -m 0640 "$here/../configs/example.toml" "$root/etc/vipgate/vipgate.toml"
fi
if [[ -e "$root/etc/default/vipgate" ]]; then
    echo "keeping $root/etc/default/vipgate"
elif ((dry_run)); then
    echo "would write $root/etc/default/vipgate"
else
    cat >"$root/etc/default/vipgate" <<'DEFAULTS'
# Settings of vipgate.service.
VIPGATE_CONFIG=/etc/vipgate/vipgate.toml
# 2 MB hugepages to reserve before start (DPDK ports); 0 for none.
VIPGATE_HUGEPAGES=0
DEFAULTS
fi
if ((systemd)) && command -v systemctl >/dev/null 2>&1; then
    run systemctl daemon-reload
fi
echo "installed vipgate under ${root:-/} (prefix $prefix)"
