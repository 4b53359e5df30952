#!/usr/bin/env bash
# Runs every fuzz target for a while, each from its committed seeds (fuzz/seeds/TARGET)
# and its working corpus (fuzz/corpus/TARGET, not committed).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: fuzz/run.sh SECONDS [TARGET...]

Runs each fuzz target (default: all of wire, pipeline_frame, pipeline_burst, lanes,
config, ctl_request, capture) for SECONDS with libFuzzer, through cargo-fuzz on the stable toolchain
(--sanitizer none: Rust's own checks catch out-of-bounds; there is no unsafe code on
these paths but the prefetch hints). New inputs go to fuzz/corpus/TARGET; a crash stops
the script, leaves its reproducer in fuzz/artifacts/TARGET/ and exits 1. Prints one line
per target: runs, coverage (libFuzzer's cov: points), corpus size.

Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler (g++).
USAGE
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "" ) usage >&2; exit 2 ;;
esac
seconds="$1"
shift
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz/run.sh: '$seconds' is not a number of seconds" >&2; exit 2; }
targets=("$@")
((${#targets[@]} > 0)) || targets=(wire pipeline_frame pipeline_burst lanes config ctl_request capture)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz/run.sh: needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2; exit 1; }

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$(mktemp)"
    if ! cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=9000 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz/run.sh: $t failed; reproducer in fuzz/artifacts/$t/" >&2
        rm -f "$log"
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')"
    echo "$t: ${seconds}s clean, $runs runs, cov $cov, corpus $(find "corpus/$t" -type f | wc -l) inputs"
    rm -f "$log"
done
