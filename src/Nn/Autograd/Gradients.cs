namespace Kernels.Nn;

/// <summary>
/// Every backward rule in one place, one short method per operation (micrograd's engine, tinygrad's
/// gradient table). Each takes the forward inputs/outputs and the upstream gradient g and returns the
/// gradient of each input (null where an input needs none). They run under NoGrad, from
/// <see cref="Tensor.Backward"/>; the heavy lifting is the fused backward kernels of libkernels.
/// </summary>
internal static class Gradients
{
    /// <summary>dx = g * f'(x), one fused kernel.</summary>
    public static Tensor Unary(UnaryOp op, float alpha, Tensor x, Tensor y, Tensor g)
    {
        var dx = Tensor.Empty(x.ShapeArray, x.Device);
        if (dx.Count > 0)
        {
            bool fromY = Ops.UnaryBackwardUsesOutput(op);  // libkernels' own rule, not a copy
            Ops.UnaryBackward(op, fromY ? null : x.Buffer, fromY ? y.Buffer : null, g.Buffer, dx.Buffer, dx.Count, alpha);
        }
        return dx;
    }

    /// <summary>Both partial derivatives in the broadcast shape (one fused kernel), then summed back
    /// over the broadcast dimensions to each input's own shape.</summary>
    public static Tensor?[] Binary(BinaryOp op, Tensor a, Tensor b, Tensor g)
    {
        var da = a.RequiresGrad ? Tensor.Empty(g.ShapeArray, g.Device) : null;
        var db = b.RequiresGrad ? Tensor.Empty(g.ShapeArray, g.Device) : null;
        if (g.Count > 0 && (da is not null || db is not null))
            Ops.BinaryBackward(op, a.Buffer, a.ShapeArray, b.Buffer, b.ShapeArray, g.Buffer, g.ShapeArray, da?.Buffer, db?.Buffer);
        return new[] { SumToShape(da, a.ShapeArray), SumToShape(db, b.ShapeArray) };
    }

    /// <summary>dA = g B^T, dB = A^T g, as GEMMs with transpose flags (no transposed copies).</summary>
    public static Tensor?[] MatMul(Tensor a, Tensor b, Tensor g)
    {
        long batch = a.Rank == 3 ? a.ShapeArray[0] : 1;
        long m = a.ShapeArray[^2], k = a.ShapeArray[^1], n = b.ShapeArray[^1];
        bool batchedB = b.Rank == 3;
        Tensor? da = null, db = null;
        if (a.RequiresGrad)
        {
            da = Tensor.Empty(a.ShapeArray, a.Device);
            if (da.Count > 0)
                Ops.Gemm(Transpose.NoTranspose, Transpose.Transpose, m, k, n, 1f, g.Buffer, n, b.Buffer, n, 0f, da.Buffer, k,
                         batch, m * n, batchedB ? k * n : 0, m * k);
        }
        if (b.RequiresGrad)
        {
            db = Tensor.Empty(b.ShapeArray, b.Device);
            if (db.Count > 0)
            {
                if (batchedB)
                    Ops.Gemm(Transpose.Transpose, Transpose.NoTranspose, k, n, m, 1f, a.Buffer, k, g.Buffer, n, 0f, db.Buffer, n,
                             batch, m * k, m * n, k * n);
                else  // one B for all batches: dB = sum_i A_i^T g_i = A'^T g' with A' = [batch*m, k]
                    Ops.Gemm(Transpose.Transpose, Transpose.NoTranspose, k, n, batch * m, 1f, a.Buffer, k, g.Buffer, n, 0f, db.Buffer, n);
            }
        }
        return new[] { da, db };
    }

    /// <summary>
    /// The dense layer's backward: dz = g * act'(y) and the bias gradient (dz's column sums) in one
    /// pass over g, then dx = dz W^T and dW = x^T dz as GEMMs (<see cref="MatMul"/>). With the identity
    /// and no bias gradient, dz is g itself.
    /// </summary>
    public static Tensor?[] Linear(Tensor x, Tensor w, Tensor? bias, Tensor y, UnaryOp activation, float alpha, Tensor g)
    {
        bool identity = activation == UnaryOp.Scale && alpha == 1f;
        Tensor? dbias = bias is not null && bias.RequiresGrad ? Tensor.Empty(bias.ShapeArray, bias.Device) : null;
        var dz = g;
        if (!identity || dbias is not null)
        {
            long m = y.ShapeArray[0], n = y.ShapeArray[1];
            dz = identity ? g : Tensor.Empty(g.ShapeArray, g.Device);
            if (n > 0)
            {
                // Relu and leaky relu take y as their x: the derivative depends on the sign only.
                bool fromY = Ops.UnaryBackwardUsesOutput(activation);
                Ops.LinearBackward(activation, alpha, m, n, fromY ? null : y.Buffer, fromY ? y.Buffer : null, g.Buffer,
                                   dz.Buffer, dbias?.Buffer);
            }
        }
        var dxw = MatMul(x, w, dz);
        return bias is null ? dxw : new[] { dxw[0], dxw[1], dbias };
    }

    /// <summary>Sum/mean spread g back over the reduced elements; max/min route it to the elements
    /// equal to the extreme (via the maximum/minimum backward kernel: x &gt;= max(x) only there).</summary>
    public static Tensor Reduce(ReduceOp op, Tensor x, Tensor y, Tensor g)
    {
        var spread = Expand(g, x.ShapeArray);
        switch (op)
        {
            case ReduceOp.Sum:
                return spread;
            case ReduceOp.Mean:
            {
                long reduced = y.Count == 0 ? 1 : x.Count / y.Count;
                if (spread.Count > 0) Ops.Unary(UnaryOp.Scale, spread.Buffer, spread.Buffer, spread.Count, 1f / reduced);
                return spread;
            }
            case ReduceOp.Max:
            case ReduceOp.Min:
            {
                var dx = Tensor.Empty(x.ShapeArray, x.Device);
                if (dx.Count > 0)
                    Ops.BinaryBackward(op == ReduceOp.Max ? BinaryOp.Maximum : BinaryOp.Minimum, x.Buffer, x.ShapeArray,
                                       y.Buffer, y.ShapeArray, spread.Buffer, x.ShapeArray, dx.Buffer, null);
                spread.Dispose();
                return dx;
            }
            default:
                throw new NotSupportedException($"no gradient rule for reduction {op}");
        }
    }

    /// <summary>A reshape is a view: the gradient is g seen with the input's shape (no copy).</summary>
    public static Tensor Reshape(Tensor x, Tensor g) => g.Reshape(x.ShapeArray);

    /// <summary>A permute moves each element once, so its gradient moves g back: the permute by the inverse order.</summary>
    public static Tensor Permute(Tensor g, int[] inverse) => g.Permute(inverse);

    /// <summary>
    /// Narrow / Select / Slice: dx = zeros of x's shape with g written into the slice the forward read
    /// (indices start, start + step, ... along d; for Select, g lacks dimension d). One fill and one
    /// strided copy into a view of dx.
    /// </summary>
    public static Tensor Slice(Tensor x, Tensor g, int d, long start, long step, bool keepDim)
    {
        var dx = Tensor.Zeros(x.ShapeArray, x.Device);
        if (g.Count == 0) return dx;
        var strides = Tensor.ContiguousStrides(x.ShapeArray);
        long offset = start * strides[d];
        strides[d] *= step;
        if (!keepDim) strides = strides.Where((_, i) => i != d).ToArray();
        Ops.StridedCopy(g.Buffer, 0, Tensor.ContiguousStrides(g.ShapeArray), dx.Buffer, offset, strides, g.ShapeArray);
        return dx;
    }

    /// <summary>Concatenate: part k's gradient is its slice of g, starts[k] .. along d.</summary>
    public static Tensor?[] Concatenate(Tensor g, Tensor[] parts, int d, long[] starts) =>
        parts.Select((p, k) => p.RequiresGrad ? g.Narrow(d, starts[k], p.ShapeArray[d]) : null).ToArray();

    /// <summary>Stack: part k's gradient is g.Select(d, k).</summary>
    public static Tensor?[] Stack(Tensor g, Tensor[] parts, int d) =>
        parts.Select((p, k) => p.RequiresGrad ? g.Select(d, k) : null).ToArray();

    /// <summary>
    /// Gather-rows backward: each row of the table gets the sum of the gradients of the positions that
    /// read it (none for <paramref name="paddingIndex"/>), added in ascending position order by the
    /// deterministic scatter-add, into zeros of the table's shape.
    /// </summary>
    public static Tensor GatherRows(Tensor g, DeviceBuffer? indices, long n, long[] tableShape, long paddingIndex, Device device)
    {
        var dtable = Tensor.Zeros(tableShape, device);
        long rows = tableShape[0], cols = Tensor.ShapeSize(tableShape.AsSpan(1));
        if (indices is not null && n > 0 && cols > 0)
            Ops.ScatterAddRows(g.Buffer, indices, n, dtable.Buffer, rows, cols, paddingIndex);
        return dtable;
    }

    /// <summary>Dropout backward regenerates the forward's mask from (seed, offset) instead of storing
    /// it: dx = g * mask / (1 - p), one kernel.</summary>
    public static Tensor Dropout(Tensor g, float p, long seed, long offset)
    {
        var dx = Tensor.Empty(g.ShapeArray, g.Device);
        if (dx.Count > 0) Ops.DropoutBackward(g.Buffer, dx.Buffer, dx.Count, p, seed, offset);
        return dx;
    }

    /// <summary>Fused log-softmax + NLL backward: dx = (softmax(x) - onehot(label)) * g per row (one kernel).</summary>
    public static Tensor CrossEntropy(Tensor x, DeviceBuffer labels, Tensor g, long rows, long cols)
    {
        var dx = Tensor.Empty(x.ShapeArray, x.Device);
        Ops.CrossEntropyBackward(x.Buffer, labels, g.Buffer, dx.Buffer, rows, cols);
        return dx;
    }

    /// <summary>Softmax / log-softmax backward from the forward output (one kernel).</summary>
    public static Tensor Softmax(Tensor y, Tensor g, long rows, long cols, bool log)
    {
        var dx = Tensor.Empty(y.ShapeArray, y.Device);
        if (dx.Count > 0) Ops.SoftmaxBackward(y.Buffer, g.Buffer, dx.Buffer, rows, cols, log);
        return dx;
    }

    // ---- Broadcasting helpers --------------------------------------------------------------------

    /// <summary>Sums a gradient in a broadcast shape back to an input's shape: every dimension where
    /// the input had size 1 (or did not exist) is summed away. Consumes (may dispose) the argument.</summary>
    internal static Tensor? SumToShape(Tensor? g, long[] target)
    {
        if (g is null) return null;
        if (g.ShapeArray.AsSpan().SequenceEqual(target)) return g;
        int rank = g.Rank;
        var current = g;
        for (int d = 0; d < rank; d++)
        {
            int t = d - (rank - target.Length);
            long targetDim = t >= 0 ? target[t] : 1;
            if (targetDim != 1 || current.ShapeArray[d] == 1) continue;
            long outer = 1, inner = 1;
            for (int i = 0; i < d; i++) outer *= current.ShapeArray[i];
            for (int i = d + 1; i < rank; i++) inner *= current.ShapeArray[i];
            var kept = (long[])current.ShapeArray.Clone();
            kept[d] = 1;
            var next = Tensor.Empty(kept, current.Device);
            if (next.Count > 0) Ops.Reduce(ReduceOp.Sum, current.Buffer, next.Buffer, outer, current.ShapeArray[d], inner);
            current.Dispose();
            current = next;
        }
        var result = current.Reshape(target);
        current.Dispose();
        return result;
    }

    /// <summary>Broadcasts g (a reduced shape, or a scalar) up to shape by adding zeros of a shape that
    /// is 1 wherever g is not.</summary>
    internal static Tensor Expand(Tensor g, long[] shape)
    {
        var zerosShape = new long[shape.Length];
        for (int d = 0; d < shape.Length; d++)
        {
            int gi = d - (shape.Length - g.Rank);
            long gd = gi >= 0 ? g.ShapeArray[gi] : 1;
            zerosShape[d] = gd == 1 ? shape[d] : 1;
        }
        using var zeros = Tensor.Zeros(zerosShape, g.Device);
        var result = Tensor.Empty(shape, g.Device);
        if (result.Count > 0) Ops.Binary(BinaryOp.Add, g.Buffer, g.ShapeArray, zeros.Buffer, zerosShape, result.Buffer, shape);
        return result;
    }

    /// <summary>dx by the backward-data kernel; dw and dbias by the backward-weights kernel (one pass over x and g).</summary>
    public static Tensor?[] Conv2D(Tensor x, Tensor w, Tensor? bias, Tensor g, Conv2DGeometry geometry)
    {
        Tensor? dx = null, dw = null, db = null;
        if (x.RequiresGrad)
        {
            dx = Tensor.Empty(x.ShapeArray, x.Device);
            Ops.Conv2DBackwardData(g.Buffer, w.Buffer, dx.Buffer, geometry);
        }
        bool wantBias = bias is not null && bias.RequiresGrad;
        if (w.RequiresGrad || wantBias)
        {
            dw = Tensor.Empty(w.ShapeArray, w.Device);
            db = wantBias ? Tensor.Empty(bias!.ShapeArray, bias.Device) : null;
            Ops.Conv2DBackwardWeights(x.Buffer, g.Buffer, dw.Buffer, db?.Buffer, geometry);
            if (!w.RequiresGrad)
            {
                dw.Dispose();
                dw = null;
            }
        }
        return bias is null ? new[] { dx, dw } : new[] { dx, dw, db };
    }

    /// <summary>Max: each gradient goes to its window's recorded winner; average: spread evenly over the window.</summary>
    public static Tensor Pool2D(PoolOp op, Tensor? indices, Tensor g, Pool2DGeometry geometry, Device device)
    {
        var dx = Tensor.Empty(new[] { geometry.Batch, geometry.Channels, geometry.InHeight, geometry.InWidth }, device);
        Ops.Pool2DBackward(op, g.Buffer, indices?.Buffer, dx.Buffer, geometry);
        return dx;
    }

    /// <summary>dx, dgamma and dbeta in one kernel from the forward's saved mean and 1/std.</summary>
    public static Tensor?[] BatchNorm(Tensor x, Tensor gamma, Tensor beta, Tensor saveMean, Tensor saveInvStd, Tensor g,
                                      long batch, long channels, long spatial, bool training)
    {
        var dx = x.RequiresGrad ? Tensor.Empty(x.ShapeArray, x.Device) : null;
        var dgamma = Tensor.Empty(gamma.ShapeArray, gamma.Device);
        var dbeta = Tensor.Empty(beta.ShapeArray, beta.Device);
        Ops.BatchNormBackward(x.Buffer, g.Buffer, gamma.Buffer, saveMean.Buffer, saveInvStd.Buffer, dx?.Buffer,
                              dgamma.Buffer, dbeta.Buffer, batch, channels, spatial, training);
        return new Tensor?[] { dx, gamma.RequiresGrad ? dgamma : Discard(dgamma), beta.RequiresGrad ? dbeta : Discard(dbeta) };
    }

    private static Tensor? Discard(Tensor t)
    {
        t.Dispose();
        return null;
    }

    // ---- Recurrent cells (RecurrentCells.Lstm / Gru): one fused backward kernel per step ----

    /// <summary>
    /// LSTM cell backward from the forward's saved activations and the gradients of h and c (either may
    /// be null): dgates, dcPrev, and hPrev's direct gradient (dh on masked rows; without a mask it is
    /// zero, so none is returned: hPrev's gradient then comes only through the layer's GEMM).
    /// </summary>
    public static Tensor?[] LstmCell(Tensor saved, Tensor gates, Tensor cPrev, Tensor hPrev, Tensor? mask, Tensor? dh, Tensor? dc,
                                     long batch, long hidden)
    {
        var device = saved.Device;
        var dgates = Tensor.Empty(gates.ShapeArray, device);
        var dcPrev = cPrev.RequiresGrad ? Tensor.Empty(cPrev.ShapeArray, device) : null;
        var dhPrev = mask is not null && hPrev.RequiresGrad ? Tensor.Empty(hPrev.ShapeArray, device) : null;
        if (batch * hidden > 0)
            Ops.LstmCellBackward(saved.Buffer, cPrev.Buffer, mask?.Buffer, dh?.Buffer, dc?.Buffer, dgates.Buffer,
                                 dcPrev?.Buffer, dhPrev?.Buffer, batch, hidden);
        return new[] { dgates, dcPrev, dhPrev };
    }

    /// <summary>GRU cell backward from the forward's saved activations: dxGates, dhGates and hPrev's direct gradient.</summary>
    public static Tensor?[] GruCell(Tensor saved, Tensor xGates, Tensor hGates, Tensor hPrev, Tensor? mask, Tensor g,
                                    long batch, long hidden)
    {
        var device = saved.Device;
        var dxGates = Tensor.Empty(xGates.ShapeArray, device);
        var dhGates = Tensor.Empty(hGates.ShapeArray, device);
        var dhPrev = hPrev.RequiresGrad ? Tensor.Empty(hPrev.ShapeArray, device) : null;
        if (batch * hidden > 0)
            Ops.GruCellBackward(saved.Buffer, hGates.Buffer, hPrev.Buffer, mask?.Buffer, g.Buffer, dxGates.Buffer,
                                dhGates.Buffer, dhPrev?.Buffer, batch, hidden);
        return new[] { dxGates, dhGates, dhPrev };
    }
}
