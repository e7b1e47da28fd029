/* The Go and Python references: where they are and how they are called.
 *
 * Go programs are built by the CMake target bench-go into
 * WEFT_BENCH_GO_DIR (one binary per workload); Python scripts are run from
 * WEFT_BENCH_PY_DIR with Debian's interpreter named by path, because the
 * python3 first on PATH may be another build without uvloop. Environment
 * variables of the same names override all three (WEFT_BENCH_PYTHON for
 * the interpreter). Both take the same options as a weft-bench cell and
 * print the same RESULT line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/driver.h"

#ifndef WEFT_BENCH_GO_DIR
#define WEFT_BENCH_GO_DIR "bench/go-bin"
#endif
#ifndef WEFT_BENCH_PY_DIR
#define WEFT_BENCH_PY_DIR "bench/py"
#endif

static const char *setting(const char *env, const char *def)
{
    const char *v = getenv(env);
    return v && *v ? v : def;
}

bool bench_mode_is_ref(const char *mode)
{
    return strcmp(mode, "go") == 0 || strcmp(mode, "asyncio") == 0 ||
           strcmp(mode, "uvloop") == 0;
}

const char *bench_python(void)
{
    return setting("WEFT_BENCH_PYTHON", "/usr/bin/python3");
}

/* Whether `python -c "import uvloop"` works; asked once. */
static bool have_uvloop(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(bench_python(), bench_python(), "-c", "import uvloop",
              (char *)NULL);
        _exit(127);
    }
    int status = 1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    known = pid > 0 && status == 0;
    return known;
}

bool bench_ref_available(const struct bench_cell *cell, char *why, size_t len)
{
    char path[512];
    if (strcmp(cell->mode, "go") == 0) {
        snprintf(path, sizeof path, "%s/%s",
                 setting("WEFT_BENCH_GO_DIR", WEFT_BENCH_GO_DIR),
                 cell->workload);
        if (access(path, X_OK) == 0)
            return true;
        snprintf(why, len,
                 "go: skipped, %s is not built (needs golang-go; "
                 "./bench.sh builds it with the target bench-go)",
                 path);
        return false;
    }
    snprintf(path, sizeof path, "%s/%s.py",
             setting("WEFT_BENCH_PY_DIR", WEFT_BENCH_PY_DIR), cell->workload);
    if (access(bench_python(), X_OK) < 0) {
        snprintf(why, len, "%s: skipped, no %s (Debian: python3)", cell->mode,
                 bench_python());
        return false;
    }
    if (access(path, R_OK) < 0) {
        snprintf(why, len, "%s: skipped, no %s", cell->mode, path);
        return false;
    }
    if (strcmp(cell->mode, "uvloop") == 0 && !have_uvloop()) {
        snprintf(why, len,
                 "uvloop: skipped, %s cannot import uvloop (Debian: "
                 "python3-uvloop)",
                 bench_python());
        return false;
    }
    return true;
}

void bench_ref_argv(const struct bench_cell *cell, char *argv[16],
                    char buf[8][256])
{
    int i = 0;
    if (strcmp(cell->mode, "go") == 0) {
        snprintf(buf[0], sizeof buf[0], "%s/%s",
                 setting("WEFT_BENCH_GO_DIR", WEFT_BENCH_GO_DIR),
                 cell->workload);
        argv[i++] = buf[0];
    } else {
        snprintf(buf[0], sizeof buf[0], "%s", bench_python());
        snprintf(buf[1], sizeof buf[1], "%s/%s.py",
                 setting("WEFT_BENCH_PY_DIR", WEFT_BENCH_PY_DIR),
                 cell->workload);
        argv[i++] = buf[0];
        argv[i++] = "-B"; /* no __pycache__ in the source tree */
        argv[i++] = buf[1];
        argv[i++] = "--loop";
        argv[i++] = (char *)cell->mode;
    }
    snprintf(buf[2], sizeof buf[2], "%u", cell->workers);
    snprintf(buf[3], sizeof buf[3], "%llu", (unsigned long long)cell->n);
    snprintf(buf[4], sizeof buf[4], "%u", cell->cutoff);
    snprintf(buf[5], sizeof buf[5], "%u", cell->parties);
    argv[i++] = "--workers";
    argv[i++] = buf[2];
    argv[i++] = "--n";
    argv[i++] = buf[3];
    argv[i++] = "--cutoff";
    argv[i++] = buf[4];
    argv[i++] = "--parties";
    argv[i++] = buf[5];
    argv[i] = NULL;
}
