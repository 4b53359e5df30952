#!/usr/bin/env bash
# Runs every check of vipgate on this machine: formatting, lints, all tests of the
# workspace, and shellcheck over the scripts. Installs the system packages the checks need
# when they are missing (as root, through apt).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/test.sh [--help]

Runs, from the repository root:
  cargo fmt --all --check
  cargo clippy --workspace --all-targets --locked -- -D warnings        (without DPDK's driver)
  cargo clippy --workspace --all-targets --locked --features vipgate-control/dpdk,vipgate-control/afxdp -- -D warnings
  cargo test --workspace --locked                        (engine/dpdk-sys and engine/afxdp-sys included)
  cargo test --locked -p vipgate-control --features dpdk --test dpdk     (on DPDK's virtual devices)
  cargo test --locked -p vipgate-control --features afxdp --test afxdp --test fleet
                                      (the afxdp driver and a fleet, on veth pairs in namespaces)
  shellcheck -x over scripts/*.sh, benches/*.sh, fuzz/run.sh and .ci/run
  fuzz/run.sh (every fuzz target, VIPGATE_FUZZ_SECONDS each, default 10; installs
  cargo-fuzz with cargo when missing)

System packages that are missing (shellcheck, C and C++ compilers, python3, jq, iproute2,
procps, util-linux, bird2, ethtool, iputils-ping, for the dpdk driver libdpdk-dev, dpdk-dev, clang and
pkg-config, and for the afxdp driver libxdp-dev and libbpf-dev) are installed with apt-get
when run as root; otherwise the script names them and stops.
The network tests create and remove their own namespaces, and DPDK's EAL and XDP programs
want root, so they need root (the dpdk and afxdp tests say SKIPPED when not). Exits non-zero on the first failure.
The last line adds up every cargo test ("N passed, M failed, K ignored") and says whether
every check passed, or where the run stopped. On 2 cores: about 6 to 7 minutes with the
build warm (345 s measured), longer from a cold build.
USAGE
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "") ;;
    *)
        echo "scripts/test.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# The tests signal the appliance with kill(1) (bash's builtin is no help to them).
[[ -x /bin/kill || -x /usr/bin/kill ]] || missing+=(procps)
# They run it under a small descriptor limit (prlimit) and as nobody (setpriv).
{ command -v prlimit && command -v setpriv; } >/dev/null 2>&1 || missing+=(util-linux)
command -v bird >/dev/null 2>&1 || missing+=(bird2)
# The dpdk driver: DPDK 22.11's headers and libraries (pkg-config finds them), its
# virtual devices' drivers, dpdk-testpmd for the benchmarks, and libclang for bindgen.
pkg-config --exists libdpdk 2>/dev/null || missing+=(libdpdk-dev pkg-config)
command -v dpdk-testpmd >/dev/null 2>&1 || missing+=(dpdk-dev)
command -v clang >/dev/null 2>&1 || missing+=(clang)
# The afxdp driver: libxdp's AF_XDP sockets and libbpf (pkg-config finds them); clang
# (above) builds its XDP filter. The tests turn checksum offload off with ethtool.
pkg-config --exists libxdp 2>/dev/null || missing+=(libxdp-dev pkg-config)
pkg-config --exists libbpf 2>/dev/null || missing+=(libbpf-dev pkg-config)
command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
if ((${#missing[@]} > 0)); then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "scripts/test.sh: missing packages: ${missing[*]}; install them or run as root" >&2
        exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for tool in cargo rustfmt cargo-clippy; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "scripts/test.sh: '$tool' not found: install the Rust toolchain with rustfmt and clippy" >&2
        exit 1
    fi
done

# Every cargo test's output goes through here as well, so that the run ends with one line
# that adds them up (and says where it stopped, if it did).
results="$(mktemp)"
started=$SECONDS
step="start"
summary() {
    local code=$? passed failed ignored
    read -r passed failed ignored < <(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { print p + 0, f + 0, i + 0 }' "$results")
    rm -f "$results"
    if ((code == 0)); then
        echo "scripts/test.sh: $passed passed, $failed failed, $ignored ignored; every check passed in $((SECONDS - started)) s"
    else
        echo "scripts/test.sh: $passed passed, $failed failed, $ignored ignored; FAILED at: $step (after $((SECONDS - started)) s)"
    fi
}
trap summary EXIT

step="cargo fmt --check"
echo "== cargo fmt --check" >&2
cargo fmt --all --check

step="cargo clippy"
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --features vipgate-control/dpdk,vipgate-control/afxdp -- -D warnings

step="shellcheck"
echo "== shellcheck" >&2
shellcheck -x scripts/*.sh benches/*.sh fuzz/run.sh .ci/run

step="cargo test"
echo "== cargo test" >&2
cargo test --workspace --locked 2>&1 | tee -a "$results"

step="the dpdk driver on virtual devices"
echo "== the dpdk driver on virtual devices" >&2
cargo test --locked -p vipgate-control --features dpdk --test dpdk 2>&1 | tee -a "$results"

step="the afxdp driver and a fleet on veth pairs"
echo "== the afxdp driver and a fleet on veth pairs" >&2
cargo test --locked -p vipgate-control --features afxdp --test afxdp --test fleet 2>&1 | tee -a "$results"

step="fuzz targets"
echo "== fuzz targets, ${VIPGATE_FUZZ_SECONDS:-10} s each" >&2
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fmt --manifest-path fuzz/Cargo.toml --check
fuzz/run.sh "${VIPGATE_FUZZ_SECONDS:-10}"
