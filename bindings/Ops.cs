// Each method is its public signature and one call to the wrapper that tools/BindingsGen generates
// from kernels.h (SafeNativeMethods.g.cs): the wrapper leases the buffers, refuses null ones unless the
// header marks them KN_OPTIONAL, and turns the status into an exception. Adding an op here: declare it
// in kernels.h, run `dotnet run --project tools/BindingsGen`, then write its public method as one call.
namespace Kernels;

/// <summary>
/// The kernels of libkernels on float32 device buffers, one method per C entry point. These are
/// thin: they check .NET-side nulls and disposed buffers, pass shapes through, and let the native
/// library validate sizes, shapes and devices (its messages name the operand and the sizes).
/// On a GPU the calls are asynchronous; reading a buffer or <see cref="Device.Synchronize"/> waits.
/// </summary>
public static unsafe partial class Ops
{
    /// <summary>
    /// Batched GEMM: for each batch i, C_i = alpha * op(A_i) * op(B_i) + beta * C_i, all row-major.
    /// op(A) is m x k, op(B) is k x n, C is m x n; A is stored m x k (lda &gt;= k), or k x m
    /// (lda &gt;= m) when <paramref name="transA"/> is <see cref="Transpose.Transpose"/>; likewise B.
    /// Batch i starts i * stride elements into each buffer; a stride of 0 reuses A (or B).
    /// beta = 0 means C is not read, as in BLAS.
    /// </summary>
    public static void Gemm(Transpose transA, Transpose transB, long m, long n, long k, float alpha,
                            DeviceBuffer a, long lda, DeviceBuffer b, long ldb, float beta, DeviceBuffer c, long ldc,
                            long batchCount = 1, long strideA = 0, long strideB = 0, long strideC = 0) =>
        SafeNativeMethods.kn_gemm_f32(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batchCount);

    /// <summary>C = A * B for row-major A (m x k), B (k x n) and C (m x n), densely stored.</summary>
    public static void MatMul(DeviceBuffer a, DeviceBuffer b, DeviceBuffer c, long m, long n, long k) =>
        Gemm(Transpose.NoTranspose, Transpose.NoTranspose, m, n, k, 1f, a, k, b, n, 0f, c, n);

    /// <summary>
    /// A dense layer's forward in one call: y = act(x op(w) + bias) with x [m, k], w [k, n] ([n, k] when
    /// <paramref name="transW"/>), bias [n] or null, y [m, n]; the activation is any unary op with its
    /// parameter, the identity being <see cref="UnaryOp.Scale"/> with alpha 1. On the CPU bias and
    /// activation are applied inside the GEMM, while each block of y is in cache.
    /// </summary>
    public static void Linear(Transpose transW, long m, long n, long k, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias,
                              UnaryOp activation, float alpha, DeviceBuffer y) =>
        SafeNativeMethods.kn_linear_f32(transW, m, n, k, x, w, bias, activation, alpha, y);

    /// <summary>
    /// The backward of <see cref="Linear"/>'s epilogue in one pass over dy [m, n]: dz = dy * act'(x or y)
    /// (the one <see cref="UnaryBackwardUsesOutput"/> names; relu and leaky relu with alpha &gt;= 0 accept y
    /// as x) and dbias = the column sums of dz (when not null). dz may be dy.
    /// </summary>
    public static void LinearBackward(UnaryOp activation, float alpha, long m, long n, DeviceBuffer? x, DeviceBuffer? y,
                                      DeviceBuffer dy, DeviceBuffer dz, DeviceBuffer? dbias) =>
        SafeNativeMethods.kn_linear_backward_f32(activation, alpha, m, n, x, y, dy, dz, dbias);

    /// <summary>y[i] = op(x[i]) for i &lt; <paramref name="n"/>; <paramref name="alpha"/> is the op's parameter where it has one. y may be x.</summary>
    public static void Unary(UnaryOp op, DeviceBuffer x, DeviceBuffer y, long n, float alpha = 0) =>
        SafeNativeMethods.kn_unary_f32(op, alpha, x, y, n);

    /// <summary>
    /// Whether <see cref="UnaryBackward"/> takes op's derivative from the forward output y (true) or
    /// from the input x (false): the library's own rule, kn_unary_backward_uses_output.
    /// </summary>
    public static bool UnaryBackwardUsesOutput(UnaryOp op)
    {
        int usesOutput;
        Ensure.Success(NativeMethods.kn_unary_backward_uses_output(op, &usesOutput));
        return usesOutput != 0;
    }

    /// <summary>
    /// dx[i] = dy[i] * op'(x[i]), from the forward output <paramref name="y"/> or the input
    /// <paramref name="x"/> as <see cref="UnaryBackwardUsesOutput"/> says; the one not needed may be
    /// null. dx may be dy.
    /// </summary>
    public static void UnaryBackward(UnaryOp op, DeviceBuffer? x, DeviceBuffer? y, DeviceBuffer dy, DeviceBuffer dx, long n, float alpha = 0) =>
        SafeNativeMethods.kn_unary_backward_f32(op, alpha, x, y, dy, dx, n);

    /// <summary>c = a op b with NumPy broadcasting; <paramref name="cShape"/> must be the broadcast shape (see <see cref="BroadcastShape"/>).</summary>
    public static void Binary(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aShape, DeviceBuffer b, ReadOnlySpan<long> bShape,
                              DeviceBuffer c, ReadOnlySpan<long> cShape) =>
        SafeNativeMethods.kn_binary_f32(op, a, aShape, b, bShape, c, cShape);

    /// <summary>
    /// The backward of <see cref="Binary"/>: from the upstream gradient dc (shape <paramref name="cShape"/>)
    /// writes da = dc * d(a op b)/da and db = dc * d(a op b)/db, both in the broadcast shape
    /// <paramref name="cShape"/> (reduce them to a's and b's shapes with <see cref="Reduce"/>).
    /// Pass null for a gradient that is not wanted.
    /// </summary>
    public static void BinaryBackward(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aShape, DeviceBuffer b, ReadOnlySpan<long> bShape,
                                      DeviceBuffer dc, ReadOnlySpan<long> cShape, DeviceBuffer? da, DeviceBuffer? db) =>
        SafeNativeMethods.kn_binary_backward_f32(op, a, aShape, b, bShape, dc, cShape, da, db);

    /// <summary>
    /// The NumPy broadcast of two shapes: aligned at their last dimension, each pair of sizes equal or
    /// one of them 1 (which stretches to the other).
    /// </summary>
    /// <exception cref="ShapeMismatchException">The shapes do not broadcast; the message names both.</exception>
    /// <exception cref="KernelsArgumentException">A dimension is negative.</exception>
    public static long[] BroadcastShape(ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var result = new long[rank];
        for (int d = rank - 1; d >= 0; d--)
        {
            int ai = d - (rank - a.Length), bi = d - (rank - b.Length);
            long ad = ai >= 0 ? a[ai] : 1, bd = bi >= 0 ? b[bi] : 1;
            if (ad < 0 || bd < 0)
                throw new KernelsArgumentException($"broadcast: shapes {Format(a)} and {Format(b)} have a negative dimension");
            if (ad != bd && ad != 1 && bd != 1)
                throw new ShapeMismatchException($"broadcast: shapes {Format(a)} and {Format(b)} cannot be broadcast (dimension {d}: {ad} vs {bd})");
            result[d] = ad == 1 ? bd : ad;
        }
        return result;
    }

    /// <summary>
    /// x viewed as [outer, reduce, inner]: y[o, i] = op over r of x[o, r, i], y is [outer, inner].
    /// Reducing axis k of d0..dn-1: outer = d0*..*dk-1, reduce = dk, inner = the rest; everything: outer = inner = 1.
    /// </summary>
    public static void Reduce(ReduceOp op, DeviceBuffer x, DeviceBuffer y, long outer, long reduce, long inner) =>
        SafeNativeMethods.kn_reduce_f32(op, x, y, outer, reduce, inner);

    /// <summary>Like <see cref="Reduce"/>, but writes the int64 index in [0, reduce) of the max or min into <paramref name="indices"/> ([outer, inner]).</summary>
    public static void ArgReduce(ArgReduceOp op, DeviceBuffer x, DeviceBuffer indices, long outer, long reduce, long inner) =>
        SafeNativeMethods.kn_argreduce_f32(op, x, indices, outer, reduce, inner);

    /// <summary>
    /// Strided copy: y (contiguous, shape <paramref name="yShape"/>) gets
    /// y[i0, ..., ir-1] = x[<paramref name="xOffset"/> + sum_d i_d * <paramref name="xStrides"/>[d]] (elements).
    /// The one kernel behind permute / transpose (x's strides in the new order), slices (an offset and a
    /// step) and expands (a stride of 0). Strides are &gt;= 0, every element read lies inside x, y is not x.
    /// </summary>
    public static void StridedCopy(DeviceBuffer x, long xOffset, ReadOnlySpan<long> xStrides, DeviceBuffer y, ReadOnlySpan<long> yShape) =>
        SafeNativeMethods.kn_strided_copy_f32(x, xOffset, xStrides, y, 0, ReadOnlySpan<long>.Empty, yShape);

    /// <summary>
    /// Strided copy between two views: for every index i of <paramref name="shape"/>,
    /// y[<paramref name="yOffset"/> + sum_d i_d * <paramref name="yStrides"/>[d]] = x[<paramref name="xOffset"/> + sum_d i_d * <paramref name="xStrides"/>[d]].
    /// Writes a slice of y (a narrow's gradient, one part of a concatenation); y's other elements keep their
    /// values. y's written elements must not overlap (no stride 0 into y), all lie inside y, y is not x.
    /// </summary>
    public static void StridedCopy(DeviceBuffer x, long xOffset, ReadOnlySpan<long> xStrides,
                                   DeviceBuffer y, long yOffset, ReadOnlySpan<long> yStrides, ReadOnlySpan<long> shape) =>
        SafeNativeMethods.kn_strided_copy_f32(x, xOffset, xStrides, y, yOffset, yStrides, shape);

    /// <summary>y = softmax(x) over each row of a [rows, cols] matrix, or log_softmax when <paramref name="log"/>; stable for any finite input.</summary>
    public static void Softmax(DeviceBuffer x, DeviceBuffer y, long rows, long cols, bool log = false) =>
        SafeNativeMethods.kn_softmax_f32(x, y, rows, cols, log ? 1 : 0);

    /// <summary>
    /// The backward of <see cref="Softmax"/> from its output y and the upstream gradient dy:
    /// softmax dx = y * (dy - sum(dy * y)); log_softmax dx = dy - exp(y) * sum(dy), sums over each row.
    /// </summary>
    public static void SoftmaxBackward(DeviceBuffer y, DeviceBuffer dy, DeviceBuffer dx, long rows, long cols, bool log = false) =>
        SafeNativeMethods.kn_softmax_backward_f32(y, dy, dx, rows, cols, log ? 1 : 0);

    /// <summary>
    /// Gather rows (index_select along dim 0, an embedding lookup): y[i, c] = table[indices[i], c] for a
    /// [rows, cols] table and int64 indices [n]. Every index is checked to lie in [0, rows) before any
    /// kernel runs (the indices are read to the host: one synchronisation); a bad one throws naming it and
    /// its position, and y is left untouched.
    /// </summary>
    public static void GatherRows(DeviceBuffer table, long rows, long cols, DeviceBuffer indices, long n, DeviceBuffer y) =>
        SafeNativeMethods.kn_gather_rows_f32(table, rows, cols, indices, n, y);

    /// <summary>
    /// The backward of <see cref="GatherRows"/>: dtable[indices[i], c] += dy[i, c] for every i whose index is
    /// not <paramref name="paddingIndex"/> (-1: none). Deterministic: each element adds its contributions in
    /// ascending i, bit for bit the same on every run and every backend.
    /// </summary>
    public static void ScatterAddRows(DeviceBuffer dy, DeviceBuffer indices, long n, DeviceBuffer dtable, long rows, long cols, long paddingIndex = -1) =>
        SafeNativeMethods.kn_scatter_add_rows_f32(dy, indices, n, dtable, rows, cols, paddingIndex);

    /// <summary>
    /// Cross-entropy of <paramref name="logits"/> [rows, cols] against int64 class labels [rows], fused
    /// log-softmax + negative log-likelihood: losses[r] = logsumexp(logits[r, :]) - logits[r, labels[r]].
    /// A label outside [0, cols) gives NaN for its row (kernels cannot raise errors): check labels on the host first.
    /// </summary>
    public static void CrossEntropy(DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer losses, long rows, long cols) =>
        SafeNativeMethods.kn_cross_entropy_f32(logits, labels, losses, rows, cols);

    /// <summary>The backward of <see cref="CrossEntropy"/>: dlogits[r, c] = dlosses[r] * (softmax(logits[r, :])[c] - (c == labels[r] ? 1 : 0)).</summary>
    public static void CrossEntropyBackward(DeviceBuffer logits, DeviceBuffer labels, DeviceBuffer dlosses, DeviceBuffer dlogits, long rows, long cols) =>
        SafeNativeMethods.kn_cross_entropy_backward_f32(logits, labels, dlosses, dlogits, rows, cols);

    /// <summary>
    /// Inverted dropout: y[i] = keep(i) ? x[i] / (1 - p) : 0 with 0 &lt;= p &lt; 1. The mask comes from a
    /// counter-based generator (Philox-4x32-10 keyed by <paramref name="seed"/>, counter <paramref name="offset"/> + i):
    /// it needs no storage, is reproducible and is the same on every backend.
    /// </summary>
    public static void Dropout(DeviceBuffer x, DeviceBuffer y, long n, float p, long seed, long offset) =>
        SafeNativeMethods.kn_dropout_f32(x, y, n, p, seed, offset);

    /// <summary>The backward of <see cref="Dropout"/>, regenerating the same mask from (seed, offset): dx[i] = keep(i) ? dy[i] / (1 - p) : 0.</summary>
    public static void DropoutBackward(DeviceBuffer dy, DeviceBuffer dx, long n, float p, long seed, long offset) =>
        SafeNativeMethods.kn_dropout_backward_f32(dy, dx, n, p, seed, offset);

    /// <summary>y[i] = min(max(x[i], low), high) for i &lt; <paramref name="n"/>; y may be x (gradient clipping by value).</summary>
    public static void Clamp(DeviceBuffer x, DeviceBuffer y, long n, float low, float high) =>
        SafeNativeMethods.kn_clamp_f32(x, y, n, low, high);

    /// <summary>
    /// One fused SGD update, as PyTorch's SGD: g = grad + weightDecay * param; with momentum,
    /// velocity = firstStep ? g : momentum * velocity + (1 - dampening) * g and g = nesterov ? g + momentum * velocity : velocity;
    /// then param -= lr * g. <paramref name="velocity"/> may be null when momentum is 0.
    /// </summary>
    public static void SgdStep(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer? velocity, long n, float lr, float momentum,
                               float dampening, float weightDecay, bool nesterov, bool firstStep) =>
        SafeNativeMethods.kn_sgd_step_f32(param, grad, velocity, n, lr, momentum, dampening, weightDecay, nesterov ? 1 : 0, firstStep ? 1 : 0);

    /// <summary>
    /// One fused Adam (or, with <paramref name="decoupledWeightDecay"/>, AdamW) update at step t = <paramref name="step"/> &gt;= 1;
    /// <paramref name="m"/> and <paramref name="v"/> are the moment buffers, zero before the first step.
    /// </summary>
    public static void AdamStep(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long n, float lr,
                                float beta1, float beta2, float eps, float weightDecay, bool decoupledWeightDecay, long step) =>
        SafeNativeMethods.kn_adam_step_f32(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, decoupledWeightDecay ? 1 : 0, step);

    /// <summary>
    /// One fused RMSprop update: square_avg = alpha * square_avg + (1 - alpha) g^2, then param moves by
    /// lr * g / (sqrt(square_avg) + eps), through a momentum buffer when momentum &gt; 0.
    /// <paramref name="velocity"/> may be null when momentum is 0.
    /// </summary>
    public static void RmsPropStep(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer squareAverage, DeviceBuffer? velocity, long n,
                                   float lr, float alpha, float eps, float weightDecay, float momentum) =>
        SafeNativeMethods.kn_rmsprop_step_f32(param, grad, squareAverage, velocity, n, lr, alpha, eps, weightDecay, momentum);

    /// <summary>One fused Adagrad update: g = grad + weightDecay * param; sum += g^2; param -= lr * g / (sqrt(sum) + eps).</summary>
    public static void AdagradStep(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer sum, long n, float lr, float eps, float weightDecay) =>
        SafeNativeMethods.kn_adagrad_step_f32(param, grad, sum, n, lr, eps, weightDecay);

    /// <summary>
    /// <see cref="AdamStep"/> over many tensors in one native call: tensor i is (<paramref name="param"/>[i],
    /// <paramref name="grad"/>[i], <paramref name="m"/>[i], <paramref name="v"/>[i]) of <paramref name="n"/>[i]
    /// elements, with the same hyper-parameters and step for all. Each element gets exactly the update
    /// <see cref="AdamStep"/> gives it; the CPU runs all tensors in one thread-pool dispatch, CUDA in one launch
    /// per 64 tensors. All buffers on one device, none twice. Allocates nothing for up to 256 tensors.
    /// </summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    /// <exception cref="ArgumentNullException">A buffer is null (named as "grad[3]").</exception>
    /// <exception cref="ObjectDisposedException">A buffer was disposed.</exception>
    public static void AdamStepMany(ReadOnlySpan<DeviceBuffer> param, ReadOnlySpan<DeviceBuffer> grad, ReadOnlySpan<DeviceBuffer> m,
                                    ReadOnlySpan<DeviceBuffer> v, ReadOnlySpan<long> n, float lr, float beta1, float beta2, float eps,
                                    float weightDecay, bool decoupledWeightDecay, long step)
    {
        int count = param.Length;
        if (grad.Length != count || m.Length != count || v.Length != count || n.Length != count)
            throw new ArgumentException($"AdamStepMany: param, grad, m, v and n must have one entry per tensor; got {param.Length}, " +
                                        $"{grad.Length}, {m.Length}, {v.Length} and {n.Length}");
        Span<nint> handles = count <= ManyLease.OnStack ? stackalloc nint[4 * count] : new nint[4 * count];
        var lease = new ManyLease(handles, count);
        try
        {
            lease.Add(param, "param");
            lease.Add(grad, "grad");
            lease.Add(m, "m");
            lease.Add(v, "v");
            fixed (nint* h = handles)
            fixed (long* sizes = n)
            {
                Ensure.Success(NativeMethods.kn_adam_step_many_f32(count, h, h + count, h + 2 * count, h + 3 * count, sizes, lr, beta1,
                                                                   beta2, eps, weightDecay, decoupledWeightDecay ? 1 : 0, step));
            }
        }
        finally
        {
            lease.Dispose();
        }
    }

    /// <summary>
    /// <see cref="SgdStep"/> over many tensors in one native call: tensor i is (<paramref name="param"/>[i],
    /// <paramref name="grad"/>[i], <paramref name="velocity"/>[i]) of <paramref name="n"/>[i] elements, with the same
    /// hyper-parameters and <paramref name="firstStep"/> for all; each element gets exactly the update
    /// <see cref="SgdStep"/> gives it (run as <see cref="AdamStepMany"/>). <paramref name="velocity"/> is not read when
    /// momentum is 0 and may then be empty; otherwise it has one buffer per tensor.
    /// </summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    /// <exception cref="ArgumentNullException">A buffer is null (named as "velocity[3]").</exception>
    /// <exception cref="ObjectDisposedException">A buffer was disposed.</exception>
    public static void SgdStepMany(ReadOnlySpan<DeviceBuffer> param, ReadOnlySpan<DeviceBuffer> grad, ReadOnlySpan<DeviceBuffer> velocity,
                                   ReadOnlySpan<long> n, float lr, float momentum, float dampening, float weightDecay, bool nesterov,
                                   bool firstStep)
    {
        int count = param.Length;
        bool withVelocity = momentum != 0;
        if (grad.Length != count || n.Length != count || (withVelocity && velocity.Length != count))
            throw new ArgumentException($"SgdStepMany: param, grad, n{(withVelocity ? " and velocity (momentum != 0)" : "")} must have one " +
                                        $"entry per tensor; got {param.Length}, {grad.Length}, {n.Length}" +
                                        (withVelocity ? $" and {velocity.Length}" : ""));
        Span<nint> handles = count <= ManyLease.OnStack ? stackalloc nint[3 * count] : new nint[3 * count];
        var lease = new ManyLease(handles, count);
        try
        {
            lease.Add(param, "param");
            lease.Add(grad, "grad");
            if (withVelocity) lease.Add(velocity, "velocity");
            fixed (nint* h = handles)
            fixed (long* sizes = n)
            {
                Ensure.Success(NativeMethods.kn_sgd_step_many_f32(count, h, h + count, withVelocity ? h + 2 * count : null, sizes, lr,
                                                                  momentum, dampening, weightDecay, nesterov ? 1 : 0, firstStep ? 1 : 0));
            }
        }
        finally
        {
            lease.Dispose();
        }
    }

    /// <summary>
    /// <see cref="RmsPropStep"/> over many tensors in one native call: tensor i is (<paramref name="param"/>[i],
    /// <paramref name="grad"/>[i], <paramref name="squareAverage"/>[i], <paramref name="velocity"/>[i]) of
    /// <paramref name="n"/>[i] elements, with the same hyper-parameters for all; each element gets exactly the update
    /// <see cref="RmsPropStep"/> gives it (run as <see cref="AdamStepMany"/>). <paramref name="velocity"/> is not read
    /// when momentum is 0 and may then be empty.
    /// </summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    /// <exception cref="ArgumentNullException">A buffer is null (named as "square_avg[3]").</exception>
    /// <exception cref="ObjectDisposedException">A buffer was disposed.</exception>
    public static void RmsPropStepMany(ReadOnlySpan<DeviceBuffer> param, ReadOnlySpan<DeviceBuffer> grad, ReadOnlySpan<DeviceBuffer> squareAverage,
                                       ReadOnlySpan<DeviceBuffer> velocity, ReadOnlySpan<long> n, float lr, float alpha, float eps,
                                       float weightDecay, float momentum)
    {
        int count = param.Length;
        bool withVelocity = momentum != 0;
        if (grad.Length != count || squareAverage.Length != count || n.Length != count || (withVelocity && velocity.Length != count))
            throw new ArgumentException($"RmsPropStepMany: param, grad, squareAverage, n{(withVelocity ? " and velocity (momentum != 0)" : "")} " +
                                        $"must have one entry per tensor; got {param.Length}, {grad.Length}, {squareAverage.Length}, {n.Length}" +
                                        (withVelocity ? $" and {velocity.Length}" : ""));
        Span<nint> handles = count <= ManyLease.OnStack ? stackalloc nint[4 * count] : new nint[4 * count];
        var lease = new ManyLease(handles, count);
        try
        {
            lease.Add(param, "param");
            lease.Add(grad, "grad");
            lease.Add(squareAverage, "square_avg");
            if (withVelocity) lease.Add(velocity, "velocity");
            fixed (nint* h = handles)
            fixed (long* sizes = n)
            {
                Ensure.Success(NativeMethods.kn_rmsprop_step_many_f32(count, h, h + count, h + 2 * count, withVelocity ? h + 3 * count : null,
                                                                      sizes, lr, alpha, eps, weightDecay, momentum));
            }
        }
        finally
        {
            lease.Dispose();
        }
    }

    /// <summary>
    /// <see cref="AdagradStep"/> over many tensors in one native call: tensor i is (<paramref name="param"/>[i],
    /// <paramref name="grad"/>[i], <paramref name="sum"/>[i]) of <paramref name="n"/>[i] elements, with the same
    /// hyper-parameters for all; each element gets exactly the update <see cref="AdagradStep"/> gives it (run as
    /// <see cref="AdamStepMany"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    /// <exception cref="ArgumentNullException">A buffer is null (named as "sum[3]").</exception>
    /// <exception cref="ObjectDisposedException">A buffer was disposed.</exception>
    public static void AdagradStepMany(ReadOnlySpan<DeviceBuffer> param, ReadOnlySpan<DeviceBuffer> grad, ReadOnlySpan<DeviceBuffer> sum,
                                       ReadOnlySpan<long> n, float lr, float eps, float weightDecay)
    {
        int count = param.Length;
        if (grad.Length != count || sum.Length != count || n.Length != count)
            throw new ArgumentException($"AdagradStepMany: param, grad, sum and n must have one entry per tensor; got {param.Length}, " +
                                        $"{grad.Length}, {sum.Length} and {n.Length}");
        Span<nint> handles = count <= ManyLease.OnStack ? stackalloc nint[3 * count] : new nint[3 * count];
        var lease = new ManyLease(handles, count);
        try
        {
            lease.Add(param, "param");
            lease.Add(grad, "grad");
            lease.Add(sum, "sum");
            fixed (nint* h = handles)
            fixed (long* sizes = n)
            {
                Ensure.Success(NativeMethods.kn_adagrad_step_many_f32(count, h, h + count, h + 2 * count, sizes, lr, eps, weightDecay));
            }
        }
        finally
        {
            lease.Dispose();
        }
    }

    /// <summary>
    /// The handles of a many-tensor call's operand arrays (param, grad, then the state), one array after another in
    /// <c>handles</c>; each buffer's SafeHandle holds a reference for the length of the call (as BufferLease does).
    /// <see cref="Dispose"/> releases whatever was leased, also after an <see cref="Add"/> that threw on a null or
    /// disposed buffer (named as "grad[3]"). Not a <c>using</c> variable: those are read-only, and Add changes it.
    /// </summary>
    private ref struct ManyLease
    {
        /// <summary>Up to this many tensors the callers keep the handles on the stack (256 tensors x 4 arrays = 8 KB).</summary>
        public const int OnStack = 256;
        private readonly Span<nint> handles;
        private readonly int count;
        private ReadOnlySpan<DeviceBuffer> array0, array1, array2, array3;
        private int arrays;       // arrays added so far
        private int leasedInLast; // buffers leased of the last one (count unless its Add threw)

        public ManyLease(Span<nint> handles, int count)
        {
            this.handles = handles;
            this.count = count;
        }

        /// <summary>Leases every buffer of the next operand array into handles[arrays * count ..].</summary>
        public void Add(ReadOnlySpan<DeviceBuffer> array, string name)
        {
            switch (arrays)
            {
                case 0: array0 = array; break;
                case 1: array1 = array; break;
                case 2: array2 = array; break;
                case 3: array3 = array; break;
                default: throw new InvalidOperationException("ManyLease holds at most 4 operand arrays");
            }
            int offset = arrays * count;
            arrays++;
            leasedInLast = 0;
            for (int i = 0; i < count; i++)
            {
                handles[offset + i] = AddRef(array[i], name, i);
                leasedInLast++;
            }
        }

        public void Dispose()
        {
            for (int k = 0; k < arrays; k++)
            {
                ReadOnlySpan<DeviceBuffer> array = k switch { 0 => array0, 1 => array1, 2 => array2, _ => array3 };
                int leased = k == arrays - 1 ? leasedInLast : count;
                for (int i = 0; i < leased; i++) array[i].Handle.DangerousRelease();
            }
            arrays = 0;
        }

        /// <summary>Adds a reference to the buffer's handle and returns the kn_buffer*; the name ("grad[3]") is built only for the exception.</summary>
        private static nint AddRef(DeviceBuffer? buffer, string array, int index)
        {
            if (buffer is null)
                throw new ArgumentNullException($"{array}[{index}]");
            if (!BufferLease.TryAddRef(buffer))
                throw BufferLease.Disposed(buffer, $"{array}[{index}]");
            return buffer.Handle.DangerousGetHandle();
        }
    }

    /// <summary>
    /// y[i] = (yType) x[i] for i &lt; <paramref name="n"/>, between float32, int32 and int64 (kn_cast): float to int
    /// truncates toward zero, saturates out of range and gives 0 for NaN; int64 to int32 keeps the low 32 bits;
    /// int to float rounds to nearest even. y must not be x.
    /// </summary>
    public static void Cast(DeviceBuffer x, Dtype xType, DeviceBuffer y, Dtype yType, long n) =>
        SafeNativeMethods.kn_cast(x, xType, y, yType, n);

    // ---- Recurrent cells (kernels.h has the math and the saved layouts) ----

    /// <summary>
    /// One LSTM step after the GEMMs: gates [batch, 4 hidden] (i, f, g, o pre-activations), c = s(f) cPrev +
    /// s(i) tanh(g), h = s(o) tanh(c); rows whose <paramref name="mask"/> is 0 keep hPrev / cPrev. One kernel.
    /// <paramref name="saved"/> [batch, 5 hidden] (i, f, g, o activated, tanh c) is for the backward; null when none follows.
    /// </summary>
    public static void LstmCell(DeviceBuffer gates, DeviceBuffer cPrev, DeviceBuffer hPrev, DeviceBuffer? mask, DeviceBuffer h,
                                DeviceBuffer c, DeviceBuffer? saved, long batch, long hidden) =>
        SafeNativeMethods.kn_lstm_cell_f32(gates, cPrev, hPrev, mask, h, c, saved, batch, hidden);

    /// <summary>
    /// The backward of <see cref="LstmCell"/> from its saved activations: dgates, and (each optional) dcPrev and the
    /// direct dhPrev (dh on masked rows, else 0) from dh and dc (null = zero). One kernel.
    /// </summary>
    public static void LstmCellBackward(DeviceBuffer saved, DeviceBuffer cPrev, DeviceBuffer? mask, DeviceBuffer? dh, DeviceBuffer? dc,
                                        DeviceBuffer dgates, DeviceBuffer? dcPrev, DeviceBuffer? dhPrev, long batch, long hidden) =>
        SafeNativeMethods.kn_lstm_cell_backward_f32(saved, cPrev, mask, dh, dc, dgates, dcPrev, dhPrev, batch, hidden);

    /// <summary>
    /// One GRU step after the GEMMs: xGates, hGates [batch, 3 hidden] (r, z, n), h = (1 - z) n + z hPrev with
    /// n = tanh(x_n + r h_n); rows whose <paramref name="mask"/> is 0 keep hPrev. One kernel. <paramref name="saved"/>
    /// [batch, 3 hidden] (r, z, n) is for the backward; null when none follows.
    /// </summary>
    public static void GruCell(DeviceBuffer xGates, DeviceBuffer hGates, DeviceBuffer hPrev, DeviceBuffer? mask, DeviceBuffer h,
                               DeviceBuffer? saved, long batch, long hidden) =>
        SafeNativeMethods.kn_gru_cell_f32(xGates, hGates, hPrev, mask, h, saved, batch, hidden);

    /// <summary>The backward of <see cref="GruCell"/>: dxGates, dhGates and (optional) the direct dhPrev from dh. One kernel.</summary>
    public static void GruCellBackward(DeviceBuffer saved, DeviceBuffer hGates, DeviceBuffer hPrev, DeviceBuffer? mask, DeviceBuffer dh,
                                       DeviceBuffer dxGates, DeviceBuffer dhGates, DeviceBuffer? dhPrev, long batch, long hidden) =>
        SafeNativeMethods.kn_gru_cell_backward_f32(saved, hGates, hPrev, mask, dh, dxGates, dhGates, dhPrev, batch, hidden);

    static string Format(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
