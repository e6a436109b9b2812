/*
 * kernels.h: the one public header of libkernels, a library of hand-written deep-learning kernels
 * for the CPU, CUDA and OpenCL.
 *
 * Conventions (they make the header easy to bind from any language):
 *   - Every function returns a kn_status; results come back through out-pointers.
 *   - On failure, kn_last_error() returns a message for the calling thread that says what was wrong.
 *   - Only fixed-width integers, float, pointers and enums (always int-sized) cross this boundary.
 *   - Tensors are float32, dense, row-major. Shapes are (const int64_t* dims, int32_t rank).
 *   - Kernels are asynchronous on a GPU (one in-order queue per device); kn_buffer_read and
 *     kn_device_synchronize wait for the work queued before them.
 *   - All buffers passed to one call must live on the same device (KN_ERROR_DEVICE_MISMATCH otherwise).
 *   - The library never exits or aborts the process; a CUDA/OpenCL failure becomes a status.
 */
#ifndef KERNELS_H
#define KERNELS_H

#include <stdint.h>

#if defined(_WIN32)
#  if defined(KN_BUILDING_LIBRARY)
#    define KN_API __declspec(dllexport)
#  else
#    define KN_API __declspec(dllimport)
#  endif
#else
#  define KN_API __attribute__((visibility("default")))
#endif

/* KN_OPTIONAL marks a pointer parameter that may be NULL (the comment above each function says when).
 * It expands to nothing for every compiler, so the header stays plain C and the ABI does not depend on
 * it; only when tools/BindingsGen runs clang on this header (defining KN_BINDINGS_GEN) does it become an
 * annotation in clang's AST, from which the C# wrappers take which operands accept null. */
#if defined(__clang__) && defined(KN_BINDINGS_GEN)
#  define KN_OPTIONAL __attribute__((annotate("kn_optional")))
#else
#  define KN_OPTIONAL
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define KN_VERSION_MAJOR 0
#define KN_VERSION_MINOR 3
#define KN_VERSION_PATCH 0

/* Largest tensor rank accepted by the broadcasting kernels. */
#define KN_MAX_RANK 8

/* What a call returned. KN_OK is zero; everything else comes with kn_last_error(). */
typedef enum kn_status {
    KN_OK = 0,
    KN_ERROR_INVALID_ARGUMENT = 1, /* a null handle, a negative size, an unknown enum value */
    KN_ERROR_SHAPE_MISMATCH = 2,   /* shapes that do not fit together, a buffer too small for them */
    KN_ERROR_DEVICE_MISMATCH = 3,  /* buffers of two different devices in one call */
    KN_ERROR_OUT_OF_MEMORY = 4,    /* the device (or host) could not allocate */
    KN_ERROR_NOT_FOUND = 5,        /* an unknown device name or index */
    KN_ERROR_NOT_SUPPORTED = 6,    /* the backend does not implement this operation */
    KN_ERROR_BACKEND = 7,          /* a CUDA or OpenCL call failed (message has the API error) */
    KN_ERROR_INTERNAL = 8          /* a bug in this library: please report the message */
} kn_status;

typedef enum kn_device_kind {
    KN_DEVICE_CPU = 0,
    KN_DEVICE_CUDA = 1,
    KN_DEVICE_OPENCL = 2
} kn_device_kind;

typedef enum kn_transpose {
    KN_NO_TRANSPOSE = 0,
    KN_TRANSPOSE = 1
} kn_transpose;

/* y = f(x), elementwise. alpha is the op's parameter where it has one (see each line). */
typedef enum kn_unary_op {
    KN_UNARY_NEG = 0,        /* -x */
    KN_UNARY_ABS = 1,        /* |x| */
    KN_UNARY_EXP = 2,        /* e^x */
    KN_UNARY_LOG = 3,        /* ln x */
    KN_UNARY_SQRT = 4,       /* sqrt x */
    KN_UNARY_RSQRT = 5,      /* 1 / sqrt x */
    KN_UNARY_SQUARE = 6,     /* x^2 */
    KN_UNARY_RECIPROCAL = 7, /* 1 / x */
    KN_UNARY_TANH = 8,       /* tanh x */
    KN_UNARY_SIGMOID = 9,    /* 1 / (1 + e^-x) */
    KN_UNARY_RELU = 10,      /* max(x, 0) */
    KN_UNARY_LEAKY_RELU = 11,/* x > 0 ? x : alpha * x */
    KN_UNARY_GELU = 12,      /* x * Phi(x), the exact (erf) form */
    KN_UNARY_ELU = 13,       /* x > 0 ? x : alpha * (e^x - 1) */
    KN_UNARY_SOFTPLUS = 14,  /* ln(1 + e^x), computed without overflow */
    KN_UNARY_SIN = 15,       /* sin x */
    KN_UNARY_COS = 16,       /* cos x */
    KN_UNARY_SCALE = 17,     /* alpha * x */
    KN_UNARY_ADD_SCALAR = 18,/* x + alpha */
    KN_UNARY_POW_SCALAR = 19 /* x ^ alpha */
} kn_unary_op;

/* c = a op b, with NumPy broadcasting. */
typedef enum kn_binary_op {
    KN_BINARY_ADD = 0,
    KN_BINARY_SUB = 1,
    KN_BINARY_MUL = 2,
    KN_BINARY_DIV = 3,
    KN_BINARY_POW = 4,     /* a ^ b */
    KN_BINARY_MAXIMUM = 5, /* ties send the gradient to a */
    KN_BINARY_MINIMUM = 6, /* ties send the gradient to a */
    /* Comparisons: c = 1.0f where the relation holds, else 0.0f. A NaN operand compares false
     * (NOT_EQUAL: true), as IEEE 754 and PyTorch. Their gradients are zero (the backward writes
     * zeros to da and db). */
    KN_BINARY_EQUAL = 7,
    KN_BINARY_NOT_EQUAL = 8,
    KN_BINARY_LESS = 9,
    KN_BINARY_LESS_EQUAL = 10,
    KN_BINARY_GREATER = 11,
    KN_BINARY_GREATER_EQUAL = 12
} kn_binary_op;

typedef enum kn_reduce_op {
    KN_REDUCE_SUM = 0,
    KN_REDUCE_MEAN = 1,        /* NaN over zero elements, as NumPy */
    KN_REDUCE_MAX = 2,         /* an error over zero elements */
    KN_REDUCE_MIN = 3,         /* an error over zero elements */
    KN_REDUCE_SUM_SQUARES = 4  /* sum of x^2, for norms */
} kn_reduce_op;

typedef enum kn_argreduce_op {
    KN_ARGMAX = 0, /* first index of the largest value; NaN counts as largest */
    KN_ARGMIN = 1  /* first index of the smallest value; NaN counts as smallest */
} kn_argreduce_op;

/* Opaque handles. Devices belong to the library and are never freed; buffers are yours. */
/* Pooling windows. */
typedef enum kn_pool_op {
    KN_POOL_MAX = 0,   /* maximum over the window; padding never wins */
    KN_POOL_AVG = 1    /* mean over the window (see count_include_pad) */
} kn_pool_op;

typedef struct kn_device kn_device;
typedef struct kn_buffer kn_buffer;

/* ---- Library ---------------------------------------------------------------------------- */

/* The version this library was built as (KN_VERSION_* of its header). */
KN_API kn_status kn_get_version(int32_t* major, int32_t* minor, int32_t* patch);

/* The message of the last failed call on this thread ("" if none). Owned by the library; valid
 * until the next call on this thread. */
KN_API const char* kn_last_error(void);

/* Whether a backend is usable, and in words why not (static string, owned by the library):
 * "not compiled in", "no CUDA driver found", "no OpenCL platform", ... */
KN_API kn_status kn_backend_info(kn_device_kind kind, int32_t* available, const char** reason);

/* ---- Devices ---------------------------------------------------------------------------- */

/* Devices are enumerated once, on first use: the CPU (always index 0), then each CUDA device,
 * then each OpenCL device of every platform. */
KN_API kn_status kn_device_count(int32_t* count);
KN_API kn_status kn_device_get(int32_t index, kn_device** device);
/* Names: "cpu", "cuda:N", "opencl:N" ("cuda" and "opencl" mean index 0). */
KN_API kn_status kn_device_find(const char* name, kn_device** device);
/* Short name as accepted by kn_device_find, e.g. "cuda:0". Owned by the library. */
KN_API kn_status kn_device_name(const kn_device* device, const char** name);
/* What the hardware calls itself, e.g. "NVIDIA H100 80GB HBM3". Owned by the library. */
KN_API kn_status kn_device_description(const kn_device* device, const char** description);
KN_API kn_status kn_device_kind_of(const kn_device* device, kn_device_kind* kind);
/* Total memory in bytes (host RAM for the CPU). */
KN_API kn_status kn_device_memory(const kn_device* device, int64_t* total_bytes);
/* CUDA: compute capability; OpenCL: the device's OpenCL version; CPU: widest SIMD in bits, 0. */
KN_API kn_status kn_device_capability(const kn_device* device, int32_t* major, int32_t* minor);
/* Waits for all work queued on the device. */
KN_API kn_status kn_device_synchronize(kn_device* device);

/* Memory this library holds on a device. live_bytes / live_buffers: buffers created and not yet
 * freed (requested sizes). cached_bytes: memory freed by the caller but kept by the device's caching
 * allocator for reuse, so that a training step does not pay one driver allocation per intermediate
 * (cudaMalloc synchronises the whole device). peak_live_bytes: the high-water mark of live_bytes.
 * Any output pointer may be NULL. Setting the environment variable KN_CACHING_ALLOCATOR=0 before the
 * first call turns the cache off (every free returns memory at once; useful under compute-sanitizer). */
/* How the device's allocations were served since the process started: cache_hits from memory the
 * caching allocator kept, device_allocations from the driver (cudaMalloc, clCreateBuffer) or, on the
 * CPU, the system allocator. A training loop in its steady state adds only to cache_hits. Any output
 * pointer may be NULL. */
KN_API kn_status kn_device_allocation_counts(const kn_device* device, KN_OPTIONAL int64_t* cache_hits,
                                             KN_OPTIONAL int64_t* device_allocations);

KN_API kn_status kn_device_memory_stats(const kn_device* device, KN_OPTIONAL int64_t* live_bytes,
                                        KN_OPTIONAL int64_t* live_buffers, KN_OPTIONAL int64_t* cached_bytes,
                                        KN_OPTIONAL int64_t* peak_live_bytes);
/* Returns every cached (freed but kept) block of the device to the driver or the system, and the
 * workspace the backend keeps between calls (reduction partials, split-K sums; made again on demand). */
KN_API kn_status kn_device_trim(kn_device* device);

/* ---- Buffers ---------------------------------------------------------------------------- */

/* Allocates bytes (may be 0) on a device. Contents are undefined until written. */
KN_API kn_status kn_buffer_create(kn_device* device, int64_t bytes, kn_buffer** buffer);
/* Frees a buffer; NULL is allowed and does nothing. Handles are never reused: a freed handle passed
 * to any call (freeing it again included) is refused with KN_ERROR_INVALID_ARGUMENT, even after its
 * memory went to a new buffer. */
KN_API kn_status kn_buffer_free(KN_OPTIONAL kn_buffer* buffer);
KN_API kn_status kn_buffer_size(const kn_buffer* buffer, int64_t* bytes);
KN_API kn_status kn_buffer_device(const kn_buffer* buffer, kn_device** device);
/* Host -> buffer; returns when src may be reused. Offsets and sizes in bytes. */
KN_API kn_status kn_buffer_write(kn_buffer* dst, int64_t dst_offset, const void* src, int64_t bytes);
/* Buffer -> host; waits for queued work that writes the buffer. */
KN_API kn_status kn_buffer_read(const kn_buffer* src, int64_t src_offset, void* dst, int64_t bytes);
/* Buffer -> buffer, on one device or across devices (staged through the host). */
KN_API kn_status kn_buffer_copy(kn_buffer* dst, int64_t dst_offset, const kn_buffer* src,
                                int64_t src_offset, int64_t bytes);
/* Sets count float32 elements, starting at element offset, to value. */
KN_API kn_status kn_buffer_fill_f32(kn_buffer* dst, int64_t offset, int64_t count, float value);
/* The address of byte offset in the buffer's memory, for a library that reads and writes device
 * memory itself (a CUDA-aware MPI): a host pointer on the CPU, a CUDA device pointer on CUDA, NULL for
 * an empty buffer. KN_ERROR_NOT_SUPPORTED on OpenCL (a cl_mem is a handle, not an address). Valid
 * until the buffer is freed; kernels are asynchronous on a GPU, so kn_device_synchronize before
 * another library touches the memory. offset may equal the buffer's size. */
KN_API kn_status kn_buffer_address(kn_buffer* buffer, int64_t offset, void** address);

/* ---- GEMM ------------------------------------------------------------------------------- */

/* For each of batch_count matrices (batch i starts at i * stride elements of each buffer):
 *     C = alpha * op(A) * op(B) + beta * C
 * op(A) is m x k, op(B) is k x n, C is m x n; all row-major with leading dimensions lda, ldb, ldc.
 * A is stored m x k (lda >= k), or k x m (lda >= m) when trans_a is KN_TRANSPOSE; likewise B.
 * beta == 0 means C is not read (NaN in C does not propagate), as in BLAS. k == 0 gives C = beta*C.
 * A stride of 0 reuses the same A (or B) for every batch; C's stride must keep batches apart. */
KN_API kn_status kn_gemm_f32(kn_transpose trans_a, kn_transpose trans_b,
                             int64_t m, int64_t n, int64_t k, float alpha,
                             const kn_buffer* a, int64_t lda, int64_t stride_a,
                             const kn_buffer* b, int64_t ldb, int64_t stride_b, float beta,
                             kn_buffer* c, int64_t ldc, int64_t stride_c, int64_t batch_count);

/* ---- Dense layer (GEMM with a fused epilogue) ------------------------------------------- */

/* y = act(x op(w) + bias), a dense layer's forward with bias and activation applied as the GEMM
 * writes y (on the CPU inside the GEMM, while each block of y is in cache; CUDA and OpenCL run the
 * GEMM and then the bias and activation passes).
 * x is m x k, row-major and contiguous; w is k x n (n x k when trans_w is KN_TRANSPOSE); bias has n
 * elements or is NULL; y is m x n, contiguous, and must not be x, w or bias.
 * activation, alpha: any kn_unary_op with its parameter, as kn_unary_f32 computes it; the identity
 * (no activation) is KN_UNARY_SCALE with alpha 1, which the kernels skip. k == 0 gives y = act(bias)
 * (or act(0) without bias). */
KN_API kn_status kn_linear_f32(kn_transpose trans_w, int64_t m, int64_t n, int64_t k, const kn_buffer* x,
                               const kn_buffer* w, KN_OPTIONAL const kn_buffer* bias, kn_unary_op activation,
                               float alpha, kn_buffer* y);

/* The backward of kn_linear_f32's epilogue in one pass over dy (m x n, contiguous):
 *     dz[i][j] = dy[i][j] * act'(.)        dbias[j] = sum over i of dz[i][j]
 * act' is computed from the pre-activation x or the forward output y, as kn_unary_backward_f32 does
 * (kn_unary_backward_uses_output says which; the other may be NULL). The sign-keeping RELU, and
 * LEAKY_RELU with alpha >= 0, may be given y in place of x: their derivative depends only on the
 * sign, which the activation keeps. dz may alias dy; dbias (n elements) may be NULL. The weight and
 * input gradients are then two kn_gemm_f32 calls on dz. */
KN_API kn_status kn_linear_backward_f32(kn_unary_op activation, float alpha, int64_t m, int64_t n,
                                        KN_OPTIONAL const kn_buffer* x, KN_OPTIONAL const kn_buffer* y,
                                        const kn_buffer* dy, kn_buffer* dz, KN_OPTIONAL kn_buffer* dbias);

/* ---- Elementwise ------------------------------------------------------------------------ */

/* y[i] = op(x[i]) for i < n. y may be x (in place). */
KN_API kn_status kn_unary_f32(kn_unary_op op, float alpha, const kn_buffer* x, kn_buffer* y,
                              int64_t n);

/* dx[i] = dy[i] * op'(x[i]), the fused backward of kn_unary_f32. The derivative is computed from
 * the forward output y for EXP, SQRT, RSQRT, RECIPROCAL, TANH and SIGMOID, and from the input x
 * for the others; the one not needed may be NULL. dx may alias dy. */
KN_API kn_status kn_unary_backward_f32(kn_unary_op op, float alpha, KN_OPTIONAL const kn_buffer* x,
                                       KN_OPTIONAL const kn_buffer* y, const kn_buffer* dy, kn_buffer* dx,
                                       int64_t n);

/* *uses_output = 1 when kn_unary_backward_f32 computes op's derivative from the forward output y,
 * 0 when from the input x. The one rule the library itself follows: callers ask it instead of keeping
 * their own list. KN_ERROR_INVALID_ARGUMENT for an unknown op or a NULL uses_output. */
KN_API kn_status kn_unary_backward_uses_output(kn_unary_op op, int32_t* uses_output);

/* c = a op b with NumPy broadcasting: shapes are aligned at their last dimension and each pair of
 * sizes must be equal or one of them 1. c_dims must be the broadcast shape. */
KN_API kn_status kn_binary_f32(kn_binary_op op,
                               const kn_buffer* a, const int64_t* a_dims, int32_t a_rank,
                               const kn_buffer* b, const int64_t* b_dims, int32_t b_rank,
                               kn_buffer* c, const int64_t* c_dims, int32_t c_rank);

/* The fused backward of kn_binary_f32: given the upstream gradient dc (shape c_dims), writes
 *     da = dc * d(a op b)/da,  db = dc * d(a op b)/db
 * both in the broadcast shape c_dims (reduce them to a's and b's shapes with kn_reduce_f32).
 * Either da or db may be NULL when that gradient is not wanted. */
KN_API kn_status kn_binary_backward_f32(kn_binary_op op,
                                        const kn_buffer* a, const int64_t* a_dims, int32_t a_rank,
                                        const kn_buffer* b, const int64_t* b_dims, int32_t b_rank,
                                        const kn_buffer* dc, const int64_t* c_dims, int32_t c_rank,
                                        KN_OPTIONAL kn_buffer* da, KN_OPTIONAL kn_buffer* db);

/* ---- Reductions ------------------------------------------------------------------------- */

/* x is viewed as [outer, reduce, inner]; y[o, i] = op over r of x[o, r, i]; y is [outer, inner].
 * Reducing one axis of a shape d0..dn-1 at axis k: outer = d0*..*dk-1, reduce = dk, inner = rest.
 * Reducing everything: outer = inner = 1. Sums are pairwise/tree-ordered, not a running float. */
KN_API kn_status kn_reduce_f32(kn_reduce_op op, const kn_buffer* x, kn_buffer* y,
                               int64_t outer, int64_t reduce, int64_t inner);

/* Like kn_reduce_f32 but writes int64 indices in [0, reduce) into indices ([outer, inner]). */
KN_API kn_status kn_argreduce_f32(kn_argreduce_op op, const kn_buffer* x, kn_buffer* indices,
                                  int64_t outer, int64_t reduce, int64_t inner);

/* ---- Layout ----------------------------------------------------------------------------- */

/* Strided copy between two views: for every index (i_0, ..., i_{r-1}) of copy_dims[0..copy_rank),
 *     y[y_offset + sum_d i_d * y_strides[d]] = x[x_offset + sum_d i_d * x_strides[d]]
 * (offsets and strides in elements). One kernel for every view-to-view copy: a permute or transpose
 * (x's strides taken in the new order), a slice, narrow or select (an offset, x's strides, a step), an
 * expand (an x stride of 0), and the way back: a slice of y written from a contiguous x (the gradient
 * of a narrow, one part of a concatenation). y_strides == NULL (with y_rank 0) means y is contiguous
 * with shape copy_dims, starting at y_offset; otherwise x_rank == y_rank == copy_rank
 * (0..KN_MAX_RANK; rank 0 copies one element). Offsets and strides are >= 0; every element read lies
 * inside x and every element written inside y; y's written elements must not overlap (sorted by
 * stride, each y stride of a dimension longer than 1 exceeds the span of the smaller ones: no stride
 * 0, no interleaving); y must not be x. Elements of y outside the view keep their values. */
KN_API kn_status kn_strided_copy_f32(const kn_buffer* x, int64_t x_offset, const int64_t* x_strides, int32_t x_rank,
                                     kn_buffer* y, int64_t y_offset, KN_OPTIONAL const int64_t* y_strides,
                                     int32_t y_rank, const int64_t* copy_dims, int32_t copy_rank);

/* ---- Softmax ---------------------------------------------------------------------------- */

/* Over the last axis of a [rows, cols] matrix: y = softmax(x), or log_softmax(x) when log != 0.
 * Stable for any finite input (the row maximum is subtracted). */
KN_API kn_status kn_softmax_f32(const kn_buffer* x, kn_buffer* y, int64_t rows, int64_t cols,
                                int32_t log);

/* Backward from the forward output y and upstream gradient dy:
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log_softmax: dx = dy - exp(y) * sum(dy)      (sums over each row) */
KN_API kn_status kn_softmax_backward_f32(const kn_buffer* y, const kn_buffer* dy, kn_buffer* dx,
                                         int64_t rows, int64_t cols, int32_t log);

/* ---- Losses ----------------------------------------------------------------------------- */

/* Cross-entropy of logits [rows, cols] against integer class labels [rows] (int64, in [0, cols)),
 * fused log-softmax + negative log-likelihood, stable for any finite logits:
 *     losses[r] = logsumexp(logits[r, :]) - logits[r, labels[r]]
 * A label outside [0, cols) gives a NaN loss for that row (kernels cannot raise errors; callers that
 * hold the labels on the host should reject them before the call, as the C# layer does). */
KN_API kn_status kn_cross_entropy_f32(const kn_buffer* logits, const kn_buffer* labels, kn_buffer* losses,
                                      int64_t rows, int64_t cols);

/* dlogits[r, c] = dlosses[r] * (softmax(logits[r, :])[c] - (c == labels[r] ? 1 : 0)). */
KN_API kn_status kn_cross_entropy_backward_f32(const kn_buffer* logits, const kn_buffer* labels,
                                               const kn_buffer* dlosses, kn_buffer* dlogits,
                                               int64_t rows, int64_t cols);

/* ---- Gather / scatter-add (index_select along dim 0, embeddings) ------------------------ */

/* Gather rows: y[i, c] = table[indices[i], c] for i < n, c < cols; table is [rows, cols], indices
 * int64 [n], y [n, cols] (the forward of an embedding lookup, index_select along dim 0). Every index
 * must lie in [0, rows): the call reads the indices to the host and checks them before any kernel
 * runs (one device synchronisation, 8 n bytes), so a bad one is KN_ERROR_INVALID_ARGUMENT naming the
 * index and its position, and y is left untouched. y must not be table. */
KN_API kn_status kn_gather_rows_f32(const kn_buffer* table, int64_t rows, int64_t cols, const kn_buffer* indices,
                                    int64_t n, kn_buffer* y);

/* Scatter-add rows, the backward of kn_gather_rows_f32:
 *     dtable[indices[i], c] += dy[i, c]    for every i < n with indices[i] != padding_index
 * dy is [n, cols], indices int64 [n] in [0, rows) (checked as kn_gather_rows_f32 does), dtable
 * [rows, cols], accumulated into (zero it first for a plain gradient). padding_index is -1 for none,
 * else in [0, rows): that row gets no gradient. Deterministic: every element of dtable adds its
 * contributions one at a time in ascending i, on every device, so the result is the same bit for bit
 * on every run and on every backend. dy and dtable must be different buffers. */
KN_API kn_status kn_scatter_add_rows_f32(const kn_buffer* dy, const kn_buffer* indices, int64_t n, kn_buffer* dtable,
                                         int64_t rows, int64_t cols, int64_t padding_index);

/* ---- Dropout ---------------------------------------------------------------------------- */

/* y[i] = keep(i) ? x[i] / (1 - p) : 0, where keep(i) = uniform(seed, offset + i) >= p and uniform is
 * a counter-based generator, so the mask needs no storage, is reproducible from (seed, offset) and is
 * the same on every backend. Exactly, for stream element j = offset + i: w = output word j mod 4 of
 * Philox-4x32-10 (Random123's numbering) with counter words (lo32(j / 4), hi32(j / 4), 0, 0) and key
 * (lo32(seed), hi32(seed)); uniform = (w >> 8) / 2^24; keep where uniform >= p. 0 <= p < 1. */
KN_API kn_status kn_dropout_f32(const kn_buffer* x, kn_buffer* y, int64_t n, float p, int64_t seed,
                                int64_t offset);

/* dx[i] = keep(i) ? dy[i] / (1 - p) : 0, with the mask regenerated from (seed, offset). */
KN_API kn_status kn_dropout_backward_f32(const kn_buffer* dy, kn_buffer* dx, int64_t n, float p,
                                         int64_t seed, int64_t offset);

/* ---- Optimizer updates (fused, one pass over each parameter) ------------------------------ */
/* On x86 CPUs the SGD, Adam, RMSprop and Adagrad updates read and write subnormal floats
 * (|x| < 2^-126) as zero (flush-to-zero and denormals-are-zero for the duration of the call; the
 * caller's floating-point mode is left as it was): decaying moment estimates otherwise spend
 * thousands of steps in the subnormal range, where every operation costs an Intel core ~100 cycles.
 * Other CPUs, CUDA and OpenCL keep IEEE subnormals; results differ by at most a subnormal amount. */

/* Elementwise clamp: y = min(max(x, low), high). y may be x. (Gradient clipping by value.)
 * As in PyTorch, low > high gives high everywhere and NaN in x stays NaN; NaN bounds are an error. */
KN_API kn_status kn_clamp_f32(const kn_buffer* x, kn_buffer* y, int64_t n, float low, float high);

/* SGD as in PyTorch: g = grad + weight_decay * param;
 *   with momentum != 0: velocity = first_step ? g : momentum * velocity + (1 - dampening) * g;
 *                       g = nesterov ? g + momentum * velocity : velocity;
 *   param -= lr * g.     velocity may be NULL when momentum == 0. */
KN_API kn_status kn_sgd_step_f32(kn_buffer* param, const kn_buffer* grad, KN_OPTIONAL kn_buffer* velocity, int64_t n,
                                 float lr, float momentum, float dampening, float weight_decay,
                                 int32_t nesterov, int32_t first_step);

/* kn_sgd_step_f32 over count tensors in one call: tensor i is (param[i], grad[i], velocity[i]) of n[i]
 * elements, all with the same hyper-parameters and first_step; each element gets exactly the update
 * kn_sgd_step_f32 would give it. velocity may be NULL when momentum == 0 (it is not read then).
 * Every buffer on one device; no buffer appears twice anywhere in the call; n[i] >= 0 (empty
 * tensors are skipped); count >= 0. Runs as kn_adam_step_many_f32 does (CPU: one thread-pool
 * dispatch; CUDA: one launch per group of up to 64 tensors; OpenCL: one launch per tensor).
 * Errors name the tensor index ("velocity[2] is NULL", "param[0] and grad[1] are the same buffer"). */
KN_API kn_status kn_sgd_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                      KN_OPTIONAL kn_buffer* const* velocity, const int64_t* n, float lr, float momentum,
                                      float dampening, float weight_decay, int32_t nesterov, int32_t first_step);

/* Adam / AdamW at step t >= 1 (m, v start at zero):
 *   Adam:  g = grad + weight_decay * param          AdamW: param *= 1 - lr * weight_decay; g = grad
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   param -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) */
KN_API kn_status kn_adam_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* m, kn_buffer* v,
                                  int64_t n, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, int32_t decoupled_weight_decay, int64_t step);

/* kn_adam_step_f32 over count tensors in one call: tensor i is (param[i], grad[i], m[i], v[i]) of n[i]
 * elements, all with the same hyper-parameters and step; each element gets exactly the update
 * kn_adam_step_f32 would give it. Every buffer on one device; no buffer appears twice anywhere in
 * the call; n[i] >= 0 (empty tensors are skipped); count >= 0. The CPU runs all tensors in one
 * thread-pool dispatch, CUDA in one launch per group of up to 64 tensors (their pointers travel as
 * kernel parameters); OpenCL cannot pass buffers in an array, so it launches once per tensor.
 * Errors name the tensor index ("grad[3] holds ...", "m[0] and v[2] are the same buffer"). */
KN_API kn_status kn_adam_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                       kn_buffer* const* m, kn_buffer* const* v, const int64_t* n, float lr,
                                       float beta1, float beta2, float eps, float weight_decay,
                                       int32_t decoupled_weight_decay, int64_t step);

/* RMSprop: g = grad + weight_decay * param; square_avg = alpha * square_avg + (1 - alpha) g^2;
 *   with momentum > 0: velocity = momentum * velocity + g / (sqrt(square_avg) + eps); param -= lr * velocity
 *   else:              param -= lr * g / (sqrt(square_avg) + eps).   velocity may be NULL when momentum == 0. */
KN_API kn_status kn_rmsprop_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* square_avg,
                                     KN_OPTIONAL kn_buffer* velocity, int64_t n, float lr, float alpha, float eps,
                                     float weight_decay, float momentum);

/* kn_rmsprop_step_f32 over count tensors in one call: tensor i is (param[i], grad[i], square_avg[i],
 * velocity[i]) of n[i] elements, all with the same hyper-parameters; each element gets exactly the
 * update kn_rmsprop_step_f32 would give it. velocity may be NULL when momentum == 0 (it is not read
 * then). Buffers, sizes, backends and errors as kn_sgd_step_many_f32. */
KN_API kn_status kn_rmsprop_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                          kn_buffer* const* square_avg, KN_OPTIONAL kn_buffer* const* velocity,
                                          const int64_t* n, float lr, float alpha, float eps, float weight_decay,
                                          float momentum);

/* Adagrad: g = grad + weight_decay * param; sum += g^2; param -= lr * g / (sqrt(sum) + eps). */
KN_API kn_status kn_adagrad_step_f32(kn_buffer* param, const kn_buffer* grad, kn_buffer* sum, int64_t n,
                                     float lr, float eps, float weight_decay);

/* kn_adagrad_step_f32 over count tensors in one call: tensor i is (param[i], grad[i], sum[i]) of n[i]
 * elements, all with the same hyper-parameters; each element gets exactly the update
 * kn_adagrad_step_f32 would give it. Buffers, sizes, backends and errors as kn_sgd_step_many_f32. */
KN_API kn_status kn_adagrad_step_many_f32(int64_t count, kn_buffer* const* param, const kn_buffer* const* grad,
                                          kn_buffer* const* sum, const int64_t* n, float lr, float eps,
                                          float weight_decay);

/* ---- Convolution (NCHW) ------------------------------------------------------------------------
 * Layout: activations NCHW ([batch, channels, height, width], row-major), weights
 * [out_channels, in_channels / groups, kernel_height, kernel_width], bias [out_channels]: PyTorch's
 * and ONNX's layout, so weights move between them unchanged. For one image and one group the
 * convolution is the GEMM  y[oc, oh*ow] = w[oc, ic*kh*kw] x im2col(x)[ic*kh*kw, oh*ow], whose output
 * rows are NCHW planes, written contiguously.
 * Every convolution call takes the same geometry, in this order:
 *   batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
 *   stride_height, stride_width, pad_height, pad_width, dilation_height, dilation_width, groups
 * with out_height = (in_height + 2 pad_height - dilation_height (kernel_height - 1) - 1) / stride_height + 1
 * (likewise the width), which must be >= 1: a kernel larger than the padded input is an error.
 * in_channels and out_channels must be divisible by groups (groups == in_channels is depthwise).
 * batch may be 0 (nothing to do). Strides and dilations >= 1, padding >= 0 (any amount). */

/* The output size of a convolution: validates the geometry exactly as kn_conv2d_f32 and its backward
 * calls do (same checks, same messages) and writes out_height and out_width. Both out-pointers are
 * required. */
KN_API kn_status kn_conv2d_output_size(int64_t batch, int64_t in_channels, int64_t in_height, int64_t in_width,
                                       int64_t out_channels, int64_t kernel_height, int64_t kernel_width,
                                       int64_t stride_height, int64_t stride_width, int64_t pad_height,
                                       int64_t pad_width, int64_t dilation_height, int64_t dilation_width,
                                       int64_t groups, int64_t* out_height, int64_t* out_width);

/* y = conv2d(x, w) + bias. bias may be NULL. */
KN_API kn_status kn_conv2d_f32(const kn_buffer* x, const kn_buffer* w, KN_OPTIONAL const kn_buffer* bias, kn_buffer* y,
                               int64_t batch, int64_t in_channels, int64_t in_height, int64_t in_width,
                               int64_t out_channels, int64_t kernel_height, int64_t kernel_width,
                               int64_t stride_height, int64_t stride_width, int64_t pad_height, int64_t pad_width,
                               int64_t dilation_height, int64_t dilation_width, int64_t groups);

/* dx = the gradient of conv2d with respect to x, given dy ([batch, out_channels, out_height, out_width]).
 * dx is overwritten (not accumulated). */
KN_API kn_status kn_conv2d_backward_data_f32(const kn_buffer* dy, const kn_buffer* w, kn_buffer* dx,
                                             int64_t batch, int64_t in_channels, int64_t in_height, int64_t in_width,
                                             int64_t out_channels, int64_t kernel_height, int64_t kernel_width,
                                             int64_t stride_height, int64_t stride_width, int64_t pad_height,
                                             int64_t pad_width, int64_t dilation_height, int64_t dilation_width,
                                             int64_t groups);

/* dw = the gradient with respect to the weights, summed over the batch; dbias[oc] = sum of dy over batch,
 * height and width. dbias may be NULL. Both are overwritten (not accumulated). batch == 0 gives zeros. */
KN_API kn_status kn_conv2d_backward_weights_f32(const kn_buffer* x, const kn_buffer* dy, kn_buffer* dw,
                                                KN_OPTIONAL kn_buffer* dbias,
                                                int64_t batch, int64_t in_channels, int64_t in_height, int64_t in_width,
                                                int64_t out_channels, int64_t kernel_height, int64_t kernel_width,
                                                int64_t stride_height, int64_t stride_width, int64_t pad_height,
                                                int64_t pad_width, int64_t dilation_height, int64_t dilation_width,
                                                int64_t groups);

/* ---- Pooling (NCHW) -----------------------------------------------------------------------------
 * x is [batch, channels, in_height, in_width], y is [batch, channels, out_height, out_width] with
 * out_height = (in_height + 2 pad_height - kernel_height) / stride_height + 1 (likewise the width),
 * which must be >= 1. As in PyTorch, padding is at most half the kernel (2 pad <= kernel), so every
 * window holds at least one real element.
 * MAX: padding never wins; the first maximum in row-major window order is taken, and NaN counts as
 *      the maximum (it propagates). indices ([batch, channels, out_height, out_width], int32) receives
 *      the winner's position ih * in_width + iw within its plane; it may be NULL when no backward
 *      pass will follow.
 * AVG: sum of the window's real elements divided by kernel_height * kernel_width when
 *      count_include_pad != 0 (PyTorch's default), else by the number of real elements.
 *      indices is not used and may be NULL. */
KN_API kn_status kn_pool2d_f32(kn_pool_op op, const kn_buffer* x, kn_buffer* y, KN_OPTIONAL kn_buffer* indices,
                               int64_t batch, int64_t channels, int64_t in_height, int64_t in_width,
                               int64_t kernel_height, int64_t kernel_width, int64_t stride_height,
                               int64_t stride_width, int64_t pad_height, int64_t pad_width,
                               int32_t count_include_pad);

/* dx from dy ([batch, channels, out_height, out_width]); dx is overwritten. MAX routes each dy to the
 * input its forward call recorded in indices (required); where windows overlap the contributions add.
 * AVG spreads each dy evenly over its window with the forward call's divisor. Deterministic: each dx
 * element gathers from the windows that cover it, with no atomics. No backend writes outside dx
 * whatever indices holds: the CPU refuses an index outside its plane (KN_ERROR_INVALID_ARGUMENT naming
 * it and its position; dx is then undefined), the GPU gathers ignore entries that are not in their
 * window. */
KN_API kn_status kn_pool2d_backward_f32(kn_pool_op op, const kn_buffer* dy, KN_OPTIONAL const kn_buffer* indices,
                                        kn_buffer* dx,
                                        int64_t batch, int64_t channels, int64_t in_height, int64_t in_width,
                                        int64_t kernel_height, int64_t kernel_width, int64_t stride_height,
                                        int64_t stride_width, int64_t pad_height, int64_t pad_width,
                                        int32_t count_include_pad);

/* The output size of pooling: validates the geometry exactly as kn_pool2d_f32 and its backward do
 * (same checks, same messages) and writes out_height and out_width. Both out-pointers are required. */
KN_API kn_status kn_pool2d_output_size(int64_t batch, int64_t channels, int64_t in_height, int64_t in_width,
                                       int64_t kernel_height, int64_t kernel_width, int64_t stride_height,
                                       int64_t stride_width, int64_t pad_height, int64_t pad_width,
                                       int64_t* out_height, int64_t* out_width);

/* ---- Batch normalization -----------------------------------------------------------------------
 * x and y are [batch, channels, spatial] (spatial = height * width for 2-D, 1 for 1-D batch norm);
 * gamma, beta, running_mean, running_var, save_mean, save_invstd are [channels].
 * training != 0: mean and biased variance of each channel over batch * spatial elements, computed in
 *   two passes (mean first, then squared deviations; never E[x^2] - E[x]^2), then
 *       y = (x - mean) * invstd * gamma + beta,      invstd = 1 / sqrt(var + eps)
 *   save_mean, save_invstd receive mean and invstd for the backward pass. When running_mean and
 *   running_var are not NULL they are updated as in PyTorch:
 *       running_mean = (1 - momentum) running_mean + momentum mean
 *       running_var  = (1 - momentum) running_var  + momentum var * m / (m - 1)   (m = batch * spatial;
 *                      the biased var when m == 1)
 *   batch * spatial must be >= 1.
 * training == 0: normalizes with running_mean and running_var (both required) and writes
 *   save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps).
 * save_mean and save_invstd may be NULL when no backward pass will follow. With batch * spatial == 0
 * (inference only) nothing is written. */
KN_API kn_status kn_batch_norm_f32(const kn_buffer* x, kn_buffer* y, const kn_buffer* gamma, const kn_buffer* beta,
                                   KN_OPTIONAL kn_buffer* running_mean, KN_OPTIONAL kn_buffer* running_var,
                                   KN_OPTIONAL kn_buffer* save_mean, KN_OPTIONAL kn_buffer* save_invstd,
                                   int64_t batch, int64_t channels, int64_t spatial,
                                   float eps, float momentum, int32_t training);

/* The backward of kn_batch_norm_f32 from the forward call's save_mean and save_invstd
 * (xhat = (x - mean) * invstd, sums over batch and spatial, m = batch * spatial):
 *   dbeta = sum(dy);   dgamma = sum(dy * xhat)
 *   training != 0:  dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma)
 *   training == 0:  dx = dy * gamma * invstd          (the statistics are constants)
 * All outputs are overwritten. dx may be NULL when the input's gradient is not wanted. */
KN_API kn_status kn_batch_norm_backward_f32(const kn_buffer* x, const kn_buffer* dy, const kn_buffer* gamma,
                                            const kn_buffer* save_mean, const kn_buffer* save_invstd,
                                            KN_OPTIONAL kn_buffer* dx, kn_buffer* dgamma, kn_buffer* dbeta,
                                            int64_t batch, int64_t channels, int64_t spatial, int32_t training);

/* ---- Element types and casts ----------------------------------------------------------- */

/* The element type of a buffer's contents, as kn_cast names them. Buffers themselves are untyped
 * bytes; every other export says which type it reads (the _f32 ops: float32; labels and indices: int64). */
typedef enum kn_dtype {
    KN_FLOAT32 = 0,
    KN_INT32 = 1,
    KN_INT64 = 2
} kn_dtype;

/* y[i] = (y_type) x[i] for i < n: an elementwise conversion between float32, int32 and int64, the same
 * bits on every backend. Not differentiable (integer tensors have no gradient).
 *   float32 -> int32 / int64: truncation toward zero (C's and PyTorch's rule: 2.7 -> 2, -2.7 -> -2);
 *       values beyond the target's range saturate (+inf and 3e9 -> INT32_MAX, -inf -> INT32_MIN) and
 *       NaN gives 0. C leaves these undefined and PyTorch's result depends on the CPU; saturation with
 *       NaN -> 0 is what CUDA's cvt.rzi and OpenCL's convert_int_sat_rtz do, so every backend agrees.
 *   int32 / int64 -> float32: round to nearest, ties to even (2^24 + 1 -> 2^24).
 *   int64 -> int32: the low 32 bits, two's complement (wraps, as C and PyTorch: 2^32 + 5 -> 5).
 *   int32 -> int64: sign extension. The same type: a copy.
 * x holds n x_type elements, y n y_type elements; y must not be x. n == 0 does nothing. */
KN_API kn_status kn_cast(const kn_buffer* x, kn_dtype x_type, kn_buffer* y, kn_dtype y_type, int64_t n);

/* ---- Recurrent cells (the pointwise part of one LSTM / GRU time step) ---------------------------
 * The layer does the matrix products (kn_gemm_f32); these do everything after them in one pass
 * forward and one pass backward. Gate order and formulas are PyTorch's. s = the logistic sigmoid;
 * both s and tanh are evaluated without overflow for any finite input. Shapes: batch, hidden >= 0 (an
 * empty call is validated and does nothing); every buffer is row-major float32.
 *
 * mask (optional, [batch]): a row b with mask[b] == 0 is a padding step: it keeps its state
 * (h = h_prev, c = c_prev) and its gradient passes straight through to h_prev / c_prev; any other value
 * updates the row. NULL updates every row.
 *
 * Outputs must not be the same buffer as each other or as any input (the calls refuse it).
 *
 * LSTM. gates [batch, 4 hidden] = x W_ih^T + b_ih + h_prev W_hh^T + b_hh, blocks i, f, g, o:
 *     i = s(gates_i), f = s(gates_f), g = tanh(gates_g), o = s(gates_o)
 *     c = f * c_prev + i * g,   h = o * tanh(c)
 * c_prev, h_prev, h, c: [batch, hidden]. saved (optional: NULL when no backward pass follows)
 * [batch, 5 hidden] receives, per row, the blocks i, f, g, o (activated) and tanh(c) of the update
 * (computed for masked rows too, never read for them): saved[b, k hidden + j] for block k. */
KN_API kn_status kn_lstm_cell_f32(const kn_buffer* gates, const kn_buffer* c_prev, const kn_buffer* h_prev,
                                  KN_OPTIONAL const kn_buffer* mask, kn_buffer* h, kn_buffer* c,
                                  KN_OPTIONAL kn_buffer* saved, int64_t batch, int64_t hidden);

/* The backward of kn_lstm_cell_f32 from its saved, c_prev and mask, and the gradients dh, dc of the
 * step's outputs h and c (either may be NULL: zero). For an updated row, with tc = tanh(c):
 *     dc_total = dc + dh * o * (1 - tc^2)
 *     dgates = [dc_total * g * i (1 - i), dc_total * c_prev * f (1 - f),
 *               dc_total * i * (1 - g^2), dh * tc * o (1 - o)]
 *     dc_prev = dc_total * f,   dh_prev = 0
 * for a masked row: dgates = 0, dc_prev = dc, dh_prev = dh. dh_prev is only the direct path (the
 * gradient through gates into h_prev is the layer's GEMM). dgates [batch, 4 hidden] is required;
 * dc_prev and dh_prev [batch, hidden] may be NULL when not wanted. All are overwritten. */
KN_API kn_status kn_lstm_cell_backward_f32(const kn_buffer* saved, const kn_buffer* c_prev,
                                           KN_OPTIONAL const kn_buffer* mask, KN_OPTIONAL const kn_buffer* dh,
                                           KN_OPTIONAL const kn_buffer* dc, kn_buffer* dgates,
                                           KN_OPTIONAL kn_buffer* dc_prev, KN_OPTIONAL kn_buffer* dh_prev,
                                           int64_t batch, int64_t hidden);

/* GRU. x_gates = x W_ih^T + b_ih and h_gates = h_prev W_hh^T + b_hh, both [batch, 3 hidden], blocks
 * r, z, n:
 *     r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n)
 *     h = (1 - z) * n + z * h_prev
 * h_prev, h: [batch, hidden]. saved (optional) [batch, 3 hidden] receives, per row, the blocks r, z, n
 * (activated); the backward reads h_n from h_gates itself. */
KN_API kn_status kn_gru_cell_f32(const kn_buffer* x_gates, const kn_buffer* h_gates, const kn_buffer* h_prev,
                                 KN_OPTIONAL const kn_buffer* mask, kn_buffer* h, KN_OPTIONAL kn_buffer* saved,
                                 int64_t batch, int64_t hidden);

/* The backward of kn_gru_cell_f32 from its saved, h_gates, h_prev and mask, and the gradient dh of h.
 * For an updated row:
 *     dn = dh * (1 - z) * (1 - n^2),   dz = dh * (h_prev - n) * z (1 - z),
 *     dr = dn * h_n * r (1 - r)
 *     dx_gates = [dr, dz, dn],   dh_gates = [dr, dz, dn * r],   dh_prev = dh * z
 * for a masked row: dx_gates = dh_gates = 0, dh_prev = dh. dh_prev is only the direct path (the
 * gradient through h_gates into h_prev is the layer's GEMM) and may be NULL when not wanted. All
 * outputs are overwritten. */
KN_API kn_status kn_gru_cell_backward_f32(const kn_buffer* saved, const kn_buffer* h_gates, const kn_buffer* h_prev,
                                          KN_OPTIONAL const kn_buffer* mask, const kn_buffer* dh,
                                          kn_buffer* dx_gates, kn_buffer* dh_gates, KN_OPTIONAL kn_buffer* dh_prev,
                                          int64_t batch, int64_t hidden);

#ifdef __cplusplus
}
#endif

#endif /* KERNELS_H */
