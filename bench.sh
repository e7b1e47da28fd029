#!/bin/sh
# The README's bench command: install what is missing from Debian, build
# weft-bench and the Go references in build-bench (Release), and run the
# comparative benchmark. Arguments go to weft-bench, e.g.
#   ./bench.sh                     the default run (a few minutes)
#   ./bench.sh --full              the large sizes
#   ./bench.sh --only fib,spawn    some workloads
#   ./bench.sh fib --mode weft --workers 2 --n 30    one cell
#   ./bench.sh --report            the default run, written to bench/results/
#                                  (CSV, PNGs, results.md) and into the
#                                  README's Results section
# Works as root on a fresh Debian 12 with no terminal; as another user it
# uses sudo for apt-get when something is missing.
set -eu

cd "$(dirname "$0")"
root=$(pwd)
build="$root/build-bench"

packages="libck-dev libmimalloc-dev check cmake pkg-config ninja-build gcc
libc6-dev golang-go python3 python3-uvloop gnuplot-nox libboost-context-dev"

missing=""
for p in $packages; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "bench.sh: installing:$missing" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    $sudo apt-get install -y -q --no-install-recommends $missing
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DWEFT_TESTS=OFF -DWEFT_EXAMPLES=OFF >&2
ninja -C "$build" weft-bench weft-bench-noobs bench-go >&2

for a in "$@"; do
    shift
    if [ "$a" = --report ]; then
        set -- "$@" --out bench/results --readme README.md
    else
        set -- "$@" "$a"
    fi
done
exec "$build/bench/weft-bench" "$@"
