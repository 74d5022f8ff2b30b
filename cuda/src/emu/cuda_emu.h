// cuda_emu.h: runs kernel files on the CPU for tests on machines without a GPU
// (llmrt_cuda::emu, cuda/src/emu/mod.rs). Every CUDA thread of a block is a fiber on
// the launching thread (a six-register stack switch on x86-64, ucontext elsewhere): a fiber runs until it meets a barrier, and a
// small scheduler resumes the fibers a completed barrier releases. __syncthreads is a
// block barrier, warp shuffles go through a per-warp exchange array between two warp
// barriers, so lock-step warp code behaves as on the GPU. Blocks run one after
// another, so `static` (our __shared__) is per-block shared memory. Fibers instead of
// one OS thread per CUDA thread: no thread creation per launch and no futex per
// barrier, which made whole-model tests tens of times slower. Only as faithful as the
// subset of CUDA the kernels use: it checks the arithmetic and indexing of the
// kernels, not their speed, memory model or occupancy; a barrier some threads never
// reach is reported and aborts.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

#if defined(__x86_64__)
// emu_switch(from, to): saves the callee-saved registers and the SSE/x87 control words
// on the current stack, stores the stack pointer in *from, and resumes the stack `to`
// the same way. (glibc's swapcontext also saves the signal mask: a system call per
// switch, most of the emulator's time.) Local to each kernel library.
extern "C" void emu_switch(void** from, void* to);
__asm__(R"(
    .text
    .p2align 4
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
#endif

namespace emu {
// A saved execution context: a fiber's, or the scheduler's.
#if defined(__x86_64__)
struct Ctx {
    void* sp = nullptr;
};
inline void ctx_switch(Ctx* from, Ctx* to) { emu_switch(&from->sp, to->sp); }
// A context that starts `fn` (which never returns) on `stack`: the frame emu_switch
// pops (control words, six registers), then `fn` as the return address, placed so
// that `fn` starts with the stack aligned as after a call.
inline void ctx_make(Ctx* c, char* stack, size_t size, void (*fn)()) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
    void** p = reinterpret_cast<void**>(top);
    *--p = nullptr;
    *--p = reinterpret_cast<void*>(fn);
    for (int i = 0; i < 6; i++) *--p = nullptr;
    uint32_t words[2] = {0, 0};
    __asm__ volatile("stmxcsr %0" : "=m"(words[0]));
    uint16_t cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    words[1] = cw;
    --p;
    std::memcpy(p, words, 8);
    c->sp = p;
}
#else
struct Ctx {
    ucontext_t uc;
};
inline void ctx_switch(Ctx* from, Ctx* to) { swapcontext(&from->uc, &to->uc); }
inline void ctx_make(Ctx* c, char* stack, size_t size, void (*fn)()) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, fn, 0);
}
#endif

// A barrier among the fibers of a block or a warp: `expected` members (those that have
// not returned), `arrived` of them waiting, `gen` counting completions.
struct Barrier {
    unsigned expected = 0, arrived = 0, gen = 0;
};
// One CUDA thread: its context, and the barrier generation it waits to see pass.
struct Fiber {
    Ctx ctx;
    bool done = false;
    Barrier* waiting = nullptr;
    unsigned wait_gen = 0;
};
// Everything a kernel reads is per launching OS thread, so concurrent launches
// (parallel tests) cannot see each other's geometry.
inline thread_local dim3 thread_idx, block_idx, block_dim, grid_dim;
inline thread_local Ctx* sched_ctx = nullptr;
inline thread_local Fiber* current = nullptr;
inline thread_local Barrier* block_bar = nullptr;
inline thread_local Barrier* warp_bar = nullptr;
inline thread_local float* warp_vals = nullptr;
inline thread_local char* dyn_smem = nullptr;
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim

namespace emu {
// Completes the barrier: every waiter becomes runnable.
inline void release(Barrier* b) {
    b->arrived = 0;
    b->gen++;
}
// Waits until every member has arrived; the last to arrive releases the others and
// goes on without yielding.
inline void arrive_and_wait(Barrier* b) {
    unsigned g = b->gen;
    if (++b->arrived == b->expected) {
        release(b);
        return;
    }
    current->waiting = b;
    current->wait_gen = g;
    ctx_switch(&current->ctx, sched_ctx);
}
// A returned thread stops counting toward the barrier (it may complete it).
inline void drop(Barrier* b) {
    b->expected--;
    if (b->arrived > 0 && b->arrived == b->expected) release(b);
}
}  // namespace emu

inline void __syncthreads() { emu::arrive_and_wait(emu::block_bar); }
inline void __syncwarp() { emu::arrive_and_wait(emu::warp_bar); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    int lane = threadIdx.x % 32;
    emu::warp_vals[lane] = v;
    emu::arrive_and_wait(emu::warp_bar);
    float r = emu::warp_vals[lane ^ lane_mask];
    emu::arrive_and_wait(emu::warp_bar);
    return r;
}
// Lane `lane + delta` of the `width`-lane segment; a lane whose source falls past the
// segment's end keeps its own value, as on the GPU.
inline float __shfl_down_sync(unsigned, float v, int delta, int width = 32) {
    int lane = threadIdx.x % 32;
    emu::warp_vals[lane] = v;
    emu::arrive_and_wait(emu::warp_bar);
    float r = (lane % width) + delta < width ? emu::warp_vals[lane + delta] : v;
    emu::arrive_and_wait(emu::warp_bar);
    return r;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::max;
using std::min;

// bf16 with round-to-nearest-even narrowing, as __float2bfloat16_rn.
struct __nv_bfloat16 {
    uint16_t bits;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            bits = (uint16_t)((u >> 16) | 0x40);  // quiet NaN
        } else {
            u += 0x7fffu + ((u >> 16) & 1u);
            bits = (uint16_t)(u >> 16);
        }
    }
    operator float() const {
        uint32_t u = (uint32_t)bits << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return (float)b; }

// IEEE binary16: round-to-nearest-even narrowing (subnormals, overflow to inf, NaN kept
// quiet), exact widening, as __float2half_rn and __half2float.
struct __half {
    uint16_t bits;
    __half() = default;
    __half(float f) : bits(from_float(f)) {}
    operator float() const { return to_float(bits); }

    static uint16_t from_float(float f) {
        uint32_t x;
        std::memcpy(&x, &f, 4);
        uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
        uint32_t ax = x & 0x7fffffffu;
        if (ax > 0x7f800000u)  // NaN: quiet, the payload's top bits kept
            return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu);
        if (ax >= 0x477ff000u)  // from halfway past 65504 (ties go to even = inf), and inf
            return sign | 0x7c00u;
        if (ax >= 0x38800000u) {  // normal: rebias the exponent (127 - 15), round 13 bits
            uint32_t r = ax - 0x38000000u;
            r += 0xfffu + ((r >> 13) & 1u);
            return sign | (uint16_t)(r >> 13);
        }
        if (ax <= 0x33000000u)  // at most half the smallest subnormal 2^-24: zero
            return sign;
        // Subnormal: the 24-bit significand in units of 2^-24, rounded to nearest even.
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;  // 14..24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }

    static float to_float(uint16_t h) {
        uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
        uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
        if (e == 0x1f) {
            x = sign | 0x7f800000u | (m ? 0x400000u | (m << 13) : 0u);  // inf, quiet NaN
        } else if (e != 0) {
            x = sign | ((e + 112u) << 23) | (m << 13);
        } else {
            float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
            return sign ? -v : v;
        }
        float f;
        std::memcpy(&f, &x, 4);
        return f;
    }
};
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return (float)h; }
inline __half __ushort_as_half(unsigned short b) {
    __half h;
    h.bits = b;
    return h;
}
inline unsigned short __half_as_ushort(__half h) { return h.bits; }

namespace emu {
template <class... A, size_t... I>
void call(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<A*>(args[I])...);
}

// Runs kernel `k` over the grid, one block at a time, each block's threads as fibers
// on this thread: each fiber runs until it meets a barrier or returns, and the
// scheduler loops over the runnable ones until all have returned.
template <class... A>
void launch(void (*k)(A...), dim3 grid, dim3 block, size_t smem, void** args) {
    constexpr size_t STACK = 64 * 1024;
    unsigned nthreads = block.x * block.y * block.z;
    unsigned nwarps = (nthreads + 31) / 32;
    unsigned nblocks = grid.x * grid.y * grid.z;
    std::vector<char> dyn(smem + 16);
    char* smem_base = dyn.data() + (16 - (reinterpret_cast<uintptr_t>(dyn.data()) % 16)) % 16;
    // Stacks are kept between launches on this thread.
    static thread_local std::vector<std::unique_ptr<char[]>> stacks;
    while (stacks.size() < nthreads) stacks.emplace_back(new char[STACK]);
    std::vector<Fiber> fibers(nthreads);
    std::vector<Barrier> wbars(nwarps);
    Barrier bbar;
    std::vector<float> wvals(nwarps * 32);
    Ctx main_ctx;
    static thread_local void (*kernel)(A...);
    static thread_local void** kargs;
    kernel = k;
    kargs = args;
    block_dim = block;
    grid_dim = grid;
    dyn_smem = smem_base;
    sched_ctx = &main_ctx;
    // A fiber's life: the kernel, then leave the barriers and hand back for good.
    auto entry = +[]() {
        call(kernel, kargs, std::index_sequence_for<A...>{});
        current->done = true;
        drop(warp_bar);
        drop(block_bar);
        ctx_switch(&current->ctx, sched_ctx);
        std::abort();  // never resumed
    };
    for (unsigned b = 0; b < nblocks; b++) {
        block_idx = dim3{b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)};
        bbar = Barrier{nthreads, 0, 0};
        for (unsigned w = 0; w < nwarps; w++) wbars[w] = Barrier{std::min(32u, nthreads - w * 32), 0, 0};
        for (unsigned t = 0; t < nthreads; t++) {
            Fiber& f = fibers[t];
            f.done = false;
            f.waiting = nullptr;
            ctx_make(&f.ctx, stacks[t].get(), STACK, entry);
        }
        for (;;) {
            bool all_done = true, progress = false;
            for (unsigned t = 0; t < nthreads; t++) {
                Fiber& f = fibers[t];
                if (f.done) continue;
                all_done = false;
                if (f.waiting && f.waiting->gen == f.wait_gen) continue;
                f.waiting = nullptr;
                current = &f;
                thread_idx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                block_bar = &bbar;
                warp_bar = &wbars[t / 32];
                warp_vals = &wvals[(t / 32) * 32];
                ctx_switch(&main_ctx, &f.ctx);
                progress = true;
            }
            if (all_done) break;
            if (!progress) {
                std::fprintf(stderr, "cuda_emu: deadlock: threads wait at a barrier others never reach\n");
                std::abort();
            }
        }
    }
}
}  // namespace emu
