/* The C side of fanout._core: memory-ordering primitives for the shared ring.
 *
 * The ring lives in a memfd mapped by several processes, so ordinary C loads and stores
 * are not enough: the writer must publish `write_seq` only after the bytes it covers are
 * in place (release), and a reader must see those bytes once it has seen the new
 * `write_seq` (acquire). Metadata and Ogg headers use a seqlock, which needs explicit
 * fences around the plain copies. GCC/Clang __atomic builtins give exactly that, and on
 * x86-64 they compile to plain moves (plus nothing for the fences), so they cost nothing.
 *
 * Every u64 field of the header is 8-byte aligned (see docs/ARCHITECTURE.md), which is
 * what makes these accesses single, untorn loads and stores.
 */
#ifndef FANOUT_ATOMICS_H
#define FANOUT_ATOMICS_H

#include <stdint.h>

static inline uint64_t fo_load_acquire_u64(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint64_t fo_load_relaxed_u64(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void fo_store_release_u64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void fo_store_relaxed_u64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline uint32_t fo_load_acquire_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void fo_store_release_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void fo_store_relaxed_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Counters have one writer per slot, but an atomic add keeps a torn value impossible
 * even if a caller ever shares a slot by mistake. */
static inline void fo_add_relaxed_u64(uint64_t *p, uint64_t v) {
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/* Seqlock fences: the writer's release fence orders "generation made odd" before the
 * block bytes; the reader's acquire fence orders its copy before the generation re-check
 * (and, in the sender, the socket copy before the write_seq re-check). */
static inline void fo_fence_release(void) {
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void fo_fence_acquire(void) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

#endif /* FANOUT_ATOMICS_H */
