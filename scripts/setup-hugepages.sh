#!/usr/bin/env bash
# Reserves 2 MB hugepages and mounts hugetlbfs for vipgate's DPDK ports.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: setup-hugepages.sh --pages N [--mount DIR] [--dry-run]

Reserves N hugepages of 2 MB (vm.nr_hugepages; more is never taken away), mounts
hugetlbfs at DIR (default /dev/hugepages) unless something is mounted there already, and
checks that the pages are there (HugePages_Total in /proc/meminfo). N = 0 does nothing
(an appliance whose ports need no hugepages). Run as root. Safe to run twice.

  --pages N     2 MB pages to reserve in all (e.g. 1024 for 2 GiB)
  --mount DIR   where to mount hugetlbfs (default /dev/hugepages)
  --dry-run     say what would be done, do nothing
  -h, --help    this text

Exit: 0 the pages are there; 1 the kernel gave fewer (memory too fragmented: reserve at
boot with hugepages=N on the kernel command line), or not root.
USAGE
}

pages="" mount=/dev/hugepages dry_run=0
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --pages) pages="${2:?--pages needs a number}"; shift 2 ;;
        --mount) mount="${2:?--mount needs a directory}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        *) echo "setup-hugepages.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$pages" =~ ^[0-9]+$ ]] || { echo "setup-hugepages.sh: --pages N is required (try --help)" >&2; exit 2; }
((pages > 0)) || { echo "setup-hugepages.sh: 0 pages asked: nothing to do"; exit 0; }

have="$(cat /proc/sys/vm/nr_hugepages)"
mounted=0
if grep -qs " $mount hugetlbfs " /proc/mounts; then mounted=1; fi
if ((dry_run)); then
    if ((have >= pages)); then echo "would keep vm.nr_hugepages = $have (>= $pages)"; else echo "would set vm.nr_hugepages = $pages (now $have)"; fi
    if ((mounted)); then echo "hugetlbfs already mounted at $mount"; else echo "would mount hugetlbfs at $mount"; fi
    exit 0
fi
[[ "$(id -u)" -eq 0 ]] || { echo "setup-hugepages.sh: must run as root" >&2; exit 1; }
if ((have < pages)); then
    echo "$pages" >/proc/sys/vm/nr_hugepages
fi
if ((!mounted)); then
    mkdir -p -- "$mount"
    mount -t hugetlbfs nodev "$mount"
fi
total="$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo)"
if ((total < pages)); then
    echo "setup-hugepages.sh: asked for $pages hugepages, the kernel has $total: memory is too fragmented; reserve them at boot (hugepages=$pages on the kernel command line)" >&2
    exit 1
fi
echo "hugepages: $total x 2 MB reserved, hugetlbfs at $mount"
