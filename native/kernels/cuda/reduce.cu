// reduce.cu: reductions of x viewed as [outer, reduce, inner] to y[outer, inner]: SUM, MEAN, MAX,
// MIN, SUM_SQUARES (kn_reduce_f32), and ARGMAX / ARGMIN to int64 indices (kn_argreduce_f32).
//
// Technique: every kernel is a template over a small policy (the accumulator type, its identity,
// how an input element enters it, how two accumulators combine), so value and index reductions,
// and the second pass of either, share three kernels:
//   - inner == 1, rows of up to 1024 elements: one warp per row; lanes stride along the row (each
//     loads consecutive words: coalesced), then a shuffle tree combines the 32 lanes;
//   - inner == 1, longer rows: one block of 256 threads per row, float4 loads (a scalar head reaches
//     a 16-byte boundary first), per-thread partials combined by a shuffle tree in each warp and a
//     second one over the warps' results;
//   - inner > 1: a block of TX x TY threads, TX consecutive columns i (a warp reads whole runs of
//     memory) by TY rows r of the reduced axis, combined over TY by a tree in shared memory.
// When there are too few outputs to fill the GPU (the extreme case: everything into one value, 64M+
// elements), the reduced axis is split into chunks: pass 1 writes one partial per chunk into a
// scratch buffer that the device owns, pass 2 (the same kernels) reduces the partials. The split
// depends only on the shape and the SM count, and no float is ever combined by an atomic, so every
// run gives the same bits. Sums are trees of short per-thread running sums (64M elements into one
// value on an H100: 1024 chunks of 65536, 256 elements per thread), not one long running float.
//
// NaN: MAX / MIN return NaN if any element is NaN; ARGMAX / ARGMIN treat NaN as the extreme and return
// the first NaN's index; ties go to the first index. reduce == 0 writes 0 (NaN for MEAN).
//
// Napkin math: one pass over x at ~3 TB/s (H100): 64M floats in ~90 us; the second pass reads at
// most 1024 partials per output. Not yet measured on a GPU.
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#ifndef REDUCE_THREADS
#define REDUCE_THREADS 256  // threads per block of the row and column kernels
#endif
#ifndef REDUCE_WARP_ROW_MAX
#define REDUCE_WARP_ROW_MAX 1024  // rows up to this long go one warp per row (<= 32 loads per lane)
#endif
#ifndef REDUCE_BLOCKS_PER_SM
#define REDUCE_BLOCKS_PER_SM 8  // blocks of pass 1 to aim for when splitting: 8 x 256 threads fill an SM
#endif
#ifndef REDUCE_ROW_CHUNK_MIN
#define REDUCE_ROW_CHUNK_MIN 8192  // elements a pass-1 block gets at least (inner == 1): 8 float4 per thread
#endif
#ifndef REDUCE_COLUMN_CHUNK_MIN
#define REDUCE_COLUMN_CHUNK_MIN 256  // rows of the reduced axis a pass-1 block gets at least (inner > 1)
#endif
#ifndef REDUCE_MAX_CHUNKS
#define REDUCE_MAX_CHUNKS 1024  // partials per output: pass 2 stays a single warp- or block-row
#endif

namespace kn::cuda {
namespace {

// ---- Policies -----------------------------------------------------------------------------------

enum class Combine { sum, max, min };

// Value reductions. In: what the kernel reads; Acc: what it combines; Out: what a final pass writes.
template <Combine C, bool SQUARE>
struct ValueReduce {
    using In = float;
    using Acc = float;
    using Out = float;
    static __device__ __forceinline__ Acc identity() {
        if constexpr (C == Combine::sum) return 0.0f;
        else if constexpr (C == Combine::max) return -INFINITY;
        else return INFINITY;
    }
    static __device__ __forceinline__ Acc from(In v, int64_t) { return SQUARE ? v * v : v; }
    static __device__ __forceinline__ Acc combine(Acc a, Acc b) {
        if constexpr (C == Combine::sum) return a + b;
        else if constexpr (C == Combine::max) return (a > b || a != a) ? a : b;  // NaN wins
        else return (a < b || a != a) ? a : b;
    }
    // divisor is the element count for MEAN and 1 otherwise (x / 1 is exact, NaN and inf included).
    static __device__ __forceinline__ Out finish(Acc a, float divisor) { return a / divisor; }
};

struct ArgAcc {
    float value;
    int64_t index;
};

// Index reductions; In is float in pass 1, and ArgAcc when pass 2 reads pass 1's partials.
template <bool MAX, typename Input>
struct ArgReduce {
    using In = Input;
    using Acc = ArgAcc;
    using Out = int64_t;
    static __device__ __forceinline__ Acc identity() {
        // Loses to every element: an element equal to it wins on its smaller index.
        return ArgAcc{MAX ? -INFINITY : INFINITY, INT64_MAX};
    }
    static __device__ __forceinline__ Acc from(In v, int64_t r) {
        if constexpr (std::is_same<In, float>::value) return ArgAcc{v, r};
        else return v;
    }
    // Order-independent: NaN beats numbers, then the larger (smaller) value, then the smaller index.
    static __device__ __forceinline__ Acc combine(Acc a, Acc b) {
        const bool a_nan = a.value != a.value, b_nan = b.value != b.value;
        bool take_b;
        if (a_nan || b_nan) take_b = b_nan && (!a_nan || b.index < a.index);
        else if (a.value != b.value) take_b = MAX ? b.value > a.value : b.value < a.value;
        else take_b = b.index < a.index;
        return take_b ? b : a;
    }
    static __device__ __forceinline__ Out finish(Acc a, float) { return a.index; }
};

__device__ __forceinline__ float shuffle_down(float v, int offset) { return __shfl_down_sync(0xffffffffu, v, offset); }
__device__ __forceinline__ ArgAcc shuffle_down(ArgAcc v, int offset) {
    return ArgAcc{__shfl_down_sync(0xffffffffu, v.value, offset),
                  static_cast<int64_t>(__shfl_down_sync(0xffffffffu, static_cast<long long>(v.index), offset))};
}

// Lane 0 ends with the combination of all 32 lanes (every lane must hold a value: identity if idle).
template <class P>
__device__ __forceinline__ typename P::Acc warp_reduce(typename P::Acc v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = P::combine(v, shuffle_down(v, offset));
    return v;
}

// Thread 0 ends with the combination over the block (blockDim.x a multiple of 32, at most 1024).
// Ends with a barrier, so `shared` may be reused right after.
template <class P>
__device__ __forceinline__ typename P::Acc block_reduce(typename P::Acc v, typename P::Acc* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_reduce<P>(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) v = warp_reduce<P>(lane < warps ? shared[lane] : P::identity());
    __syncthreads();
    return v;
}

template <class P, bool FINAL>
__device__ __forceinline__ void write_result(void* out, int64_t index, typename P::Acc acc, float divisor) {
    if constexpr (FINAL) static_cast<typename P::Out*>(out)[index] = P::finish(acc, divisor);
    else static_cast<typename P::Acc*>(out)[index] = acc;
}

// ---- Kernels ------------------------------------------------------------------------------------

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// inner == 1, short rows: warp w of the grid reduces rows w, w + warps, ...; out[row].
template <class P, bool FINAL>
__global__ void reduce_rows_warp_kernel(const typename P::In* x, void* out, int64_t rows, int64_t len, float divisor) {
    const int lane = threadIdx.x % 32;
    const int64_t warps_per_block = blockDim.x / 32;
    for (int64_t row = blockIdx.x * warps_per_block + threadIdx.x / 32; row < rows; row += gridDim.x * warps_per_block) {
        const typename P::In* p = x + row * len;
        typename P::Acc acc = P::identity();
        for (int64_t r = lane; r < len; r += 32) acc = P::combine(acc, P::from(p[r], r));
        acc = warp_reduce<P>(acc);
        if (lane == 0) write_result<P, FINAL>(out, row, acc, divisor);
    }
}

// inner == 1, long rows: block b reduces chunk b % chunks of row b / chunks, elements
// [c * chunk_len, min(len, (c + 1) * chunk_len)); out[b] (= out[row] when chunks == 1).
template <class P, bool FINAL>
__global__ void reduce_rows_block_kernel(const typename P::In* x, void* out, int64_t rows, int64_t len,
                                         int64_t chunks, int64_t chunk_len, float divisor) {
    using Acc = typename P::Acc;
    __shared__ Acc shared[32];
    const int64_t tid = threadIdx.x, threads = blockDim.x;
    for (int64_t b = blockIdx.x; b < rows * chunks; b += gridDim.x) {
        const int64_t row = b / chunks, begin = (b % chunks) * chunk_len;
        const int64_t count = min64(len - begin, chunk_len);
        const typename P::In* p = x + row * len + begin;
        Acc acc = P::identity();
        if constexpr (std::is_same<typename P::In, float>::value) {
            // Scalars up to a 16-byte boundary, float4 through the middle, scalars at the end.
            const int64_t misalignment = static_cast<int64_t>((16 - reinterpret_cast<uintptr_t>(p) % 16) % 16 / 4);
            const int64_t head = min64(misalignment, count);
            const int64_t body = (count - head) / 4;
            if (tid < head) acc = P::combine(acc, P::from(p[tid], begin + tid));
            const float4* p4 = reinterpret_cast<const float4*>(p + head);
            for (int64_t j = tid; j < body; j += threads) {
                const float4 v = p4[j];
                const int64_t r = begin + head + 4 * j;
                acc = P::combine(acc, P::from(v.x, r));
                acc = P::combine(acc, P::from(v.y, r + 1));
                acc = P::combine(acc, P::from(v.z, r + 2));
                acc = P::combine(acc, P::from(v.w, r + 3));
            }
            for (int64_t j = head + body * 4 + tid; j < count; j += threads) acc = P::combine(acc, P::from(p[j], begin + j));
        } else {
            for (int64_t j = tid; j < count; j += threads) acc = P::combine(acc, P::from(p[j], begin + j));
        }
        acc = block_reduce<P>(acc, shared);
        if (tid == 0) write_result<P, FINAL>(out, b, acc, divisor);
    }
}

// inner > 1: x is [outer, len, inner]; a (TX, TY) block handles columns [ti * TX, ti * TX + TX) of
// chunk c of outer index o, where the block's work item w = (o * chunks + c) * tiles_i + ti.
// out is [outer, chunks, inner] (= [outer, inner] when chunks == 1). Dynamic shared memory holds
// TX * TY accumulators; TY is a power of two.
template <class P, bool FINAL>
__global__ void reduce_columns_kernel(const typename P::In* x, void* out, int64_t outer, int64_t len, int64_t inner,
                                      int64_t chunks, int64_t chunk_len, float divisor) {
    using Acc = typename P::Acc;
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    Acc* shared = reinterpret_cast<Acc*>(shared_bytes);
    const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
    const int64_t tiles_i = (inner + TX - 1) / TX;
    for (int64_t w = blockIdx.x; w < outer * chunks * tiles_i; w += gridDim.x) {
        const int64_t ti = w % tiles_i, oc = w / tiles_i;  // oc = o * chunks + c
        const int64_t o = oc / chunks, begin = (oc % chunks) * chunk_len;
        const int64_t end = min64(len, begin + chunk_len);
        const int64_t i = ti * TX + tx;
        Acc acc = P::identity();
        if (i < inner) {
            const typename P::In* p = x + o * len * inner + i;
            for (int64_t r = begin + ty; r < end; r += TY) acc = P::combine(acc, P::from(p[r * inner], r));
        }
        shared[ty * TX + tx] = acc;
        __syncthreads();
        for (int s = TY / 2; s > 0; s /= 2) {
            if (ty < s) shared[ty * TX + tx] = P::combine(shared[ty * TX + tx], shared[(ty + s) * TX + tx]);
            __syncthreads();
        }
        if (ty == 0 && i < inner) write_result<P, FINAL>(out, oc * inner + i, shared[tx], divisor);
        __syncthreads();  // shared is rewritten by the next work item
    }
}

// ---- Planning -----------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int pow2_at_least(int64_t v, int cap) {
    int p = 1;
    while (p < v && p < cap) p *= 2;
    return p;
}

unsigned grid_size(int64_t blocks) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 0x7fffffff))); }

struct ColumnShape {
    int tx, ty;
};

// TX consecutive columns by TY reduced rows, TX * TY <= REDUCE_THREADS, both powers of two: at
// most 32 columns at first (one warp spans a row of the tile), then wider if the reduced axis is
// too short to use the threads.
ColumnShape column_shape(int64_t inner, int64_t len) {
    ColumnShape s;
    s.tx = pow2_at_least(inner, 32);
    s.ty = pow2_at_least(len, REDUCE_THREADS / s.tx);
    s.tx = pow2_at_least(inner, REDUCE_THREADS / s.ty);
    return s;
}

// How a reduction runs: one pass, or pass 1 into `chunks` partials per output and pass 2.
struct Plan {
    bool rows;             // inner == 1
    int64_t chunks = 1;    // partials per output (1: single pass)
    int64_t chunk_len = 0; // elements of the reduced axis per chunk
    int64_t scratch_elements = 0;  // accumulators in the scratch buffer
};

Plan make_plan(int64_t outer, int64_t len, int64_t inner, const LaunchContext& ctx) {
    Plan plan;
    plan.rows = inner == 1;
    plan.chunk_len = len;
    const int64_t target_blocks = int64_t{std::max(ctx.sm_count, 1)} * REDUCE_BLOCKS_PER_SM;
    int64_t chunks = 1;
    if (plan.rows) {
        if (len > REDUCE_WARP_ROW_MAX && outer < target_blocks)
            chunks = std::min({ceil_div(len, REDUCE_ROW_CHUNK_MIN), ceil_div(target_blocks, outer), int64_t{REDUCE_MAX_CHUNKS}});
    } else {
        const int64_t tiles_i = ceil_div(inner, column_shape(inner, len).tx);
        if (outer * tiles_i < target_blocks)
            chunks = std::min({ceil_div(len, REDUCE_COLUMN_CHUNK_MIN), ceil_div(target_blocks, outer * tiles_i),
                               int64_t{REDUCE_MAX_CHUNKS}});
    }
    if (chunks > 1) {
        // Row chunks are whole float4s so every chunk but the last starts as aligned as the row.
        int64_t chunk_len = ceil_div(len, chunks);
        if (plan.rows) chunk_len = ceil_div(chunk_len, 4) * 4;
        plan.chunk_len = chunk_len;
        plan.chunks = ceil_div(len, chunk_len);
        if (plan.chunks > 1) plan.scratch_elements = outer * plan.chunks * inner;
        else plan.chunk_len = len;
    }
    return plan;
}

// Reduces rows of length len (inner == 1) with policy P into out; FINAL says out is the result.
template <class P, bool FINAL>
void launch_rows(const typename P::In* x, void* out, int64_t rows, int64_t len, int64_t chunks, int64_t chunk_len,
                 float divisor, const LaunchContext& ctx) {
    if (chunks == 1 && len <= REDUCE_WARP_ROW_MAX) {
        const int warps_per_block = REDUCE_THREADS / 32;
        reduce_rows_warp_kernel<P, FINAL><<<grid_size(ceil_div(rows, warps_per_block)), REDUCE_THREADS, 0, ctx.stream>>>(
            x, out, rows, len, divisor);
    } else {
        reduce_rows_block_kernel<P, FINAL><<<grid_size(rows * chunks), REDUCE_THREADS, 0, ctx.stream>>>(
            x, out, rows, len, chunks, chunk_len, divisor);
    }
}

template <class P, bool FINAL>
void launch_columns(const typename P::In* x, void* out, int64_t outer, int64_t len, int64_t inner, int64_t chunks,
                    int64_t chunk_len, float divisor, const LaunchContext& ctx) {
    const ColumnShape s = column_shape(inner, chunk_len);
    const int64_t work = outer * chunks * ceil_div(inner, s.tx);
    const size_t shared = sizeof(typename P::Acc) * s.tx * s.ty;
    reduce_columns_kernel<P, FINAL><<<grid_size(work), dim3(s.tx, s.ty), shared, ctx.stream>>>(
        x, out, outer, len, inner, chunks, chunk_len, divisor);
}

// Pass 1 with policy P1 (reads x), then, if the plan splits, pass 2 with policy P2 (reads P1's
// accumulators) into the result. Returns the first launch error.
template <class P1, class P2>
cudaError_t run_plan(const Plan& plan, const float* x, void* y, void* scratch, int64_t outer, int64_t len,
                     int64_t inner, float divisor, const LaunchContext& ctx) {
    static_assert(std::is_same<typename P1::Acc, typename P2::In>::value, "pass 2 reads pass 1's accumulators");
    if (plan.chunks == 1) {
        if (plan.rows) launch_rows<P1, true>(x, y, outer, len, 1, len, divisor, ctx);
        else launch_columns<P1, true>(x, y, outer, len, inner, 1, len, divisor, ctx);
        return cudaGetLastError();
    }
    auto* partials = static_cast<typename P2::In*>(scratch);
    if (plan.rows) launch_rows<P1, false>(x, partials, outer, len, plan.chunks, plan.chunk_len, divisor, ctx);
    else launch_columns<P1, false>(x, partials, outer, len, inner, plan.chunks, plan.chunk_len, divisor, ctx);
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    // Pass 2: the partials are [outer, chunks, inner]; reduce the chunks axis in one pass.
    if (plan.rows) launch_rows<P2, true>(partials, y, outer, plan.chunks, 1, plan.chunks, divisor, ctx);
    else launch_columns<P2, true>(partials, y, outer, plan.chunks, inner, 1, plan.chunks, divisor, ctx);
    return cudaGetLastError();
}

}  // namespace

int64_t reduce_scratch_bytes(const ReduceArgs& args, const LaunchContext& ctx) {
    if (args.reduce == 0) return 0;
    return make_plan(args.outer, args.reduce, args.inner, ctx).scratch_elements * int64_t{sizeof(float)};
}

cudaError_t reduce_f32(const ReduceArgs& args, const LaunchContext& ctx) {
    const float* x = static_cast<const float*>(args.x);
    float* y = static_cast<float*>(args.y);
    if (args.reduce == 0)  // MAX / MIN never get here (the API rejects them over zero elements)
        return fill_f32(y, args.outer * args.inner, args.op == KN_REDUCE_MEAN ? NAN : 0.0f, ctx);
    const Plan plan = make_plan(args.outer, args.reduce, args.inner, ctx);
    const int64_t scratch_bytes = reduce_scratch_bytes(args, ctx);
    void* scratch = ctx.scratch(scratch_bytes);
    if (scratch_bytes > 0 && !scratch) return cudaErrorInvalidValue;
    const float divisor = args.op == KN_REDUCE_MEAN ? static_cast<float>(args.reduce) : 1.0f;
    using Sum = ValueReduce<Combine::sum, false>;
    switch (args.op) {
        case KN_REDUCE_SUM:
        case KN_REDUCE_MEAN:
            return run_plan<Sum, Sum>(plan, x, y, scratch, args.outer, args.reduce, args.inner, divisor, ctx);
        case KN_REDUCE_SUM_SQUARES:
            return run_plan<ValueReduce<Combine::sum, true>, Sum>(plan, x, y, scratch, args.outer, args.reduce,
                                                                   args.inner, divisor, ctx);
        case KN_REDUCE_MAX: {
            using Max = ValueReduce<Combine::max, false>;
            return run_plan<Max, Max>(plan, x, y, scratch, args.outer, args.reduce, args.inner, divisor, ctx);
        }
        case KN_REDUCE_MIN: {
            using Min = ValueReduce<Combine::min, false>;
            return run_plan<Min, Min>(plan, x, y, scratch, args.outer, args.reduce, args.inner, divisor, ctx);
        }
    }
    return cudaErrorInvalidValue;  // the C API rejects unknown ops before a backend sees them
}

int64_t argreduce_scratch_bytes(const ArgReduceArgs& args, const LaunchContext& ctx) {
    return make_plan(args.outer, args.reduce, args.inner, ctx).scratch_elements * int64_t{sizeof(ArgAcc)};
}

cudaError_t argreduce_f32(const ArgReduceArgs& args, const LaunchContext& ctx) {
    const float* x = static_cast<const float*>(args.x);
    const Plan plan = make_plan(args.outer, args.reduce, args.inner, ctx);
    const int64_t scratch_bytes = argreduce_scratch_bytes(args, ctx);
    void* scratch = ctx.scratch(scratch_bytes);
    if (scratch_bytes > 0 && !scratch) return cudaErrorInvalidValue;
    if (args.op == KN_ARGMAX)
        return run_plan<ArgReduce<true, float>, ArgReduce<true, ArgAcc>>(plan, x, args.indices, scratch, args.outer,
                                                                         args.reduce, args.inner, 1.0f, ctx);
    return run_plan<ArgReduce<false, float>, ArgReduce<false, ArgAcc>>(plan, x, args.indices, scratch, args.outer,
                                                                       args.reduce, args.inner, 1.0f, ctx);
}

}  // namespace kn::cuda
