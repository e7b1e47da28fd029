/* hello: asyncio's first program, in weft. Two tasks each say hello, sleep
 * one second and say world; they run concurrently, so the whole program
 * takes about one second, not two.
 *
 *     async def say(name):
 *         print(f"Hello {name}")
 *         await asyncio.sleep(1)
 *         print(f"{name} World!")
 *
 *     async def main():
 *         await asyncio.gather(say("A"), say("B"))
 *
 *     asyncio.run(main())
 *
 * Build and run it from the tree (ninja -C build/normal hello &&
 * build/normal/examples/hello), or against an installed weft:
 *   cc -o hello hello.c $(pkg-config --cflags --libs weft)
 */
#include <stdio.h>
#include <weft.h>

static void *say(void *arg)
{
    const char *name = arg;
    printf("Hello %s\n", name);
    int err = weft_sleep(1.0); /* suspends this task only */
    if (err < 0)
        return (void *)weft_strerror(err);
    printf("%s World!\n", name);
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    double start = weft_now();
    weft_task *tasks[2] = {weft_spawn(say, "A"), weft_spawn(say, "B")};
    if (!tasks[0] || !tasks[1]) {
        perror("weft_spawn");
        return (void *)1;
    }
    int errs[2];
    int err = weft_gather(tasks, 2, NULL, errs); /* joins both */
    if (err < 0) {
        fprintf(stderr, "weft_gather: %s\n", weft_strerror(err));
        return (void *)1;
    }
    printf("took %.2f s\n", weft_now() - start);
    return NULL;
}

int main(void)
{
    void *failed = NULL;
    int err = weft_run(main_task, NULL, &failed);
    if (err < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
        return 1;
    }
    return failed ? 1 : 0;
}
