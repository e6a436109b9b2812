// gemm.cl: C = alpha * op(A) * op(B) + beta * C for row-major float32 matrices, in strided batches
// (kn_gemm_f32). Four kernels, gemm_nn / gemm_nt / gemm_tn / gemm_tt, one per pair of transposes,
// so each copies its tiles with the right access pattern and no run-time branch; plus gemm_scale_c
// for C = beta * C (k == 0 or alpha == 0, where BLAS reads neither A nor B).
//
// Technique (the classic two-level blocking of GPU SGEMMs, as in CLBlast's xgemm and siboehm's
// CUDA SGEMM series, with BLIS-style packing on a CPU):
//   - a work-group owns a TILE_M x TILE_N block of C and walks k in steps of TILE_K; per step the
//     work-items copy a TILE_M x TILE_K block of op(A) and a TILE_K x TILE_N block of op(B) into
//     local memory (vector loads from global, edge tiles zero-filled), then barrier;
//   - each work-item keeps a WPT_M x WPT_N block of C in registers as float VEC_N vectors and, per
//     k, loads WPT_N/VEC_N vectors of B and WPT_M scalars of A from local memory for WPT_M*WPT_N
//     multiply-adds. Column vectors are interleaved across work-items (vector v of work-item tx is
//     at column (v*DIM_N + tx)*VEC_N) so neighbouring work-items touch neighbouring words;
//   - B is stored k-major in local memory ([k][n], vector-loadable); A keeps its global layout
//     ([m][k] or, transposed, [k][m]) so its copy is a plain vector copy either way; a transposed
//     B is turned around while being stored;
//   - the batch index is the third NDRange dimension (a stride of 0 shares a matrix), the C tiles
//     of one matrix are flattened into the first, so no dimension exceeds the 65535 work-groups
//     some GPUs allow in y and z.
// Napkin math per k step of a work-group: 2*TILE_M*TILE_N*TILE_K flops against
// (TILE_M + TILE_N)*TILE_K words copied; with 64x64 tiles that is 32 flops per word moved from global
// memory, and WPT_M*WPT_N / (WPT_M + WPT_N/VEC_N) multiply-adds per local-memory access in the inner
// loop (4x4, float4: 3.2; 8x32, float16: 25.6).
//
// Tunables are chosen per device type by the host (opencl_device.cpp passes -D options):
//   GPUs: 64x64x16 tiles, 4x4 per work-item, float4 (256 work-items), the shape that CLBlast's
//         untuned defaults and most SGEMM tutorials start from on NVIDIA and AMD hardware.
//   CPUs (PoCL): a work-group runs as loops on one core, local memory is ordinary cached memory and
//         explicit float16 vectors map onto AVX-512 registers, so the best shape is a BLIS-like
//         single-work-item kernel (GEMM_SINGLE_WORK_ITEM below): 64x128 C blocks, k blocks of 128,
//         an 8 x 32 register block (16 zmm accumulators), fma().
// Measured through libkernels (PoCL 3.1, 2 cores of an AMD EPYC with AVX-512, square n, best of 7
// rounds interleaved with CLBlast 1.5.3, untuned, on the same device; other jobs shared the cores):
//   n = 256 / 512 / 1024      NN: 265 / 320 / 308 GFLOP/s, CLBlastSgemm 20 / 20 / 26 (12-16x)
//                             TN: 270 / 322 / 302,         CLBlastSgemm 21 / 22 / 30 (10-15x)
//                             NT: 164 / 180 / 181,         CLBlastSgemm 17 / 17 / 28 (6-10x)
//                             TT: 161 / 179 / 179,         CLBlastSgemm 19 / 19 / 29 (6-9x)
//   (a transposed B is turned around element by element while packed; that costs NT / TT ~40%)
//   Tile shapes tried on PoCL (NN, n=1024): the GPU shape 64x64x16 / 4x4 float4 (256 work-items)
//   3 GFLOP/s; work-group tiles with 8x32 float16 register blocks 25-60 (values live across
//   barriers are spilled per work-item); single work-item 64x64x128 313, 64x128x128 325,
//   128x128x128 339, 128x128x256 342 -- 64x128 chosen to keep more work-groups for small matrices.
//   fma() instead of mad(): mad compiled to separate multiply and add on PoCL.
//
// Edge handling: any m, n, k >= 1. A tile that crosses the matrix edge is copied element by element
// with bounds checks and zeros outside, and C is stored element by element where its tile crosses
// the edge; interior tiles use vector copies and vector stores.

#ifndef TILE_M
#define TILE_M 64  // rows of C per work-group
#endif
#ifndef TILE_N
#define TILE_N 64  // columns of C per work-group
#endif
#ifndef TILE_K
#define TILE_K 16  // depth of the A and B tiles staged in local memory per barrier pair
#endif
#ifndef WPT_M
#define WPT_M 4    // rows of C per work-item (register block height)
#endif
#ifndef WPT_N
#define WPT_N 4    // columns of C per work-item (register block width), a multiple of VEC_N
#endif
#ifndef VEC_N
#define VEC_N 4    // vector width along n: B loads from local memory, accumulators, C stores
#endif
#ifndef VEC_COPY
#define VEC_COPY 4 // vector width of the global -> local tile copies
#endif
#ifndef PAD_A
#define PAD_A 1    // extra words per local row of A: spreads a column walk over the banks
#endif
#ifndef PAD_B
#define PAD_B 0    // extra words per local row of B (keep a multiple of VEC_N for aligned vloads)
#endif

#ifndef GEMM_USE_FMA
#define GEMM_USE_FMA 0 // 1 where the device has hardware fused multiply-add (CL_FP_FMA): mad() may
                       // otherwise compile to a multiply and an add (PoCL does), at half the rate
#endif
#ifndef GEMM_SINGLE_WORK_ITEM
#define GEMM_SINGLE_WORK_ITEM 0 // 1: one work-item per work-group walks all its micro-tiles (CPUs)
#endif

#if GEMM_USE_FMA
#define GEMM_MAD(a, b, c) fma((a), (b), (c))
#else
#define GEMM_MAD(a, b, c) mad((a), (b), (c))
#endif

#if GEMM_SINGLE_WORK_ITEM
#define DIM_N 1
#define DIM_M 1
#else
#define DIM_N (TILE_N / WPT_N)   // work-items along n
#define DIM_M (TILE_M / WPT_M)   // work-items along m
#endif
#define THREADS (DIM_M * DIM_N)  // work-items per work-group
#define VECS_N (WPT_N / VEC_N)   // accumulator vectors per row of a work-item

// Local rows: A is [TILE_M][TILE_K + PAD_A] untransposed or [TILE_K][TILE_M + PAD_A] transposed.
#define LDA_N (TILE_K + PAD_A)
#define LDA_T (TILE_M + PAD_A)
#define LDB_L (TILE_N + PAD_B)
#define A_LOCAL_N (TILE_M * LDA_N)
#define A_LOCAL_T (TILE_K * LDA_T)
#define A_LOCAL (A_LOCAL_N > A_LOCAL_T ? A_LOCAL_N : A_LOCAL_T)
#define B_LOCAL (TILE_K * LDB_L)

#if TILE_M % WPT_M != 0 || TILE_N % WPT_N != 0 || WPT_N % VEC_N != 0
#error "gemm.cl: TILE_M must be a multiple of WPT_M, TILE_N of WPT_N, WPT_N of VEC_N"
#endif
#if TILE_K % VEC_COPY != 0 || TILE_M % VEC_COPY != 0 || TILE_N % VEC_COPY != 0
#error "gemm.cl: TILE_M, TILE_N and TILE_K must be multiples of VEC_COPY"
#endif
#if (TILE_M * TILE_K / VEC_COPY) % THREADS != 0 || (TILE_N * TILE_K / VEC_COPY) % THREADS != 0
#error "gemm.cl: each tile copy must split evenly over the work-items"
#endif

// floatN, vloadN and vstoreN for the two vector widths in use.
#define GEMM_CAT_(a, b) a##b
#define GEMM_CAT(a, b) GEMM_CAT_(a, b)
#if VEC_N == 1
typedef float gemm_vec;
#define GEMM_VLOAD(p) (*(p))
#define GEMM_VSTORE(v, p) (*(p) = (v))
#else
typedef GEMM_CAT(float, VEC_N) gemm_vec;
#define GEMM_VLOAD(p) GEMM_CAT(vload, VEC_N)(0, (p))
#define GEMM_VSTORE(v, p) GEMM_CAT(vstore, VEC_N)((v), 0, (p))
#endif
#if VEC_COPY == 1
typedef float copy_vec;
#define COPY_VLOAD(p) (*(p))
#define COPY_VSTORE(v, p) (*(p) = (v))
#else
typedef GEMM_CAT(float, VEC_COPY) copy_vec;
#define COPY_VLOAD(p) GEMM_CAT(vload, VEC_COPY)(0, (p))
#define COPY_VSTORE(v, p) GEMM_CAT(vstore, VEC_COPY)((v), 0, (p))
#endif

#if GEMM_SINGLE_WORK_ITEM
// ---- One work-item per work-group (CPUs) ------------------------------------------------------
// PoCL and other CPU runtimes run a work-group as a loop over its work-items on one core, and every
// value that lives across a barrier is spilled to a per-work-item array at the barrier. A tiled GPU
// kernel therefore loses most of its time there (measured: the 256-work-item shape ran at 3 GFLOP/s
// on PoCL). Here a single work-item packs the A and B blocks into local memory (L1/L2-resident) and
// walks the micro-tiles of its C block itself, BLIS style, with the C block accumulated in local
// memory across k blocks, so no barrier and no per-work-item state exist at all. Only the valid
// depth of a k block and the micro-tiles holding valid elements are computed, so thin and small
// matrices do not pay for a whole padded tile.

// Copies the valid_rows x valid_cols block at src (row-major, leading dimension ld) into dst
// (leading dimension dst_ld), transposed when transpose_store is set, and zero-fills the margin up
// to fill_rows x fill_cols: the part of the last micro-tile that lies outside the matrix. Nothing
// else is touched, so a block with k = 7 costs 7 columns of copying, not a whole TILE_K.
inline void gemm_pack(__global const float* src, long ld, int valid_rows, int valid_cols, int fill_rows,
                      int fill_cols, __local float* dst, int dst_ld, int transpose_store) {
    for (int r = 0; r < fill_rows; ++r) {
        int c = 0;
        if (r < valid_rows) {
            __global const float* row = src + r * ld;
            for (; c + VEC_COPY <= valid_cols; c += VEC_COPY) {
                const copy_vec v = COPY_VLOAD(row + c);
                if (!transpose_store) {
                    COPY_VSTORE(v, dst + r * dst_ld + c);
                } else {
#if VEC_COPY == 1
                    dst[c * dst_ld + r] = v;
#else
                    float values[VEC_COPY];
                    COPY_VSTORE(v, values);
                    for (int j = 0; j < VEC_COPY; ++j) dst[(c + j) * dst_ld + r] = values[j];
#endif
                }
            }
            for (; c < valid_cols; ++c) {
                if (!transpose_store) dst[r * dst_ld + c] = row[c];
                else dst[c * dst_ld + r] = row[c];
            }
        }
        for (; c < fill_cols; ++c) {
            if (!transpose_store) dst[r * dst_ld + c] = 0.0f;
            else dst[c * dst_ld + r] = 0.0f;
        }
    }
}

inline void gemm_tile(const long m, const long n, const long k, const float alpha, const float beta,
                      __global const float* a, const long lda, const long stride_a,
                      __global const float* b, const long ldb, const long stride_b,
                      __global float* c, const long ldc, const long stride_c, const long first_batch,
                      const int trans_a, const int trans_b, __local float* a_tile,
                      __local float* b_tile, __local float* c_tile) {
    const long batch = first_batch + get_group_id(2);
    a += batch * stride_a;
    b += batch * stride_b;
    c += batch * stride_c;

    const long tiles_n = (n + TILE_N - 1) / TILE_N;
    const long tile = get_group_id(0);
    const long m0 = (tile / tiles_n) * TILE_M;
    const long n0 = (tile % tiles_n) * TILE_N;
    const int rows = (int)min((long)TILE_M, m - m0);  // valid rows and columns of this C block
    const int cols = (int)min((long)TILE_N, n - n0);
    // Only micro-tiles holding at least one valid element are computed (small m, n stay cheap).
    const int micro_rows = (rows + WPT_M - 1) / WPT_M * WPT_M;
    const int micro_cols = (cols + WPT_N - 1) / WPT_N * WPT_N;

    for (int i = 0; i < micro_rows * TILE_N; i += VEC_N) GEMM_VSTORE((gemm_vec)(0.0f), c_tile + i);

    for (long k0 = 0; k0 < k; k0 += TILE_K) {
        const int depth = (int)min((long)TILE_K, k - k0);  // only the valid k range is multiplied
        if (!trans_a) gemm_pack(a + m0 * lda + k0, lda, rows, depth, micro_rows, depth, a_tile, LDA_N, 0);
        else gemm_pack(a + k0 * lda + m0, lda, depth, rows, depth, micro_rows, a_tile, LDA_T, 0);
        if (!trans_b) gemm_pack(b + k0 * ldb + n0, ldb, depth, cols, depth, micro_cols, b_tile, LDB_L, 0);
        else gemm_pack(b + n0 * ldb + k0, ldb, cols, depth, micro_cols, depth, b_tile, LDB_L, 1);

        for (int mi = 0; mi < micro_rows; mi += WPT_M) {
            for (int ni = 0; ni < micro_cols; ni += WPT_N) {
                gemm_vec acc[WPT_M][VECS_N];
#pragma unroll
                for (int i = 0; i < WPT_M; ++i)
#pragma unroll
                    for (int v = 0; v < VECS_N; ++v)
                        acc[i][v] = GEMM_VLOAD(c_tile + (mi + i) * TILE_N + ni + v * VEC_N);
                for (int kk = 0; kk < depth; ++kk) {
                    gemm_vec b_vec[VECS_N];
#pragma unroll
                    for (int v = 0; v < VECS_N; ++v)
                        b_vec[v] = GEMM_VLOAD(b_tile + kk * LDB_L + ni + v * VEC_N);
#pragma unroll
                    for (int i = 0; i < WPT_M; ++i) {
                        const int row = mi + i;
                        const float a_val = trans_a ? a_tile[kk * LDA_T + row] : a_tile[row * LDA_N + kk];
#pragma unroll
                        for (int v = 0; v < VECS_N; ++v)
                            acc[i][v] = GEMM_MAD((gemm_vec)(a_val), b_vec[v], acc[i][v]);
                    }
                }
#pragma unroll
                for (int i = 0; i < WPT_M; ++i)
#pragma unroll
                    for (int v = 0; v < VECS_N; ++v)
                        GEMM_VSTORE(acc[i][v], c_tile + (mi + i) * TILE_N + ni + v * VEC_N);
            }
        }
    }

    // C = alpha * AB + beta * C; beta == 0 never reads C (NaN there must not propagate).
    for (int i = 0; i < rows; ++i) {
        __global float* dst = c + (m0 + i) * ldc + n0;
        __local const float* src = c_tile + i * TILE_N;
        int j = 0;
        for (; j + VEC_N <= cols; j += VEC_N) {
            const gemm_vec result = (gemm_vec)(alpha) * GEMM_VLOAD(src + j);
            if (beta == 0.0f) GEMM_VSTORE(result, dst + j);
            else GEMM_VSTORE(GEMM_MAD((gemm_vec)(beta), GEMM_VLOAD(dst + j), result), dst + j);
        }
        for (; j < cols; ++j) {
            const float result = alpha * src[j];
            dst[j] = beta == 0.0f ? result : GEMM_MAD(beta, dst[j], result);
        }
    }
}

#define C_LOCAL (TILE_M * TILE_N)

#else
// ---- Work-groups of DIM_M x DIM_N work-items sharing the tiles (GPUs) ------------------------

// Copies a rows x cols block of a row-major global matrix (leading dimension ld) to local memory.
// transpose_store == 0: dst[r * dst_ld + c]; 1: dst[c * dst_ld + r]. rows * cols is a multiple of
// VEC_COPY * THREADS (checked above), and after inlining rows, cols and the flags are constants, so
// the loop has a fixed trip count the compiler can unroll. Interior version: no bounds checks.
inline void gemm_copy_tile(__global const float* src, long ld, int rows, int cols,
                           __local float* dst, int dst_ld, int transpose_store, int tid) {
    const int vecs_per_row = cols / VEC_COPY;
    const int per_thread = rows * vecs_per_row / THREADS;
    for (int l = 0; l < per_thread; ++l) {
        const int idx = tid + l * THREADS;
        const int r = idx / vecs_per_row;
        const int c = (idx % vecs_per_row) * VEC_COPY;
        const copy_vec v = COPY_VLOAD(src + r * ld + c);
        if (!transpose_store) {
            COPY_VSTORE(v, dst + r * dst_ld + c);
        } else {
#if VEC_COPY == 1
            dst[c * dst_ld + r] = v;
#else
            float values[VEC_COPY];
            COPY_VSTORE(v, values);
#pragma unroll
            for (int j = 0; j < VEC_COPY; ++j) dst[(c + j) * dst_ld + r] = values[j];
#endif
        }
    }
}

// Edge version: element by element, zeros outside valid_rows x valid_cols, so the multiply-adds of
// the padded part add exactly nothing to the C elements that get stored.
inline void gemm_copy_tile_edge(__global const float* src, long ld, int rows, int cols,
                                __local float* dst, int dst_ld, int transpose_store, int tid,
                                long valid_rows, long valid_cols) {
    for (int idx = tid; idx < rows * cols; idx += THREADS) {
        const int r = idx / cols;
        const int c = idx % cols;
        const float v = (r < valid_rows && c < valid_cols) ? src[r * ld + c] : 0.0f;
        if (!transpose_store) dst[r * dst_ld + c] = v;
        else dst[c * dst_ld + r] = v;
    }
}

// The body shared by the four transpose variants; trans_a and trans_b are literal constants in
// each caller, so every branch on them folds away.
inline void gemm_tile(const long m, const long n, const long k, const float alpha, const float beta,
                      __global const float* a, const long lda, const long stride_a,
                      __global const float* b, const long ldb, const long stride_b,
                      __global float* c, const long ldc, const long stride_c, const long first_batch,
                      const int trans_a, const int trans_b, __local float* a_tile,
                      __local float* b_tile, __local float* c_tile) {
    const long batch = first_batch + get_group_id(2);
    a += batch * stride_a;
    b += batch * stride_b;
    c += batch * stride_c;

    const long tiles_n = (n + TILE_N - 1) / TILE_N;
    const long tile = get_group_id(0);
    const long m0 = (tile / tiles_n) * TILE_M;
    const long n0 = (tile % tiles_n) * TILE_N;
    const int tx = get_local_id(0);
    const int ty = get_local_id(1);
    const int tid = ty * DIM_N + tx;
    const int full_m = m0 + TILE_M <= m;
    const int full_n = n0 + TILE_N <= n;

    gemm_vec acc[WPT_M][VECS_N];
#pragma unroll
    for (int i = 0; i < WPT_M; ++i)
#pragma unroll
        for (int v = 0; v < VECS_N; ++v) acc[i][v] = (gemm_vec)(0.0f);

    for (long k0 = 0; k0 < k; k0 += TILE_K) {
        const int full_k = k0 + TILE_K <= k;
        // op(A) rows m0.., columns k0..: stored [m][k] (lda >= k) or [k][m] (lda >= m).
        if (!trans_a) {
            __global const float* src = a + m0 * lda + k0;
            if (full_m && full_k) gemm_copy_tile(src, lda, TILE_M, TILE_K, a_tile, LDA_N, 0, tid);
            else gemm_copy_tile_edge(src, lda, TILE_M, TILE_K, a_tile, LDA_N, 0, tid, m - m0, k - k0);
        } else {
            __global const float* src = a + k0 * lda + m0;
            if (full_m && full_k) gemm_copy_tile(src, lda, TILE_K, TILE_M, a_tile, LDA_T, 0, tid);
            else gemm_copy_tile_edge(src, lda, TILE_K, TILE_M, a_tile, LDA_T, 0, tid, k - k0, m - m0);
        }
        // op(B) rows k0.., columns n0..: stored [k][n] (ldb >= n) or [n][k] (ldb >= k); local [k][n].
        if (!trans_b) {
            __global const float* src = b + k0 * ldb + n0;
            if (full_n && full_k) gemm_copy_tile(src, ldb, TILE_K, TILE_N, b_tile, LDB_L, 0, tid);
            else gemm_copy_tile_edge(src, ldb, TILE_K, TILE_N, b_tile, LDB_L, 0, tid, k - k0, n - n0);
        } else {
            __global const float* src = b + n0 * ldb + k0;
            if (full_n && full_k) gemm_copy_tile(src, ldb, TILE_N, TILE_K, b_tile, LDB_L, 1, tid);
            else gemm_copy_tile_edge(src, ldb, TILE_N, TILE_K, b_tile, LDB_L, 1, tid, n - n0, k - k0);
        }
        barrier(CLK_LOCAL_MEM_FENCE);

#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            gemm_vec b_vec[VECS_N];
#pragma unroll
            for (int v = 0; v < VECS_N; ++v)
                b_vec[v] = GEMM_VLOAD(b_tile + kk * LDB_L + (v * DIM_N + tx) * VEC_N);
#pragma unroll
            for (int i = 0; i < WPT_M; ++i) {
                const int row = ty * WPT_M + i;
                const float a_val = trans_a ? a_tile[kk * LDA_T + row] : a_tile[row * LDA_N + kk];
#pragma unroll
                for (int v = 0; v < VECS_N; ++v) acc[i][v] = GEMM_MAD((gemm_vec)(a_val), b_vec[v], acc[i][v]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    // C = alpha * acc + beta * C; beta == 0 never reads C (NaN there must not propagate).
#pragma unroll
    for (int i = 0; i < WPT_M; ++i) {
        const long row = m0 + ty * WPT_M + i;
#pragma unroll
        for (int v = 0; v < VECS_N; ++v) {
            const long col = n0 + (v * DIM_N + tx) * VEC_N;
            __global float* dst = c + row * ldc + col;
            const gemm_vec result = (gemm_vec)(alpha) * acc[i][v];
            if (full_m && full_n) {
                if (beta == 0.0f) GEMM_VSTORE(result, dst);
                else GEMM_VSTORE(mad((gemm_vec)(beta), GEMM_VLOAD(dst), result), dst);
            } else if (row < m) {
                float values[VEC_N];
                GEMM_VSTORE(result, values);
#pragma unroll
                for (int j = 0; j < VEC_N; ++j) {
                    if (col + j < n) dst[j] = beta == 0.0f ? values[j] : mad(beta, dst[j], values[j]);
                }
            }
        }
    }
}

#define C_LOCAL 1  // the C block lives in registers

#endif  // GEMM_SINGLE_WORK_ITEM

#define GEMM_KERNEL(name, trans_a, trans_b)                                                          \
    __kernel __attribute__((reqd_work_group_size(DIM_N, DIM_M, 1))) void name(                      \
        const long m, const long n, const long k, const float alpha, const float beta,              \
        __global const float* a, const long lda, const long stride_a, __global const float* b,      \
        const long ldb, const long stride_b, __global float* c, const long ldc,                     \
        const long stride_c, const long first_batch) {                                             \
        __local float a_tile[A_LOCAL];                                                              \
        __local float b_tile[B_LOCAL];                                                              \
        __local float c_tile[C_LOCAL];                                                              \
        gemm_tile(m, n, k, alpha, beta, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c,       \
                  first_batch, trans_a, trans_b, a_tile, b_tile, c_tile);                           \
    }

GEMM_KERNEL(gemm_nn, 0, 0)
GEMM_KERNEL(gemm_nt, 0, 1)
GEMM_KERNEL(gemm_tn, 1, 0)
GEMM_KERNEL(gemm_tt, 1, 1)

// C = beta * C over an m x n window of each batch (beta == 0 writes zeros without reading C): BLAS
// semantics for k == 0 or alpha == 0. Global size (m * n rounded up, 1, batches); the flat index
// keeps the large dimension in x.
__kernel void gemm_scale_c(const long m, const long n, const float beta, __global float* c,
                           const long ldc, const long stride_c, const long first_batch) {
    const long idx = get_global_id(0);
    if (idx >= m * n) return;
    __global float* p = c + (first_batch + get_global_id(2)) * stride_c + (idx / n) * ldc + idx % n;
    *p = beta == 0.0f ? 0.0f : beta * *p;
}
