/* An application outside the tree: test.sh builds it against an installed
 * weft, once with pkg-config and once with CMake's find_package(weft), and
 * checks the line it prints. It sees only the installed <weft.h>. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

#define NTASKS 8

static void *square(void *arg)
{
    uintptr_t n = (uintptr_t)arg;
    return (void *)(n * n);
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_task *tasks[NTASKS];
    for (uintptr_t i = 0; i < NTASKS; i++) {
        tasks[i] = weft_spawn(square, (void *)i);
        if (tasks[i] == NULL) {
            perror("weft_spawn");
            return NULL;
        }
    }
    uintptr_t sum = 0;
    for (size_t i = 0; i < NTASKS; i++) {
        void *r;
        int err = weft_join(tasks[i], &r);
        if (err < 0) {
            fprintf(stderr, "weft_join: %s\n", weft_strerror(err));
            return NULL;
        }
        sum += (uintptr_t)r;
    }
    printf("weft consumer: %d tasks joined, sum of squares %" PRIuPTR "\n",
           NTASKS, sum);
    return (void *)1;
}

int main(void)
{
    void *ok = NULL;
    int err = weft_run(main_task, NULL, &ok);
    if (err < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
        return 1;
    }
    return ok ? 0 : 1;
}
