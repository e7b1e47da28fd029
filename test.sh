#!/usr/bin/env bash
# test.sh: weft's test command (the README's second command; .ci/run runs
# exactly this). Runs from any directory, as root or through sudo, with or
# without a terminal, on Debian 12:
#
#   deps      installs what is missing with apt-get (`apt-get update` only
#             when something is missing)
#   format    clang-format --dry-run --Werror on every C file git knows of
#   build     three trees with Ninja and -DWEFT_WERROR=ON:
#               build/normal  RelWithDebInfo
#               build/asan    -DWEFT_SANITIZE=address,undefined
#               build/tsan    -DWEFT_SANITIZE=thread
#   tests     every Check suite of every tree, run directly (not through
#             ctest, which hides Check's summary) so that each suite's
#             "Checks: N, Failures: 0, Errors: 0" line reaches the log; any
#             sanitizer report is fatal. Then the example program.
#   install   installs the normal tree into a fresh prefix and builds
#             tests/consumer against it twice: with `pkg-config --cflags
#             --libs weft` and with CMake's find_package(weft)
#
# A failure does not stop the later steps (except those that need what
# failed): every suite runs, and the summary at the end lists every failure
# and the time each phase took. Exit status 0 only if everything passed.
#
# Environment (all optional):
#   WEFT_BUILD_DIR      where the trees go (default: ./build)
#   WEFT_TREES          which trees to build and test (default: normal asan tsan)
#   WEFT_SUITE_TIMEOUT  seconds one suite may run before it is killed (300)
#   JOBS                parallel build jobs (default: nproc)
#   WEFT_TEST_SEED      replays a stress test's seed (printed by each one)
#   ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS, LSAN_OPTIONS  appended to ours
set -uo pipefail # not -e: failures are collected, and the summary lists them

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT" || exit 1
BUILD=${WEFT_BUILD_DIR:-$ROOT/build}
read -r -a TREES <<<"${WEFT_TREES:-normal asan tsan}"
SUITE_TIMEOUT=${WEFT_SUITE_TIMEOUT:-300}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
CC=${CC:-cc}
export CC
# Check prints its summary line at "normal" verbosity; keep it so even if the
# caller's environment says otherwise.
export CK_VERBOSITY=normal

PACKAGES=(libck-dev libmimalloc-dev check cmake pkg-config ninja-build gcc
          libc6-dev clang-format git)

FAILURES=()    # one line per failure, for the summary
PHASES=()      # "name  seconds  status", for the summary
CHECK_LINES=() # each suite's Checks line, for the summary
declare -A BUILT=() # tree -> 1 when it configured and built

T_START=${EPOCHREALTIME/,/.}

fail()
{
    FAILURES+=("$*")
    echo "FAIL: $*" >&2
}

now()
{
    echo "${EPOCHREALTIME/,/.}"
}

since()
{
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

# phase NAME COMMAND...: run one phase, time it, note whether it failed.
phase()
{
    local name=$1
    shift
    local t0 nfail=${#FAILURES[@]}
    t0=$(now)
    printf '\n==================== %s ====================\n' "$name"
    "$@"
    local status=ok dt
    ((${#FAILURES[@]} > nfail)) && status=FAILED
    dt=$(since "$t0")
    PHASES+=("$(printf '%-16s %8ss  %s' "$name" "$dt" "$status")")
    printf -- '---- %s: %ss, %s\n' "$name" "$dt" "$status"
}

# ---------------------------------------------------------------------------
# deps: every package of PACKAGES that dpkg does not list as installed.
deps()
{
    if ! command -v dpkg-query >/dev/null; then
        echo "not a Debian system: not installing anything; hoping for the best"
        return
    fi
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        echo "all installed: ${PACKAGES[*]}"
        return
    fi
    echo "missing: ${missing[*]}"
    local sudo=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null; then
            fail "deps: missing ${missing[*]}; run as root or install them"
            return
        fi
        sudo=(sudo -n)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y)
    "${apt[@]}" update || { fail "deps: apt-get update"; return; }
    "${apt[@]}" install --no-install-recommends "${missing[@]}" ||
        fail "deps: apt-get install ${missing[*]}"
}

# ---------------------------------------------------------------------------
# format: the files git tracks, plus untracked ones it does not ignore.
format()
{
    local files=() bad=() f
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        while IFS= read -r -d '' f; do
            [[ -f $f ]] && files+=("$f") # a deleted file is still "tracked"
        done < <(git -C "$ROOT" ls-files -z -co --exclude-standard -- '*.c' '*.h')
    else
        while IFS= read -r -d '' f; do
            files+=("${f#./}")
        done < <(find . \( -path './build*' -o -path ./.git \) -prune -o \
            -type f \( -name '*.c' -o -name '*.h' \) -print0)
    fi
    echo "$(clang-format --version) on ${#files[@]} files"
    for f in "${files[@]}"; do
        clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
    done
    if ((${#bad[@]})); then
        printf '  not formatted: %s\n' "${bad[@]}"
        echo "  fix with: clang-format -i ${bad[*]}"
        fail "format: ${#bad[@]} file(s) differ from .clang-format: ${bad[*]}"
    fi
}

# ---------------------------------------------------------------------------
# build TREE: configure (again, which is cheap and picks up new files) and
# build one tree. The sanitizer trees skip weft-bench: it is built and its
# warnings checked in the normal tree, and the bench command runs it.
build()
{
    local tree=$1 dir=$BUILD/$1
    # Every option is given, so that a value cached by hand does not linger.
    local args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_WERROR=ON
                -DWEFT_TESTS=ON -DWEFT_EXAMPLES=ON)
    case $tree in
    normal) args+=(-DWEFT_SANITIZE= -DWEFT_BENCH=ON) ;;
    asan) args+=("-DWEFT_SANITIZE=address,undefined" -DWEFT_BENCH=OFF) ;;
    tsan) args+=(-DWEFT_SANITIZE=thread -DWEFT_BENCH=OFF) ;;
    *)
        fail "build: unknown tree '$tree' (WEFT_TREES: normal asan tsan)"
        return
        ;;
    esac
    # A tree configured by hand with another generator cannot be
    # reconfigured with Ninja: start it afresh.
    if [[ -f $dir/CMakeCache.txt ]] &&
        ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$dir/CMakeCache.txt"; then
        echo "$dir was configured with another generator; emptying it"
        rm -rf -- "$dir"
    fi
    echo "cmake -S $ROOT -B $dir ${args[*]}"
    if ! cmake -S "$ROOT" -B "$dir" "${args[@]}"; then
        fail "build/$tree: cmake configure"
        return
    fi
    if cmake --build "$dir" -j "$JOBS"; then
        BUILT[$tree]=1
        return
    fi
    fail "build/$tree: compile (see the errors above)"
    # So that a broken benchmark does not hide the tests' results: build
    # just the libraries, the suites and the examples, and if they build,
    # test them (the failure above stays in the summary).
    local targets=(weft weft_static)
    mapfile -t -O 2 targets < <(ninja -C "$dir" -t targets all |
        sed -En 's/^((tests|examples)\/[^/:]+): C_EXECUTABLE_LINKER.*/\1/p')
    echo "building only: ${targets[*]}"
    if ninja -C "$dir" -j "$JOBS" "${targets[@]}"; then
        BUILT[$tree]=1
    else
        fail "build/$tree: the library, the suites or the examples do not build"
    fi
}

# ---------------------------------------------------------------------------
# Sanitizer runtimes and this machine.
#
# gcc 12's TSan (and, on some kernels, ASan) maps its shadow memory at fixed
# addresses that assume at most 28 bits of mmap ASLR entropy. Kernels that
# raise vm.mmap_rnd_bits (32 on recent distributions) place libraries or the
# stack where the runtime wants its shadow, and the program dies at start with
# "FATAL: ThreadSanitizer: unexpected memory mapping" (ASan may instead hang
# or die with DEADLYSIGNAL). Newer runtimes re-exec themselves without ASLR;
# gcc 12's do not. So before running a sanitizer tree we start a trivial
# program built the same way; if it fails, we try it again under
# `setarch "$(uname -m)" -R` (ASLR off for that process tree only, no root,
# no system-wide sysctl) and, if that works, run the tree's suites that way.
RUNNER=() # prefix for the current tree's test commands

probe_src()
{
    cat <<'EOF'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static int shared;
static void *body(void *arg) { (void)arg; shared++; return malloc(16); }
int main(void)
{
    pthread_t t;
    void *p;
    if (pthread_create(&t, NULL, body, NULL) || pthread_join(t, &p))
        return 2;
    free(p);
    printf("probe ok %d\n", shared);
    return 0;
}
EOF
}

# probe_ok CMD...: the probe starts and exits cleanly three times in a row.
probe_ok()
{
    local _ out
    for _ in 1 2 3; do
        if ! out=$(timeout -k 5 30 "$@" 2>&1) || [[ $out != "probe ok 1" ]]; then
            printf '%s\n' "$out" | head -n 5 | sed 's/^/  probe: /'
            return 1
        fi
    done
}

# sanitizer_runner TREE: set RUNNER for TREE, or fail.
sanitizer_runner()
{
    local tree=$1 flags
    RUNNER=()
    case $tree in
    asan) flags=-fsanitize=address,undefined ;;
    tsan) flags=-fsanitize=thread ;;
    *) return 0 ;;
    esac
    local dir=$BUILD/probe
    mkdir -p "$dir"
    probe_src >"$dir/probe.c"
    if ! "$CC" $flags -g -o "$dir/probe-$tree" "$dir/probe.c" -pthread; then
        fail "$tree: cannot build a trivial $flags program"
        return 1
    fi
    if probe_ok "$dir/probe-$tree"; then
        echo "$tree runtime starts normally"
        return 0
    fi
    echo "$tree runtime does not start normally here" \
        "(vm.mmap_rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo ?));" \
        "trying without ASLR"
    if probe_ok setarch "$(uname -m)" -R "$dir/probe-$tree"; then
        echo "$tree suites run under: setarch $(uname -m) -R"
        RUNNER=(setarch "$(uname -m)" -R)
        return 0
    fi
    fail "$tree: the sanitizer runtime does not start on this machine, even" \
        "without ASLR (see the probe output above)"
    return 1
}

# The options that make every sanitizer report fatal. The caller's own
# options come last, so they can add to ours (or, knowingly, weaken them).
san_env()
{
    case $1 in
    asan)
        echo "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        echo "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
        [[ -n ${LSAN_OPTIONS:-} ]] && echo "LSAN_OPTIONS=$LSAN_OPTIONS"
        ;;
    tsan)
        echo "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
        ;;
    esac
}

# Lines that only a sanitizer prints. With the options above a report
# already kills the test, which Check counts as an error; this also catches
# a report inside a test that expects to die (the stack-overflow test).
SAN_REPORT='^==[0-9]+==ERROR: |^WARNING: ThreadSanitizer|^SUMMARY: [A-Za-z]+Sanitizer|runtime error: |^FATAL: ThreadSanitizer'

# run_suite TREE BINARY: one Check suite; its output goes to the log as is.
run_suite()
{
    local tree=$1 bin=$2 name=${2##*/}
    local log=$BUILD/logs/$tree-$name.log env=() line
    while IFS= read -r line; do env+=("$line"); done < <(san_env "$tree")
    printf '\n---- %s/%s\n' "$tree" "$name"
    local t0 rc
    t0=$(now)
    (cd "${bin%/*}" && env "${env[@]}" timeout -k 10 "$SUITE_TIMEOUT" \
        "${RUNNER[@]}" "$bin") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    echo "---- $tree/$name: exit $rc, $(since "$t0")s"

    local checks
    checks=$(grep -Eo 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log")
    if [[ -n $checks ]]; then
        while IFS= read -r line; do
            CHECK_LINES+=("$(printf '%-7s %-22s %s' "$tree" "$name" "$line")")
        done <<<"$checks"
    else
        CHECK_LINES+=("$(printf '%-7s %-22s %s' "$tree" "$name" "(no Checks line)")")
    fi
    if ((rc == 124 || rc == 137)); then
        fail "$tree/$name: killed after ${SUITE_TIMEOUT}s (WEFT_SUITE_TIMEOUT)"
    elif ((rc != 0)); then
        fail "$tree/$name: exit status $rc${checks:+ ($checks)}"
    elif [[ -z $checks ]]; then
        fail "$tree/$name: exit status 0 but no Checks line in its output"
    elif grep -Evq 'Failures: 0, Errors: 0$' <<<"$checks"; then
        fail "$tree/$name: exit status 0 but $checks"
    fi
    if grep -Eq "$SAN_REPORT" "$log"; then
        fail "$tree/$name: sanitizer report (grep -E '$SAN_REPORT' $log)"
    fi
}

# run_example TREE NAME REGEX: an example program exits 0 and prints a line
# matching REGEX (grep -E), with no sanitizer report.
run_example()
{
    local tree=$1 name=$2 want=$3 bin=$BUILD/$1/examples/$2 env=() line out rc
    [[ -x $bin ]] || return 0 # examples disabled in this tree
    while IFS= read -r line; do env+=("$line"); done < <(san_env "$tree")
    printf '\n---- %s/examples/%s\n' "$tree" "$name"
    out=$(env "${env[@]}" timeout -k 10 60 "${RUNNER[@]}" "$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    if ((rc != 0)) || ! grep -Eqx "$want" <<<"$out" ||
        grep -Eq "$SAN_REPORT" <<<"$out"; then
        fail "$tree/examples/$name: exit $rc, or no line '$want', or a sanitizer report"
    fi
}

# run_echo_example TREE: the README's echo server on a free port, 200
# fan-out clients (50 at once) against it, then SIGTERM; both exit 0 with
# no sanitizer report.
run_echo_example()
{
    local tree=$1 dir=$BUILD/$1/examples env=() line log port pid rc out
    [[ -x $dir/echo_server && -x $dir/fanout_client ]] || return 0
    while IFS= read -r line; do env+=("$line"); done < <(san_env "$tree")
    printf '\n---- %s/examples/echo_server + fanout_client\n' "$tree"
    log=$(mktemp)
    env "${env[@]}" timeout -k 10 60 "${RUNNER[@]}" "$dir/echo_server" \
        127.0.0.1 0 >"$log" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 200); do
        port=$(sed -n 's/.* port \([0-9][0-9]*\)$/\1/p' "$log")
        [[ -n $port ]] && break
        sleep 0.05
    done
    out=$(env "${env[@]}" timeout -k 10 60 "${RUNNER[@]}" \
        "$dir/fanout_client" 127.0.0.1 "${port:-0}" 200 50 2>&1)
    rc=$?
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" || rc=1
    out=$(cat "$log")$'\n'$out
    printf '%s\n' "$out"
    if ((rc != 0)) || [[ -z $port ]] || grep -Eq "$SAN_REPORT" <<<"$out"; then
        fail "$tree/examples/echo_server + fanout_client: exit status, no port, or a sanitizer report"
    fi
    rm -f "$log"
}

# The README's example, asyncio's first program (two one-second sleeps
# that overlap), and the echo server with its fan-out client.
run_examples()
{
    run_example "$1" spawn_join 'sum: 30'
    run_example "$1" hello 'took 1\.[0-1][0-9] s'
    run_echo_example "$1"
}

tests()
{
    local tree=$1 bins=() b
    if [[ -z ${BUILT[$tree]:-} ]]; then
        fail "tests/$tree: not run, the tree did not build"
        return
    fi
    sanitizer_runner "$tree" || return
    mkdir -p "$BUILD/logs"
    while IFS= read -r -d '' b; do
        bins+=("$b")
    done < <(find "$BUILD/$tree/tests" -maxdepth 1 -type f -name 'test_*' \
        -perm -u+x -print0 2>/dev/null | sort -z)
    if ((${#bins[@]} == 0)); then
        fail "tests/$tree: no test binaries in $BUILD/$tree/tests"
        return
    fi
    for b in "${bins[@]}"; do
        run_suite "$tree" "$b"
    done
    run_examples "$tree"
}

# ---------------------------------------------------------------------------
# install: what an application outside the tree sees.
CONSUMER_EXPECTED='weft consumer: 8 tasks joined, sum of squares 140'

# run_consumer HOW BINARY: it prints the expected line and uses the
# installed libweft, not one from the build tree or the system.
run_consumer()
{
    local how=$1 bin=$2 prefix=$3 out rc lib
    out=$(timeout -k 5 60 "$bin" 2>&1)
    rc=$?
    echo "$how consumer: $out"
    if ((rc != 0)) || [[ $out != "$CONSUMER_EXPECTED" ]]; then
        fail "install/$how: consumer exit $rc, printed '$out', expected '$CONSUMER_EXPECTED'"
    fi
    lib=$(ldd "$bin" | awk '$1 ~ /^libweft\.so/ { print $3 }')
    if [[ $lib != "$prefix"/* ]]; then
        fail "install/$how: consumer loads libweft from '$lib', not from $prefix"
    fi
}

install_check()
{
    if [[ -z ${BUILT[normal]:-} ]]; then
        fail "install: not run, the normal tree did not build"
        return
    fi
    local base=$BUILD/install prefix=$BUILD/install/prefix
    rm -rf -- "$base"
    mkdir -p "$base"
    if ! cmake --install "$BUILD/normal" --prefix "$prefix"; then
        fail "install: cmake --install --prefix $prefix"
        return
    fi

    # The shared library exports the public API and nothing else, so that
    # a missing `static` or `.hidden` (the assembly too) shows here. The one
    # exception is deliberate: sched/alloc.h exports the allocation-failure
    # hook for test programs.
    local so extra
    so=$(find "$prefix" -name 'libweft.so.*' -type f | head -n 1)
    if [[ -z $so ]] || ! find "$prefix" -name libweft.a | grep -q .; then
        fail "install: libweft.so.* or libweft.a missing under $prefix"
    else
        extra=$(nm -D --defined-only "$so" | awk '{ print $NF }' |
            grep -Ev '^(weft_[a-z]|_init$|_fini$|_edata$|_end$|__bss_start$)' |
            xargs)
        echo "exported: $(nm -D --defined-only "$so" | grep -c ' weft_') weft_* symbols${extra:+, and: $extra}"
        [[ -z $extra ]] || fail "install: libweft.so exports non-API symbols: $extra"
    fi

    # 1. pkg-config, with a plain compiler command line.
    local pc pcdir flags libdir
    pc=$(find "$prefix" -path '*/pkgconfig/weft.pc' | head -n 1)
    if [[ -z $pc ]]; then
        fail "install/pkg-config: no weft.pc under $prefix"
    else
        pcdir=${pc%/*}
        flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs weft)
        libdir=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir weft)
        echo "PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs weft: $flags"
        # shellcheck disable=SC2086 # flags are words
        if "$CC" -std=c11 -Wall -Wextra -Wstrict-prototypes -Werror \
            -o "$base/app-pkgconfig" "$ROOT/tests/consumer/main.c" $flags; then
            LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
                run_consumer pkg-config "$base/app-pkgconfig" "$prefix"
        else
            fail "install/pkg-config: the consumer does not build with: $flags"
        fi
    fi

    # 2. CMake: find_package(weft CONFIG REQUIRED) + weft::weft.
    local cdir=$base/consumer-cmake
    if cmake -S "$ROOT/tests/consumer" -B "$cdir" -G Ninja \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$prefix" &&
        cmake --build "$cdir"; then
        local found
        found=$(sed -n 's/^weft_DIR:PATH=//p' "$cdir/CMakeCache.txt")
        echo "find_package(weft) used $found"
        [[ $found == "$prefix"/* ]] ||
            fail "install/cmake: find_package(weft) found '$found', not the install in $prefix"
        run_consumer cmake "$cdir/app" "$prefix"
    else
        fail "install/cmake: the consumer does not configure or build"
    fi
}

# ---------------------------------------------------------------------------
summary()
{
    printf '\n==================== summary ====================\n'
    printf '%s\n' "${PHASES[@]}"
    printf '%-16s %8ss\n' total "$(since "$T_START")"
    if ((${#CHECK_LINES[@]})); then
        echo
        printf '%s\n' "${CHECK_LINES[@]}"
    fi
    echo
    if ((${#FAILURES[@]})); then
        echo "FAILED (${#FAILURES[@]}):"
        printf '  - %s\n' "${FAILURES[@]}"
        return 1
    fi
    echo "all passed"
}

echo "weft test.sh: trees ${TREES[*]}, $JOBS jobs, in $BUILD"
phase deps deps
if ((${#FAILURES[@]})); then
    summary
    exit 1
fi
phase format format
for t in "${TREES[@]}"; do
    phase "build/$t" build "$t"
done
for t in "${TREES[@]}"; do
    phase "tests/$t" tests "$t"
done
if [[ " ${TREES[*]} " == *" normal "* ]]; then
    phase install install_check
fi
summary
