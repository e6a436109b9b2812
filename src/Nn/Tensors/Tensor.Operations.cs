namespace Kernels.Nn;

// The forward half of every differentiable operation: allocate the result, run the kernel, record
// the backward rule from Gradients. All inputs of one operation must be on one device.
public sealed partial class Tensor
{
    // ---- Elementwise, one input ----------------------------------------------------------------

    internal static Tensor Unary(UnaryOp op, Tensor x, float alpha = 0)
    {
        ArgumentNullException.ThrowIfNull(x);
        var xData = x.Float32Buffer(op.ToString());
        var y = Empty(x.shape, x.Device);
        if (x.Count > 0) Ops.Unary(op, xData, y.Buffer, x.Count, alpha);
        return Record(y, op.ToString(), new[] { x }, g => new Tensor?[] { Gradients.Unary(op, alpha, x, y, g) });
    }

    /// <summary>-x</summary>
    public Tensor Neg() => Unary(UnaryOp.Neg, this);
    /// <summary>|x|</summary>
    public Tensor Abs() => Unary(UnaryOp.Abs, this);
    /// <summary>e^x</summary>
    public Tensor Exp() => Unary(UnaryOp.Exp, this);
    /// <summary>ln x</summary>
    public Tensor Log() => Unary(UnaryOp.Log, this);
    /// <summary>sqrt x</summary>
    public Tensor Sqrt() => Unary(UnaryOp.Sqrt, this);
    /// <summary>1 / sqrt x</summary>
    public Tensor Rsqrt() => Unary(UnaryOp.Rsqrt, this);
    /// <summary>x^2</summary>
    public Tensor Square() => Unary(UnaryOp.Square, this);
    /// <summary>1 / x</summary>
    public Tensor Reciprocal() => Unary(UnaryOp.Reciprocal, this);
    /// <summary>tanh x</summary>
    public Tensor Tanh() => Unary(UnaryOp.Tanh, this);
    /// <summary>1 / (1 + e^-x)</summary>
    public Tensor Sigmoid() => Unary(UnaryOp.Sigmoid, this);
    /// <summary>max(x, 0)</summary>
    public Tensor Relu() => Unary(UnaryOp.Relu, this);
    /// <summary>x for x &gt; 0, else slope * x</summary>
    public Tensor LeakyRelu(float slope = 0.01f) => Unary(UnaryOp.LeakyRelu, this, slope);
    /// <summary>x * Phi(x), the exact (erf) GELU</summary>
    public Tensor Gelu() => Unary(UnaryOp.Gelu, this);
    /// <summary>x for x &gt; 0, else alpha * (e^x - 1)</summary>
    public Tensor Elu(float alpha = 1) => Unary(UnaryOp.Elu, this, alpha);
    /// <summary>ln(1 + e^x)</summary>
    public Tensor Softplus() => Unary(UnaryOp.Softplus, this);
    /// <summary>sin x</summary>
    public Tensor Sin() => Unary(UnaryOp.Sin, this);
    /// <summary>cos x</summary>
    public Tensor Cos() => Unary(UnaryOp.Cos, this);
    /// <summary>x * scalar</summary>
    public Tensor Mul(float scalar) => Unary(UnaryOp.Scale, this, scalar);
    /// <summary>x + scalar</summary>
    public Tensor Add(float scalar) => Unary(UnaryOp.AddScalar, this, scalar);
    /// <summary>x ^ exponent</summary>
    public Tensor Pow(float exponent) => Unary(UnaryOp.PowScalar, this, exponent);

    // ---- Elementwise, two inputs with broadcasting ---------------------------------------------

    internal static Tensor Binary(BinaryOp op, Tensor a, Tensor b)
    {
        var c = BinaryValue(op, a, b);
        return Record(c, op.ToString(), new[] { a, b }, g => Gradients.Binary(op, a, b, g));
    }

    /// <summary>c = a op b with broadcasting, computed without an autograd record (comparisons use it as it is).</summary>
    private static Tensor BinaryValue(BinaryOp op, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        CheckSameDtype(op.ToString(), a, b);
        DeviceBuffer aData = a.Float32Buffer(op.ToString()), bData = b.Float32Buffer(op.ToString());
        var cShape = Ops.BroadcastShape(a.shape, b.shape);
        var c = Empty(cShape, a.Device);
        if (c.Count > 0) Ops.Binary(op, aData, a.shape, bData, b.shape, c.Buffer, cShape);
        return c;
    }

    /// <summary>a + b (broadcasting)</summary>
    public Tensor Add(Tensor other) => Binary(BinaryOp.Add, this, other);
    /// <summary>a - b (broadcasting)</summary>
    public Tensor Sub(Tensor other) => Binary(BinaryOp.Sub, this, other);
    /// <summary>a * b (broadcasting)</summary>
    public Tensor Mul(Tensor other) => Binary(BinaryOp.Mul, this, other);
    /// <summary>a / b (broadcasting)</summary>
    public Tensor Div(Tensor other) => Binary(BinaryOp.Div, this, other);
    /// <summary>a ^ b (broadcasting)</summary>
    public Tensor Pow(Tensor exponent) => Binary(BinaryOp.Pow, this, exponent);
    /// <summary>Elementwise maximum (broadcasting); ties send the gradient to this tensor.</summary>
    public Tensor Maximum(Tensor other) => Binary(BinaryOp.Maximum, this, other);
    /// <summary>Elementwise minimum (broadcasting); ties send the gradient to this tensor.</summary>
    public Tensor Minimum(Tensor other) => Binary(BinaryOp.Minimum, this, other);

    /// <summary>a + b</summary>
    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    /// <summary>a - b</summary>
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    /// <summary>a * b (elementwise)</summary>
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    /// <summary>a / b</summary>
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    /// <summary>-a</summary>
    public static Tensor operator -(Tensor a) => a.Neg();
    /// <summary>a + s</summary>
    public static Tensor operator +(Tensor a, float s) => a.Add(s);
    /// <summary>a - s</summary>
    public static Tensor operator -(Tensor a, float s) => a.Add(-s);
    /// <summary>a * s</summary>
    public static Tensor operator *(Tensor a, float s) => a.Mul(s);
    /// <summary>s * a</summary>
    public static Tensor operator *(float s, Tensor a) => a.Mul(s);
    /// <summary>a / s</summary>
    public static Tensor operator /(Tensor a, float s) => a.Mul(1f / s);

    // ---- Shape -----------------------------------------------------------------------------------

    /// <summary>The same data seen with another shape (one dimension may be -1: inferred). No copy.</summary>
    public Tensor Reshape(params long[] newShape)
    {
        ArgumentNullException.ThrowIfNull(newShape);
        var dims = (long[])newShape.Clone();
        int inferred = Array.IndexOf(dims, -1L);
        if (inferred >= 0)
        {
            long known = 1;
            for (int i = 0; i < dims.Length; i++) if (i != inferred) known *= dims[i];
            if (known == 0 || Count % known != 0)
                throw new ArgumentException($"cannot reshape {FormatShape(shape)} ({Count} elements) to {FormatShape(newShape)}", nameof(newShape));
            dims[inferred] = Count / known;
        }
        dims = CheckShape(dims);
        if (ShapeSize(dims) != Count)
            throw new ArgumentException($"cannot reshape {FormatShape(shape)} ({Count} elements) to {FormatShape(newShape)} ({ShapeSize(dims)} elements)", nameof(newShape));
        Storage.Retain();
        var view = new Tensor(Storage, dims, Dtype, Range);
        var source = this;
        return Record(view, "Reshape", new[] { source }, g => new Tensor?[] { Gradients.Reshape(source, g) });
    }

    /// <summary>
    /// The dimensions reordered: dimension i of the result is dimension <paramref name="dims"/>[i] of this
    /// tensor (PyTorch's permute, NumPy's transpose; negative indices count from the end). A copy, made by
    /// the strided-copy kernel; the gradient is the permute by the inverse order.
    /// </summary>
    public Tensor Permute(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Length != Rank)
            throw new ArgumentException($"Permute: {dims.Length} dimensions given for a tensor of rank {Rank} {FormatShape(shape)}", nameof(dims));
        var order = new int[Rank];
        var seen = new bool[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int d = dims[i] < 0 ? dims[i] + Rank : dims[i];
            if (d < 0 || d >= Rank || seen[d])
                throw new ArgumentException($"Permute: ({string.Join(", ", dims)}) is not an order of the dimensions of {FormatShape(shape)}", nameof(dims));
            seen[d] = true;
            order[i] = d;
        }
        var contiguous = ContiguousStrides(shape);
        var outShape = new long[Rank];
        var strides = new long[Rank];
        for (int i = 0; i < Rank; i++)
        {
            outShape[i] = shape[order[i]];
            strides[i] = contiguous[order[i]];
        }
        var y = Empty(outShape, Device, Dtype, Range);  // any element type: a permute moves values
        if (y.Count > 0) CopyStrided(this, 0, strides, y, 0, null, outShape);
        var inverse = new int[Rank];
        for (int i = 0; i < Rank; i++) inverse[order[i]] = i;
        return Record(y, "Permute", new[] { this }, g => new Tensor?[] { Gradients.Permute(g, inverse) });
    }

    /// <summary>Swaps two dimensions (negative indices count from the end): <see cref="Permute"/> with those two exchanged.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        var order = Enumerable.Range(0, Rank).ToArray();
        int a = dim0 < 0 ? dim0 + Rank : dim0, b = dim1 < 0 ? dim1 + Rank : dim1;
        if (a < 0 || a >= Rank || b < 0 || b >= Rank)
            throw new ArgumentOutOfRangeException(dim0 < -Rank || dim0 >= Rank ? nameof(dim0) : nameof(dim1),
                $"Transpose({dim0}, {dim1}): a tensor of rank {Rank} {FormatShape(shape)} has dimensions {-Rank}..{Rank - 1}");
        (order[a], order[b]) = (order[b], order[a]);
        return Permute(order);
    }

    /// <summary>Keeps the first dimension and flattens the rest: [N, ...] -> [N, prod(...)].</summary>
    public Tensor Flatten() => Rank <= 1 ? Reshape(Count) : Reshape(shape[0], -1);

    // ---- Matrix products -------------------------------------------------------------------------

    /// <summary>
    /// Matrix product: [m, k] x [k, n] -> [m, n]; batched [b, m, k] x [b, k, n] -> [b, m, n]; and
    /// [b, m, k] x [k, n] (one right-hand matrix for every batch).
    /// </summary>
    public Tensor MatMul(Tensor other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var a = this;
        var b = other;
        if (a.Rank < 2 || a.Rank > 3 || b.Rank < 2 || b.Rank > 3 || (a.Rank == 2 && b.Rank == 3))
            throw new ShapeMismatchException($"MatMul supports [m,k]x[k,n], [b,m,k]x[b,k,n] and [b,m,k]x[k,n]; got {FormatShape(a.shape)} x {FormatShape(b.shape)}");
        long batch = a.Rank == 3 ? a.shape[0] : 1;
        long m = a.shape[^2], k = a.shape[^1], n = b.shape[^1];
        if (b.shape[^2] != k || (b.Rank == 3 && b.shape[0] != batch))
            throw new ShapeMismatchException($"MatMul: {FormatShape(a.shape)} x {FormatShape(b.shape)}: inner dimensions or batch sizes differ");
        long[] cShape = a.Rank == 3 ? new[] { batch, m, n } : new[] { m, n };
        DeviceBuffer aData = a.Float32Buffer("MatMul"), bData = b.Float32Buffer("MatMul");
        var c = Empty(cShape, a.Device);
        if (c.Count > 0)
            Ops.Gemm(Kernels.Transpose.NoTranspose, Kernels.Transpose.NoTranspose, m, n, k, 1f, aData, k, bData, n, 0f, c.Buffer, n,
                     batch, m * k, b.Rank == 3 ? k * n : 0, m * n);
        return Record(c, "MatMul", new[] { a, b }, g => Gradients.MatMul(a, b, g));
    }

    // ---- Reductions ------------------------------------------------------------------------------

    // (outer, reduce, inner) of reducing one axis, and the result's shape.
    private (long Outer, long Reduce, long Inner, long[] KeptShape) AxisGeometry(int axis)
    {
        int a = axis < 0 ? axis + Rank : axis;
        if (a < 0 || a >= Rank) throw new ArgumentOutOfRangeException(nameof(axis), $"axis {axis} is out of range for shape {FormatShape(shape)}");
        long outer = 1, inner = 1;
        for (int d = 0; d < a; d++) outer *= shape[d];
        for (int d = a + 1; d < Rank; d++) inner *= shape[d];
        var kept = (long[])shape.Clone();
        kept[a] = 1;
        return (outer, shape[a], inner, kept);
    }

    private Tensor ReduceAxis(ReduceOp op, int axis, bool keepDim)
    {
        var (outer, reduce, inner, kept) = AxisGeometry(axis);
        var xData = Float32Buffer(op.ToString());
        var y = Empty(kept, Device);
        if (y.Count > 0) Ops.Reduce(op, xData, y.Buffer, outer, reduce, inner);
        var x = this;
        var result = Record(y, op.ToString(), new[] { x }, g => new Tensor?[] { Gradients.Reduce(op, x, y, g) });
        if (keepDim) return result;
        var dropped = shape.Where((_, d) => d != (axis < 0 ? axis + Rank : axis)).ToArray();
        return result.Reshape(dropped);
    }

    private Tensor ReduceAll(ReduceOp op)
    {
        var xData = Float32Buffer(op.ToString());
        var y = Empty(ReadOnlySpan<long>.Empty, Device);
        Ops.Reduce(op, xData, y.Buffer, 1, Count, 1);
        var x = this;
        return Record(y, op.ToString(), new[] { x }, g => new Tensor?[] { Gradients.Reduce(op, x, y, g) });
    }

    /// <summary>Sum of all elements (rank 0).</summary>
    public Tensor Sum() => ReduceAll(ReduceOp.Sum);
    /// <summary>Sum over one axis.</summary>
    public Tensor Sum(int axis, bool keepDim = false) => ReduceAxis(ReduceOp.Sum, axis, keepDim);
    /// <summary>Mean of all elements (rank 0).</summary>
    public Tensor Mean() => ReduceAll(ReduceOp.Mean);
    /// <summary>Mean over one axis.</summary>
    public Tensor Mean(int axis, bool keepDim = false) => ReduceAxis(ReduceOp.Mean, axis, keepDim);
    /// <summary>Largest element (rank 0); the gradient goes to every element equal to it.</summary>
    public Tensor Max() => ReduceAll(ReduceOp.Max);
    /// <summary>Largest element over one axis; the gradient goes to every element equal to it.</summary>
    public Tensor Max(int axis, bool keepDim = false) => ReduceAxis(ReduceOp.Max, axis, keepDim);
    /// <summary>Smallest element (rank 0).</summary>
    public Tensor Min() => ReduceAll(ReduceOp.Min);
    /// <summary>Smallest element over one axis.</summary>
    public Tensor Min(int axis, bool keepDim = false) => ReduceAxis(ReduceOp.Min, axis, keepDim);

    /// <summary>Index of the largest element along an axis (first one on ties). Not differentiable.</summary>
    public long[] ArgMax(int axis = -1)
    {
        var (outer, reduce, inner, _) = AxisGeometry(axis);
        if (outer * inner == 0) return Array.Empty<long>();
        var xData = Float32Buffer("ArgMax");
        using var indices = DeviceBuffer.Allocate(Device, sizeof(long) * outer * inner);
        Ops.ArgReduce(ArgReduceOp.Argmax, xData, indices, outer, reduce, inner);
        CountHostRead();
        return indices.ToInt64Array();
    }

    /// <summary>
    /// Index of the largest element along an axis (first one on ties; NaN counts as largest), as an int64
    /// tensor on this tensor's device with that axis dropped: nothing is read to the host (metrics compare it
    /// with integer targets there). Not differentiable.
    /// </summary>
    public Tensor ArgMaxOnDevice(int axis = -1)
    {
        var (outer, reduce, inner, kept) = AxisGeometry(axis);
        var xData = Float32Buffer("ArgMaxOnDevice");
        int a = axis < 0 ? axis + Rank : axis;
        var y = Empty(kept.Where((_, d) => d != a).ToArray(), Device, Dtype.Int64,
                      reduce > 0 ? new IntegerRange(0, reduce - 1, false) : null);
        if (y.Count > 0) Ops.ArgReduce(ArgReduceOp.Argmax, xData, y.RawBuffer, outer, reduce, inner);
        return y;
    }

    // ---- Softmax ---------------------------------------------------------------------------------

    private Tensor SoftmaxLastAxis(bool log)
    {
        if (Rank == 0) throw new ArgumentException("softmax needs at least one dimension");
        long cols = shape[^1], rows = cols == 0 ? 0 : Count / cols;
        var xData = Float32Buffer(log ? "LogSoftmax" : "Softmax");
        var y = Empty(shape, Device);
        if (Count > 0) Ops.Softmax(xData, y.Buffer, rows, cols, log);
        var x = this;
        return Record(y, log ? "LogSoftmax" : "Softmax", new[] { x }, g => new Tensor?[] { Gradients.Softmax(y, g, rows, cols, log) });
    }

    /// <summary>Softmax over the last axis (max-subtracted, stable for large inputs).</summary>
    public Tensor Softmax() => SoftmaxLastAxis(log: false);

    /// <summary>Log-softmax over the last axis.</summary>
    public Tensor LogSoftmax() => SoftmaxLastAxis(log: true);
}
