/*
 * guard.h - crash containment for plugin code in the live host.
 *
 * hs_guard_install() gives the calling thread (the loop thread) handlers for
 * SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT that run on an alternate
 * stack (a stack overflow is caught too). Every call into plugin code then
 * goes through hs_guard_call() or one of its typed forms below. While one
 * runs, a fatal signal that the running thread brought on itself (a fault
 * of the CPU, or abort() / raise() on that thread) is recorded and the
 * thread unwinds (siglongjmp) to hs_guard_call, which returns HS_ECRASH
 * with the fault described. Host functions the plugin calls through hs_api
 * count as part of its callback.
 *
 * Nothing else is hidden: such a signal with no callback running on that
 * thread (host code, or any other thread), or one sent by another process,
 * gets back the action it had before hs_guard_install (the default one,
 * unless a sanitizer had its own) and is raised again, so that the process
 * dies of it with a core dump and debuggers see it as before.
 *
 * A watchdog thread reports a callback that runs longer than the budget,
 * naming plugin and callback, and interrupts it at HS_GUARD_INTERRUPT times
 * the budget: the loop thread gets SIGXCPU and the callback returns
 * HS_ECRASH as if it had crashed (fault.hang is 1). The watchdog sleeps
 * until a callback starts: an idle host does not wake up for it.
 *
 * Recovery is best effort. The callback's frames are abandoned where they
 * were: a lock they held stays held (one of the plugin's, or one inside the
 * C library: malloc that aborts on a corrupted heap, a callback interrupted
 * inside malloc or stdio), and the loop thread then blocks at its next use;
 * an interrupt that lands in an hs_api function leaves its work half done.
 * Threads the plugin started are not guarded: their faults kill the host.
 */
#ifndef HS_GUARD_H
#define HS_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "err.h"
#include "hotswap.h"

/* A callback still running at this many times the budget is interrupted. */
#define HS_GUARD_INTERRUPT 5

/* What a guarded callback died of. */
typedef struct hs_guard_fault {
  int signo;            /* SIGSEGV ... SIGABRT; SIGXCPU when interrupted */
  int code;             /* si_code: SEGV_MAPERR, FPE_INTDIV, SI_TKILL ... */
  uintptr_t addr;       /* si_addr: the address that faulted */
  uintptr_t pc;         /* the instruction the thread was at; 0 unknown */
  const char *callback; /* "load", "tick", "on_io" ... (static) */
  uint64_t ran_ns;      /* how long the callback had run */
  int hang;             /* 1: interrupted by the watchdog */
} hs_guard_fault;

/*
 * Installs the handlers and gives the calling thread its alternate signal
 * stack; starts the watchdog unless budget_ms is 0. Call once, on the
 * thread that will run plugin callbacks, before any plugin is loaded.
 * Returns 0, or a negative code with err filled (nothing installed).
 */
int hs_guard_install(uint32_t budget_ms, hs_error *err);

/* Stops the watchdog, restores the handlers hs_guard_install replaced and
 * frees the stack. Harmless when nothing is installed. */
void hs_guard_uninstall(void);

typedef void hs_guard_fn(void *arg);

/*
 * Runs fn(arg) as callback of plugin (its name, for the watchdog's report;
 * may be NULL). Returns 0 when fn returned, or HS_ECRASH with *fault filled
 * when it crashed or was interrupted; the signal mask is then as before
 * the call. On a thread without hs_guard_install (the validator, unit
 * tests) it only calls fn and returns 0. Nested calls are allowed.
 */
int hs_guard_call(hs_guard_fn *fn, void *arg, const char *plugin,
                  const char *callback, hs_guard_fault *fault);

/* The callbacks of ctx->desc on ctx->state through hs_guard_call. Each
 * returns 0 or HS_ECRASH with *fault filled; *rc is the callback's return
 * value (left alone after a crash). */
int hs_guard_load(hs_ctx *ctx, hs_load_reason reason, int *rc,
                  hs_guard_fault *fault);
int hs_guard_unload(hs_ctx *ctx, hs_unload_reason reason,
                    hs_guard_fault *fault);
int hs_guard_tick(hs_ctx *ctx, hs_guard_fault *fault);
int hs_guard_io(hs_ctx *ctx, int fd, uint32_t events, uint64_t token,
                hs_guard_fault *fault);
int hs_guard_timer(hs_ctx *ctx, uint64_t token, hs_guard_fault *fault);
int hs_guard_config(hs_ctx *ctx, hs_guard_fault *fault);
/* desc->migrate(ctx, new_state, old_state, old_version, old_size); ctx may
 * be NULL. */
int hs_guard_migrate(const hs_plugin *desc, hs_ctx *ctx, void *new_state,
                     const void *old_state, uint32_t old_version,
                     uint32_t old_size, int *rc, hs_guard_fault *fault);

/* The fault the last HS_ECRASH on this thread reported (all zero before
 * any), for callers that only saw the code. */
const hs_guard_fault *hs_guard_last(void);

/* "SIGSEGV", "SIGABRT" ...; "signal N" for others. Static. */
const char *hs_guard_signal_name(int signo);

/*
 * One phrase for f into out (always terminated):
 *   "SIGSEGV (bad access to address 0x0) at counter.so+0x1139"
 *   "SIGABRT (abort) at libc.so.6+0x8aeec"
 *   "a hang: interrupted after 1.0 s at counter.so+0x1150"
 * image is an address inside the plugin's image (e.g. its descriptor);
 * an instruction in that image is printed relative to its load address,
 * as "<plugin>.so+0x...", the offset addr2line takes. Other objects are
 * named by file; an unknown one is a bare address.
 */
void hs_guard_describe(const hs_guard_fault *f, const void *image,
                       const char *plugin, char *out, size_t size);

/* Only the place, as hs_guard_describe prints it: "counter.so+0x1139". */
void hs_guard_locate(uintptr_t pc, const void *image, const char *plugin,
                     char *out, size_t size);

#endif /* HS_GUARD_H */
