/* spawn_join: the README's example. The main task spawns a few tasks, joins
 * them in order and prints what each returned.
 *
 * Build and run it from the tree (ninja -C build/normal spawn_join), or
 * against an installed weft:
 *   cc -o spawn_join spawn_join.c $(pkg-config --cflags --libs weft)
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

#define NTASKS 5

/* A task body has the pthread signature: it takes and returns a pointer. */
static void *square(void *arg)
{
    uintptr_t n = (uintptr_t)arg;
    return (void *)(n * n);
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_task *tasks[NTASKS];
    size_t spawned = 0;
    for (; spawned < NTASKS; spawned++) {
        tasks[spawned] = weft_spawn(square, (void *)(uintptr_t)spawned);
        if (tasks[spawned] == NULL) { /* errno says why */
            perror("weft_spawn");
            break;
        }
    }

    uintptr_t sum = 0;
    for (size_t i = 0; i < spawned; i++) {
        void *result;
        int err = weft_join(tasks[i], &result); /* suspends until it ends */
        if (err < 0) {
            fprintf(stderr, "weft_join: %s\n", weft_strerror(err));
            continue;
        }
        printf("task %zu returned %" PRIuPTR "\n", i, (uintptr_t)result);
        sum += (uintptr_t)result;
    }
    printf("sum: %" PRIuPTR "\n", sum);
    return spawned == NTASKS ? NULL : (void *)1;
}

int main(void)
{
    void *failed;
    /* Make a runtime with one worker per CPU, run main_task as its first
     * task, wait for it and for every task it left, free the runtime. */
    int err = weft_run(main_task, NULL, &failed);
    if (err < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
        return 1;
    }
    return failed ? 1 : 0;
}
