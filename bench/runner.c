/* Run one cell's command as a child process and collect what it measured.
 *
 * The child gets its own process group (so a timeout kills its forked
 * helpers too), /dev/null as stdin, a pipe as stdout and our stderr. Its
 * RESULT line is kept; any other stdout line is passed on to stderr. Peak
 * RSS comes from wait4(), so each cell's figure is its own (for a cell
 * that forks, the largest of its processes, not their sum).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/driver.h"

static void child_exec(char *const argv[], int out_fd)
{
    setpgid(0, 0);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0)
        dup2(null, 0);
    dup2(out_fd, 1);
    execv(argv[0], argv);
    fprintf(stderr, "weft-bench: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Consume the complete lines in buf[0..*len), keeping a RESULT line. */
static void take_lines(char *buf, size_t *len, struct bench_child *out)
{
    char *start = buf, *nl;
    while ((nl = memchr(start, '\n', *len - (size_t)(start - buf)))) {
        *nl = '\0';
        if (strncmp(start, "RESULT ", 7) == 0) {
            size_t n = strlen(start);
            n = n < sizeof out->line ? n : sizeof out->line - 1;
            memcpy(out->line, start, n);
            out->line[n] = '\0';
        } else {
            fprintf(stderr, "%s\n", start);
        }
        start = nl + 1;
    }
    *len -= (size_t)(start - buf);
    memmove(buf, start, *len);
}

/* Read the child's stdout until end of file or the deadline. */
static void read_output(int fd, int64_t deadline, struct bench_child *out)
{
    char buf[4096];
    size_t len = 0;
    for (;;) {
        int64_t left_ms = (deadline - bench_now_ns()) / 1000000;
        if (left_ms <= 0) {
            out->timed_out = true;
            return;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int k = poll(&p, 1, left_ms > 1000 ? 1000 : (int)left_ms);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            continue;
        if (len == sizeof buf - 1)
            len = 0; /* an absurdly long line: drop it */
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        take_lines(buf, &len, out);
    }
    if (len > 0) {
        buf[len++] = '\n';
        take_lines(buf, &len, out);
    }
}

double bench_busy_seconds(void)
{
    unsigned long long v[8];
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                     &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got != 8)
        return -1;
    /* user nice system idle iowait irq softirq steal: all but idle and
     * iowait. Steal counts: the hypervisor gave that time to others. */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double tv_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Other processes' share of the CPUs while the child ran. */
static double others_pct(double busy0, const struct rusage *ru, double wall)
{
    double busy1 = bench_busy_seconds();
    if (busy0 < 0 || busy1 < 0 || wall <= 0)
        return -1;
    double others =
        busy1 - busy0 - tv_seconds(ru->ru_utime) - tv_seconds(ru->ru_stime);
    double pct = 100.0 * others / (wall * (double)bench_cpus());
    return pct < 0 ? 0 : pct;
}

int bench_child_run(char *const argv[], double timeout_s,
                    struct bench_child *out)
{
    memset(out, 0, sizeof *out);
    double busy0 = bench_busy_seconds();
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    int64_t t0 = bench_now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    if (pid == 0)
        child_exec(argv, fds[1]);
    setpgid(pid, pid); /* also here, so that the kill below cannot miss */
    close(fds[1]);
    read_output(fds[0], t0 + (int64_t)(timeout_s * 1e9), out);
    if (out->timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    close(fds[0]);
    struct rusage ru;
    while (wait4(pid, &out->status, 0, &ru) < 0)
        if (errno != EINTR)
            return -errno;
    /* Helpers the cell forked and left behind would keep running. */
    kill(-pid, SIGKILL);
    out->wall_s = (double)(bench_now_ns() - t0) / 1e9;
    out->maxrss_kib = ru.ru_maxrss;
    out->others_pct = others_pct(busy0, &ru, out->wall_s);
    return 0;
}

bool bench_line_get(const char *line, const char *key, char *val, size_t len)
{
    size_t klen = strlen(key);
    for (const char *p = line; (p = strstr(p, key)); p += klen) {
        if ((p != line && p[-1] != ' ') || p[klen] != '=')
            continue;
        const char *v = p + klen + 1;
        size_t vlen = strcspn(v, " ");
        if (vlen >= len)
            vlen = len - 1;
        memcpy(val, v, vlen);
        val[vlen] = '\0';
        return true;
    }
    return false;
}
