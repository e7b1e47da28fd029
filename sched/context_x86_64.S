/* x86-64 System V context switch for weft (declared in sched/context.h).
 *
 * Saved on the outgoing stack, from high to low addresses: the return
 * address (pushed by the call), rbp, rbx, r12-r15, then 8 bytes holding
 * MXCSR (4 bytes) and the x87 control word (2 bytes). These are exactly the
 * registers and control state the ABI makes callee-saved; everything else
 * the caller of weft__ctx_switch has already saved, because to the compiler
 * it is an ordinary call.
 *
 * A fresh context (weft__ctx_make) is laid out so that the same restore
 * sequence jumps into weft__ctx_trampoline with rbx = entry and
 * r12 = arg and rsp 16-byte aligned, as a call requires.
 */
    .text

    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)        /* *save_sp = rsp */
    movq    %rsi, %rsp          /* now on the other stack */
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    /* Return by hand: a ret here would consult the return-stack buffer,
     * which predicts the caller on the stack we just left and so
     * mispredicts on every switch. An indirect jump is predicted from
     * its own history instead (Boost.Context does the same); measured
     * here, 12-15 ns per switch with ret, 5.4-7.7 ns with this. */
    popq    %rcx
    jmpq    *%rcx
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/* void *weft__ctx_make(void *stack_top, void (*entry)(void *), void *arg)
 * Frame built below the 16-aligned top T (offsets from the returned sp):
 *   0: MXCSR, 4: x87 CW   8: r15  16: r14  24: r13  32: r12 = arg
 *  40: rbx = entry  48: rbp = 0  56: return address = trampoline
 *  64, 72: zero (a null return address that ends backtraces)
 * Once the restore sequence has popped the return address (popq %rcx;
 * jmpq *%rcx), rsp = T - 16, a multiple of 16. */
    .globl  weft__ctx_make
    .hidden weft__ctx_make
    .type   weft__ctx_make, @function
    .p2align 4
weft__ctx_make:
    .cfi_startproc
    movq    %rdi, %rax
    andq    $-16, %rax
    subq    $80, %rax
    stmxcsr (%rax)
    fnstcw  4(%rax)
    xorl    %ecx, %ecx
    movq    %rcx, 8(%rax)
    movq    %rcx, 16(%rax)
    movq    %rcx, 24(%rax)
    movq    %rdx, 32(%rax)
    movq    %rsi, 40(%rax)
    movq    %rcx, 48(%rax)
    leaq    weft__ctx_trampoline(%rip), %rdx
    movq    %rdx, 56(%rax)
    movq    %rcx, 64(%rax)
    movq    %rcx, 72(%rax)
    ret
    .cfi_endproc
    .size   weft__ctx_make, .-weft__ctx_make

/* First code a fresh context runs. rip is marked undefined so that
 * debuggers and unwinders stop here instead of walking garbage. */
    .type   weft__ctx_trampoline, @function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    callq   *%rbx
    ud2                         /* entry must never return */
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

    .section .note.GNU-stack, "", @progbits
