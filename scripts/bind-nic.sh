#!/usr/bin/env bash
# Binds a NIC to a DPDK-capable kernel driver (vfio-pci), or gives it back to its own.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bind-nic.sh [--dry-run] --bind PCI [--driver vfio-pci]
       bind-nic.sh [--dry-run] --unbind PCI --driver KERNEL_DRIVER
       bind-nic.sh --status

Around dpdk-devbind.py (Debian package dpdk): --bind hands the NIC at PCI address PCI
(e.g. 0000:3b:00.0) to vfio-pci (loading the module first), so that DPDK can drive it;
the interface disappears from the kernel. --unbind gives it back to its kernel driver
(e.g. ice, i40e, mlx5_core). --status lists the NICs and their drivers. --dry-run prints
the commands and runs none. Binding what is already bound changes nothing.

Run as root. Do not bind the NIC you are logged in through.
USAGE
}

action="" pci="" driver="" dry_run=0
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --bind) action=bind; pci="${2:?--bind needs a PCI address}"; shift 2 ;;
        --unbind) action=unbind; pci="${2:?--unbind needs a PCI address}"; shift 2 ;;
        --driver) driver="${2:?--driver needs a name}"; shift 2 ;;
        --status) action=status; shift ;;
        --dry-run) dry_run=1; shift ;;
        *) echo "bind-nic.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[[ -n "$action" ]] || { usage >&2; exit 2; }
if [[ -n "$pci" && ! "$pci" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
    echo "bind-nic.sh: '$pci' is not a PCI address like 0000:3b:00.0" >&2
    exit 2
fi

run() {
    if ((dry_run)); then echo "would run: $*"; else "$@"; fi
}

devbind="$(command -v dpdk-devbind.py || true)"
if [[ -z "$devbind" ]]; then
    if ((dry_run)); then
        devbind=dpdk-devbind.py
    else
        echo "bind-nic.sh: dpdk-devbind.py not found (Debian package dpdk)" >&2
        exit 1
    fi
fi

case "$action" in
    status) run "$devbind" --status-dev net ;;
    bind)
        driver="${driver:-vfio-pci}"
        if [[ -e "/sys/bus/pci/devices/$pci/driver" && "$(basename "$(readlink "/sys/bus/pci/devices/$pci/driver")")" == "$driver" ]]; then
            echo "$pci is already bound to $driver"
            exit 0
        fi
        [[ "$driver" != vfio-pci ]] || run modprobe vfio-pci
        run "$devbind" --bind="$driver" "$pci"
        ;;
    unbind)
        [[ -n "$driver" ]] || { echo "bind-nic.sh: --unbind needs --driver KERNEL_DRIVER (e.g. ice)" >&2; exit 2; }
        run "$devbind" --bind="$driver" "$pci"
        ;;
esac
