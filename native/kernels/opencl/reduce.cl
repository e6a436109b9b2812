// reduce.cl: sum / mean / max / min / sum of squares and argmax / argmin over the middle axis of
// x viewed as [outer, reduce, inner] (kn_reduce_f32, kn_argreduce_f32).
//
// Technique: work-group tree reductions in local memory; no atomics, so every result is bitwise
// reproducible run to run. Two layouts:
//   - rows (inner == 1): a work-group reduces one contiguous row, or one chunk of it. Each
//     work-item first folds its share with REDUCE_VEC-wide vector loads (GPUs: consecutive
//     work-items read consecutive vectors, coalesced; CPUs: one contiguous block per work-item,
//     sequential for the prefetcher), then the REDUCE_WG partial values meet in a
//     log2(REDUCE_WG)-level tree;
//   - columns (inner > 1): a work-group is REDUCE_COLS_X work-items across the columns, each
//     owning REDUCE_VEC consecutive columns (GPUs: 1, so a warp reads contiguous memory; CPUs: the
//     SIMD width, one vector load per row), by REDUCE_WG / REDUCE_COLS_X lanes that split the
//     reduced axis; the lanes' partial values meet in a tree per column.
// Long reductions with few outputs (the all-elements sum: outer = inner = 1, millions of elements)
// run in two passes: the host splits the reduced axis into `chunks`, pass one writes
// [outer, chunks, inner] partial results to a device-owned scratch buffer, pass two reduces those
// with the same kernels (chunks = 1). MEAN divides once, in the last pass.
// Float order: within a work-item a running sum over at most reduce / (chunks * REDUCE_WG) values
// (REDUCE_VEC independent lanes), then trees; the error grows like log(n) plus a short running sum.
// MAX / MIN propagate NaN. ARGMAX / ARGMIN return the first index of the extreme value, NaN
// counting as the extreme (first NaN wins), as kernels.h specifies; ties between partial results
// are broken by index, so the answer does not depend on the tree shape.
// Napkin math: 4 bytes read per element and one add; memory bound everywhere.

#ifndef REDUCE_WG
#define REDUCE_WG 256     // work-items per work-group (a power of two)
#endif
#ifndef REDUCE_COLS_X
#define REDUCE_COLS_X 32  // columns per work-group in the inner > 1 layout (a warp's width)
#endif
#ifndef REDUCE_VEC
#define REDUCE_VEC 1      // vector width of row loads and columns per work-item (CPUs: SIMD width)
#endif

#ifndef REDUCE_CONTIGUOUS
#define REDUCE_CONTIGUOUS 0 // 1: each work-item of a row reduction streams one contiguous block
                            // (CPUs, where a work-group is a loop on one core and the hardware
                            // prefetcher wants sequential addresses); 0: interleaved (coalesced)
#endif

#define REDUCE_COLS_Y (REDUCE_WG / REDUCE_COLS_X)  // lanes along the reduced axis per column

#if (REDUCE_WG & (REDUCE_WG - 1)) != 0 || REDUCE_WG % REDUCE_COLS_X != 0
#error "reduce.cl: REDUCE_WG must be a power of two and a multiple of REDUCE_COLS_X"
#endif

#define REDUCE_CAT_(a, b) a##b
#define REDUCE_CAT(a, b) REDUCE_CAT_(a, b)
#if REDUCE_VEC == 1
typedef float reduce_vec;
#define REDUCE_VLOAD(p) (*(p))
#else
typedef REDUCE_CAT(float, REDUCE_VEC) reduce_vec;
#define REDUCE_VLOAD(p) REDUCE_CAT(vload, REDUCE_VEC)(0, (p))
#endif

// Op names are sum, sumsq, maximum, minimum: not max/min, which some runtimes define as macros that
// would expand inside the kernel-generating macros below.
// Combines: sum (also for SUM_SQUARES, whose square is applied when an element is read), max and
// min that let NaN win.
inline float reduce_combine_sum(float a, float b) { return a + b; }
inline float reduce_combine_sumsq(float a, float b) { return a + b; }
inline float reduce_combine_maximum(float a, float b) { return (a > b || isnan(a)) ? a : b; }
inline float reduce_combine_minimum(float a, float b) { return (a < b || isnan(a)) ? a : b; }
inline reduce_vec reduce_vcombine_sum(reduce_vec a, reduce_vec b) { return a + b; }
inline reduce_vec reduce_vcombine_sumsq(reduce_vec a, reduce_vec b) { return a + b; }
inline reduce_vec reduce_vcombine_maximum(reduce_vec a, reduce_vec b) {
    return select(b, a, (a > b) | isnan(a));
}
inline reduce_vec reduce_vcombine_minimum(reduce_vec a, reduce_vec b) {
    return select(b, a, (a < b) | isnan(a));
}
inline float reduce_read_sum(float x) { return x; }
inline float reduce_read_sumsq(float x) { return x * x; }
inline float reduce_read_maximum(float x) { return x; }
inline float reduce_read_minimum(float x) { return x; }
inline reduce_vec reduce_vread_sum(reduce_vec x) { return x; }
inline reduce_vec reduce_vread_sumsq(reduce_vec x) { return x * x; }
inline reduce_vec reduce_vread_maximum(reduce_vec x) { return x; }
inline reduce_vec reduce_vread_minimum(reduce_vec x) { return x; }
#define REDUCE_IDENTITY_sum 0.0f
#define REDUCE_IDENTITY_sumsq 0.0f
#define REDUCE_IDENTITY_maximum (-INFINITY)
#define REDUCE_IDENTITY_minimum INFINITY

// Folds the lanes of a vector pairwise into one value.
#define REDUCE_HORIZONTAL(op, v, out)                                                              \
    {                                                                                              \
        float lanes_[REDUCE_VEC];                                                                  \
        REDUCE_STORE_LANES(v, lanes_);                                                             \
        for (int w_ = REDUCE_VEC / 2; w_ > 0; w_ /= 2)                                             \
            for (int l_ = 0; l_ < w_; ++l_) lanes_[l_] = reduce_combine_##op(lanes_[l_], lanes_[l_ + w_]); \
        out = lanes_[0];                                                                           \
    }
#if REDUCE_VEC == 1
#define REDUCE_STORE_LANES(v, p) ((p)[0] = (v))
#else
#define REDUCE_STORE_LANES(v, p) REDUCE_CAT(vstore, REDUCE_VEC)((v), 0, (p))
#endif

// Tree over the work-group's partial values in `scratch`; the result ends in scratch[0].
#define REDUCE_TREE(op, scratch, lid, count)                                                       \
    for (int s_ = (count) / 2; s_ > 0; s_ /= 2) {                                                  \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        if ((lid) < s_) scratch[lid] = reduce_combine_##op(scratch[lid], scratch[(lid) + s_]);     \
    }                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);

// rows: x is [rows, reduce]; work-group g reduces chunk (g % chunks) of row (g / chunks), the
// elements [chunk * chunk_len, min(reduce, (chunk + 1) * chunk_len)), and writes y[g] / divisor.
// cols: x is [outer, reduce, inner]; work-group g covers REDUCE_COLS_X inner indices of one
// (outer, chunk) pair and writes y[(o * chunks + chunk) * inner + i] / divisor.
#define REDUCE_KERNELS(op)                                                                         \
    __kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1))) void reduce_rows_##op(         \
        __global const float* x, __global float* y, const long reduce, const long chunks,         \
        const long chunk_len, const float divisor) {                                               \
        __local float scratch[REDUCE_WG];                                                          \
        const long g = get_group_id(0);                                                            \
        const int lid = get_local_id(0);                                                           \
        const long row = g / chunks, chunk = g % chunks;                                           \
        const long begin = chunk * chunk_len;                                                      \
        const long end = min(reduce, begin + chunk_len);                                           \
        __global const float* p = x + row * reduce + begin;                                        \
        const long vectors = (end - begin) / REDUCE_VEC;                                           \
        reduce_vec vacc = (reduce_vec)(REDUCE_IDENTITY_##op);                                      \
        const long v_per_item = REDUCE_CONTIGUOUS ? (vectors + REDUCE_WG - 1) / REDUCE_WG : 1;     \
        const long v_begin = REDUCE_CONTIGUOUS ? lid * v_per_item : lid;                           \
        const long v_end = REDUCE_CONTIGUOUS ? min(vectors, v_begin + v_per_item) : vectors;       \
        const long v_step = REDUCE_CONTIGUOUS ? 1 : REDUCE_WG;                                     \
        for (long v = v_begin; v < v_end; v += v_step)                                             \
            vacc = reduce_vcombine_##op(vacc, reduce_vread_##op(REDUCE_VLOAD(p + v * REDUCE_VEC))); \
        float acc;                                                                                 \
        REDUCE_HORIZONTAL(op, vacc, acc)                                                           \
        for (long r = vectors * REDUCE_VEC + lid; r < end - begin; r += REDUCE_WG)                 \
            acc = reduce_combine_##op(acc, reduce_read_##op(p[r]));                                \
        scratch[lid] = acc;                                                                        \
        REDUCE_TREE(op, scratch, lid, REDUCE_WG)                                                   \
        if (lid == 0) y[g] = scratch[0] / divisor;                                                 \
    }                                                                                              \
    __kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1))) void reduce_cols_##op(         \
        __global const float* x, __global float* y, const long reduce, const long inner,          \
        const long chunks, const long chunk_len, const float divisor) {                            \
        __local float scratch[REDUCE_WG * REDUCE_VEC];                                             \
        const long block = REDUCE_COLS_X * REDUCE_VEC;                                             \
        const long inner_blocks = (inner + block - 1) / block;                                     \
        const long g = get_group_id(0);                                                            \
        const int lid = get_local_id(0);                                                           \
        const int tx = lid % REDUCE_COLS_X, ty = lid / REDUCE_COLS_X;                              \
        const long i = (g % inner_blocks) * block + tx * REDUCE_VEC;                               \
        const long rest = g / inner_blocks;                                                        \
        const long o = rest / chunks, chunk = rest % chunks;                                       \
        const long begin = chunk * chunk_len;                                                      \
        const long end = min(reduce, begin + chunk_len);                                           \
        __global const float* p = x + o * reduce * inner + i;                                      \
        reduce_vec acc = (reduce_vec)(REDUCE_IDENTITY_##op);                                       \
        if (i + REDUCE_VEC <= inner) {                                                             \
            for (long r = begin + ty; r < end; r += REDUCE_COLS_Y)                                 \
                acc = reduce_vcombine_##op(acc, reduce_vread_##op(REDUCE_VLOAD(p + r * inner)));  \
        } else if (i < inner) {                                                                    \
            float lanes[REDUCE_VEC];                                                               \
            for (int l = 0; l < REDUCE_VEC; ++l) lanes[l] = REDUCE_IDENTITY_##op;                   \
            for (long r = begin + ty; r < end; r += REDUCE_COLS_Y)                                 \
                for (int l = 0; l < inner - i; ++l)                                                \
                    lanes[l] = reduce_combine_##op(lanes[l], reduce_read_##op(p[r * inner + l]));   \
            acc = REDUCE_VLOAD(lanes);                                                             \
        }                                                                                          \
        REDUCE_STORE_LANES(acc, scratch + lid * REDUCE_VEC);                                       \
        for (int s = REDUCE_COLS_Y / 2; s > 0; s /= 2) {                                           \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
            if (ty < s) {                                                                          \
                for (int l = 0; l < REDUCE_VEC; ++l)                                               \
                    scratch[lid * REDUCE_VEC + l] = reduce_combine_##op(                           \
                        scratch[lid * REDUCE_VEC + l], scratch[(lid + s * REDUCE_COLS_X) * REDUCE_VEC + l]); \
            }                                                                                      \
        }                                                                                          \
        if (ty == 0) {                                                                             \
            for (int l = 0; l < REDUCE_VEC && i + l < inner; ++l)                                  \
                y[(o * chunks + chunk) * inner + i + l] = scratch[tx * REDUCE_VEC + l] / divisor;  \
        }                                                                                          \
    }

REDUCE_KERNELS(sum)
REDUCE_KERNELS(sumsq)
REDUCE_KERNELS(maximum)
REDUCE_KERNELS(minimum)

// ---- argmax / argmin --------------------------------------------------------------------------

// Whether candidate (v1, i1) beats (v2, i2). An index of -1 marks "no element seen yet".
inline int arg_better_maximum(float v1, long i1, float v2, long i2) {
    if (i1 < 0) return 0;
    if (i2 < 0) return 1;
    const int nan1 = isnan(v1), nan2 = isnan(v2);
    if (nan1 || nan2) return nan1 && (!nan2 || i1 < i2);  // NaN is the largest; first NaN wins
    return v1 > v2 || (v1 == v2 && i1 < i2);
}
inline int arg_better_minimum(float v1, long i1, float v2, long i2) {
    if (i1 < 0) return 0;
    if (i2 < 0) return 1;
    const int nan1 = isnan(v1), nan2 = isnan(v2);
    if (nan1 || nan2) return nan1 && (!nan2 || i1 < i2);  // NaN is the smallest; first NaN wins
    return v1 < v2 || (v1 == v2 && i1 < i2);
}

// Same two layouts as above. Pass one reads values only (the index of element r is r); pass two
// reads the partial values and their indices (has_index_in). The last pass writes indices only.
#define ARGREDUCE_KERNELS(op)                                                                      \
    __kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1))) void argreduce_rows_##op(      \
        __global const float* x, __global const long* index_in, __global float* value_out,        \
        __global long* index_out, const long reduce, const long chunks, const long chunk_len,     \
        const int has_index_in, const int has_value_out) {                                         \
        __local float values[REDUCE_WG];                                                           \
        __local long indices[REDUCE_WG];                                                           \
        const long g = get_group_id(0);                                                            \
        const int lid = get_local_id(0);                                                           \
        const long row = g / chunks, chunk = g % chunks;                                           \
        const long begin = chunk * chunk_len;                                                      \
        const long end = min(reduce, begin + chunk_len);                                           \
        float best = 0.0f;                                                                         \
        long best_index = -1;                                                                      \
        for (long r = begin + lid; r < end; r += REDUCE_WG) {                                      \
            const float v = x[row * reduce + r];                                                   \
            const long idx = has_index_in ? index_in[row * reduce + r] : r;                        \
            if (arg_better_##op(v, idx, best, best_index)) { best = v; best_index = idx; }         \
        }                                                                                          \
        values[lid] = best;                                                                        \
        indices[lid] = best_index;                                                                 \
        for (int s = REDUCE_WG / 2; s > 0; s /= 2) {                                               \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
            if (lid < s && arg_better_##op(values[lid + s], indices[lid + s], values[lid], indices[lid])) { \
                values[lid] = values[lid + s];                                                     \
                indices[lid] = indices[lid + s];                                                   \
            }                                                                                      \
        }                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        if (lid == 0) {                                                                            \
            if (has_value_out) value_out[g] = values[0];                                           \
            index_out[g] = indices[0];                                                             \
        }                                                                                          \
    }                                                                                              \
    __kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1))) void argreduce_cols_##op(      \
        __global const float* x, __global const long* index_in, __global float* value_out,        \
        __global long* index_out, const long reduce, const long inner, const long chunks,         \
        const long chunk_len, const int has_index_in, const int has_value_out) {                   \
        __local float values[REDUCE_WG];                                                           \
        __local long indices[REDUCE_WG];                                                           \
        const long inner_blocks = (inner + REDUCE_COLS_X - 1) / REDUCE_COLS_X;                     \
        const long g = get_group_id(0);                                                            \
        const int lid = get_local_id(0);                                                           \
        const int tx = lid % REDUCE_COLS_X, ty = lid / REDUCE_COLS_X;                              \
        const long i = (g % inner_blocks) * REDUCE_COLS_X + tx;                                    \
        const long rest = g / inner_blocks;                                                        \
        const long o = rest / chunks, chunk = rest % chunks;                                       \
        const long begin = chunk * chunk_len;                                                      \
        const long end = min(reduce, begin + chunk_len);                                           \
        float best = 0.0f;                                                                         \
        long best_index = -1;                                                                      \
        if (i < inner) {                                                                           \
            for (long r = begin + ty; r < end; r += REDUCE_COLS_Y) {                               \
                const long at = (o * reduce + r) * inner + i;                                      \
                const float v = x[at];                                                             \
                const long idx = has_index_in ? index_in[at] : r;                                  \
                if (arg_better_##op(v, idx, best, best_index)) { best = v; best_index = idx; }     \
            }                                                                                      \
        }                                                                                          \
        values[lid] = best;                                                                        \
        indices[lid] = best_index;                                                                 \
        for (int s = REDUCE_COLS_Y / 2; s > 0; s /= 2) {                                           \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
            const int other = lid + s * REDUCE_COLS_X;                                             \
            if (ty < s && arg_better_##op(values[other], indices[other], values[lid], indices[lid])) { \
                values[lid] = values[other];                                                       \
                indices[lid] = indices[other];                                                     \
            }                                                                                      \
        }                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        if (ty == 0 && i < inner) {                                                                \
            const long at = (o * chunks + chunk) * inner + i;                                      \
            if (has_value_out) value_out[at] = values[tx];                                         \
            index_out[at] = indices[tx];                                                           \
        }                                                                                          \
    }

ARGREDUCE_KERNELS(maximum)
ARGREDUCE_KERNELS(minimum)
