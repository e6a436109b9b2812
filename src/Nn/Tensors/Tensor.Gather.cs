namespace Kernels.Nn;

/// <summary>
/// Gathering rows by index: <see cref="IndexSelect"/> (PyTorch's index_select) and the lookup behind
/// <see cref="Embedding"/>. The tensors are float32 only, so indices come as a host <c>long</c> span
/// (as class labels do for the losses): checked here, uploaded once, and kept on the device for the
/// backward pass, which is the deterministic scatter-add of libkernels (the same bits on every run).
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// The slices of this tensor at <paramref name="indices"/> along dimension <paramref name="dim"/>
    /// (negative counts from the end), in that order; repeats allowed. The result has this tensor's shape
    /// with dimension <paramref name="dim"/> replaced by the number of indices. The gradient adds each
    /// slice's gradient back into the slice it came from.
    /// </summary>
    public Tensor IndexSelect(int dim, ReadOnlySpan<long> indices)
    {
        int d = dim < 0 ? dim + Rank : dim;
        if (Rank == 0 || d < 0 || d >= Rank)
            throw new ArgumentOutOfRangeException(nameof(dim), $"IndexSelect({dim}): a tensor of rank {Rank} {FormatShape(shape)} has dimensions {-Rank}..{Rank - 1}");
        if (d == 0) return GatherRows(indices, new long[] { indices.Length }, -1, nameof(indices));
        // Along another dimension: bring it to the front and back (two strided copies, each with its gradient).
        return Transpose(0, d).GatherRows(indices, new long[] { indices.Length }, -1, nameof(indices)).Transpose(0, d);
    }

    /// <summary>
    /// Rows of this tensor (dimension 0) at <paramref name="indices"/>, laid out in <paramref name="indexShape"/>:
    /// the result is indexShape followed by this tensor's remaining dimensions. The backward pass gives
    /// the row <paramref name="paddingIndex"/> (-1: none) no gradient.
    /// </summary>
    internal Tensor GatherRows(ReadOnlySpan<long> indices, long[] indexShape, long paddingIndex, string indicesName)
    {
        long rows = shape[0], cols = ShapeSize(shape.AsSpan(1)), n = indices.Length;
        for (int i = 0; i < indices.Length; i++)
            if (indices[i] < 0 || indices[i] >= rows)
                throw new ArgumentOutOfRangeException(indicesName, $"index {indices[i]} at position {i} is outside [0, {rows}) for a tensor of shape {FormatShape(shape)}");
        var outShape = new long[indexShape.Length + Rank - 1];
        indexShape.CopyTo(outShape, 0);
        for (int i = 1; i < Rank; i++) outShape[indexShape.Length + i - 1] = shape[i];
        var y = Empty(outShape, Device);
        DeviceBuffer? indexBuffer = null;  // none for zero indices (the gradient is then all zeros)
        if (n > 0)
        {
            indexBuffer = DeviceBuffer.Allocate(Device, sizeof(long) * n);
            try
            {
                indexBuffer.Write(indices);
                if (cols > 0) Ops.GatherRows(Buffer, rows, cols, indexBuffer, n, y.Buffer);
            }
            catch
            {
                indexBuffer.Dispose();
                y.Dispose();
                throw;
            }
        }
        var table = this;
        var recorded = Record(y, "GatherRows", new[] { table },
                              g => new Tensor?[] { Gradients.GatherRows(g, indexBuffer, n, table.ShapeArray, paddingIndex, table.Device) });
        if (indexBuffer is not null) recorded.Attach(indexBuffer);  // freed with the result, after any backward pass
        return recorded;
    }
}
