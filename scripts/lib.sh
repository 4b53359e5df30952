#!/usr/bin/env bash
# Shared by vipgate's operator scripts (sourced, not run): where the binary and the config
# are, how to talk to the running engine, how to fail.
#
#   VIPGATE         the vipgate binary (default: vipgate on PATH)
#   VIPGATE_CONFIG  the appliance's config file (default: /etc/vipgate/vipgate.toml); the
#                   scripts' --config sets it, and the operator socket is taken from it

VIPGATE="${VIPGATE:-vipgate}"
VIPGATE_CONFIG="${VIPGATE_CONFIG:-/etc/vipgate/vipgate.toml}"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# need TOOL PACKAGE: stop with a clear message when TOOL is missing.
need() {
    command -v "$1" >/dev/null 2>&1 || die "needs '$1' (Debian package $2)"
}

need_vipgate() {
    command -v "$VIPGATE" >/dev/null 2>&1 || die "vipgate not found: put it on PATH or set VIPGATE=/path/to/vipgate"
}

ctl() {
    "$VIPGATE" ctl --config "$VIPGATE_CONFIG" "$@"
}

ctl_json() {
    "$VIPGATE" ctl --config "$VIPGATE_CONFIG" --json "$@"
}
