/* The context switch: one C declaration, one assembly file per ISA
 * (sched/context_x86_64.S). Nothing outside sched/ uses it, except the raw
 * switch micro-benchmark.
 *
 * A context is just a saved stack pointer: the callee-saved registers and
 * the FP control words live on the context's own stack, below that pointer.
 * No syscall, no signal mask: a switch is a function call that returns on
 * another stack.
 */
#ifndef WEFT_SCHED_CONTEXT_H
#define WEFT_SCHED_CONTEXT_H

/* Save the caller's context, store its stack pointer in *save_sp, and
 * resume the context whose stack pointer is to_sp. Returns when some other
 * context switches back to *save_sp. */
void weft__ctx_switch(void **save_sp, void *to_sp);

/* Prepare a context on a fresh stack whose highest usable address is
 * stack_top (aligned down to 16 here). Switching to the returned stack
 * pointer calls entry(arg) with the creator's MXCSR and x87 control word.
 * entry must never return: it ends by switching away for good. */
void *weft__ctx_make(void *stack_top, void (*entry)(void *), void *arg);

#endif /* WEFT_SCHED_CONTEXT_H */
