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

/* What the layout and its ordering argument assume, checked where it is compiled.
 *
 * Byte order: the ring header is specified little-endian (docs/ARCHITECTURE.md) and read
 * by plain u32/u64 loads in every process, the Python twin's struct "<" formats included;
 * the ingest also reads Ogg's little-endian granule and serial fields with memcpy.
 *
 * Memory model: the guard rule (a reader trusts bytes it copied only if write_seq, read
 * after the copy, shows the writer could not have been overwriting them) needs stores to
 * the data area made after a publication never to become visible before it, and the wake-up
 * doorbell needs a store-load fence. That argument was made for two CPUs:
 * - x86-64 (TSO): stores are seen in program order and loads are not reordered with
 *   other loads, so the release/acquire fences are compiler barriers only; the seq_cst
 *   fence is an MFENCE (or locked instruction).
 * - aarch64 (ARMv8, other-multi-copy atomic): release stores are STLR, acquire loads LDAR,
 *   and the fences after each publication (fo_fence_release: DMB ISH) and before each
 *   re-check (fo_fence_acquire: DMB ISHLD) give the same orders explicitly.
 * Other CPUs (POWER is not multi-copy atomic; 32-bit ones tear u64 stores) were not
 * reasoned about: refuse to build there rather than run a ring that might send a torn
 * byte. To add one, check the argument above for it, then extend this list. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fanout's ring layout is little-endian: this CPU is not"
#endif
#if !defined(__x86_64__) && !defined(__aarch64__)
#error "fanout's ring ordering was reasoned for x86-64 and aarch64 only (see atomics.h)"
#endif
#if !defined(__GCC_ATOMIC_LLONG_LOCK_FREE) || __GCC_ATOMIC_LLONG_LOCK_FREE != 2
#error "fanout's ring needs lock-free 64-bit atomics (they work across processes)"
#endif

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
 * (and, in the sender, the socket copy before the write_seq re-check). The ring writer
 * uses the release fence the same way after each publication of write_seq (ring_publish
 * in _core.pxd). */
static inline void fo_fence_release(void) {
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void fo_fence_acquire(void) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

/* Store-load fence: a store before it is visible to every CPU before any load after it
 * is performed. The doorbell's handshake (writer: publish, then look for armed readers;
 * reader: arm, then look at write_seq) needs it on both sides, or each could miss the
 * other's store and the reader would sleep through an advance. */
static inline void fo_fence_seq_cst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

#endif /* FANOUT_ATOMICS_H */
