namespace Kernels.Nn;

/// <summary>
/// Gathering rows by index: <see cref="IndexSelect(int, ReadOnlySpan{long})"/> (PyTorch's index_select)
/// and the lookup behind <see cref="Embedding"/>. Indices come as a host <c>long</c> span (checked here,
/// uploaded once) or as an int64 / int32 tensor already on the device (passed as it is; int32 is widened
/// there by kn_cast). Either way libkernels reads them to the host once to check them before the kernel
/// runs (kernels.h), and keeps them on the device for the backward pass, the deterministic scatter-add
/// (the same bits on every run). The table may be of any element type (an integer table has no gradient).
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
        int d = IndexSelectAxis(dim);
        if (d == 0) return GatherRows(indices, new long[] { indices.Length }, -1, nameof(indices));
        // Along another dimension: bring it to the front and back (two strided copies, each with its gradient).
        return Transpose(0, d).GatherRows(indices, new long[] { indices.Length }, -1, nameof(indices)).Transpose(0, d);
    }

    /// <summary>
    /// <see cref="IndexSelect(int, ReadOnlySpan{long})"/> with the indices in a 1-D int64 or int32 tensor on
    /// this tensor's device (no float conversion, no upload). An index outside the dimension throws naming it
    /// and its position (libkernels reads the indices once to check them).
    /// </summary>
    public Tensor IndexSelect(int dim, Tensor indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        int d = IndexSelectAxis(dim);
        if (indices.Rank != 1)
            throw new ShapeMismatchException($"IndexSelect: the indices must be 1-D; got shape {FormatShape(indices.shape)}");
        if (d == 0) return GatherRows(indices, indices.shape, -1, nameof(indices));
        return Transpose(0, d).GatherRows(indices, indices.shape, -1, nameof(indices)).Transpose(0, d);
    }

    private int IndexSelectAxis(int dim)
    {
        int d = dim < 0 ? dim + Rank : dim;
        if (Rank == 0 || d < 0 || d >= Rank)
            throw new ArgumentOutOfRangeException(nameof(dim), $"IndexSelect({dim}): a tensor of rank {Rank} {FormatShape(shape)} has dimensions {-Rank}..{Rank - 1}");
        return d;
    }

    /// <summary>
    /// Rows of this tensor (dimension 0) at <paramref name="indices"/>, laid out in <paramref name="indexShape"/>:
    /// the result is indexShape followed by this tensor's remaining dimensions. The backward pass gives
    /// the row <paramref name="paddingIndex"/> (-1: none) no gradient.
    /// </summary>
    internal Tensor GatherRows(ReadOnlySpan<long> indices, long[] indexShape, long paddingIndex, string indicesName)
    {
        long rows = shape[0];
        for (int i = 0; i < indices.Length; i++)
            if (indices[i] < 0 || indices[i] >= rows)
                throw new ArgumentOutOfRangeException(indicesName, $"index {indices[i]} at position {i} is outside [0, {rows}) for a tensor of shape {FormatShape(shape)}");
        if (indices.Length == 0) return GatherRows(null, indexShape, paddingIndex);
        using var ids = FromArray(indices, new long[] { indices.Length }, Device);
        return GatherRows(ids, indexShape, paddingIndex);
    }

    /// <summary>
    /// Rows of this tensor at the ids in an int64 or int32 tensor on this device, laid out in
    /// <paramref name="indexShape"/> (its product is the number of ids). When the ids' range is known on
    /// the host (<see cref="IntegerRange"/>) and lies outside the rows, the error comes without a device read.
    /// </summary>
    internal Tensor GatherRows(Tensor ids, long[] indexShape, long paddingIndex, string indicesName)
    {
        if (ids.Dtype == Dtype.Float32)
            throw new DtypeMismatchException($"{indicesName}: a float32 tensor {FormatShape(ids.shape)} of indices; indices must be int64 or int32 (convert with To(Dtype.Int64))");
        if (ids.Device != Device)
            throw new DeviceMismatchException($"{indicesName}: the indices are on {ids.Device.Name} but the table {FormatShape(shape)} is on {Device.Name}");
        long rows = shape[0];
        if (ids.Range is IntegerRange { Exact: true } r && (r.Min < 0 || r.Max >= rows))
            throw new ArgumentOutOfRangeException(indicesName,
                $"index {(r.Min < 0 ? r.Min : r.Max)} is outside [0, {rows}) for a tensor of shape {FormatShape(shape)} (known from the indices' upload, no device read)");
        if (ids.Count == 0) return GatherRows(null, indexShape, paddingIndex);
        var wide = ids.To(Dtype.Int64);  // the kernels read int64; int32 is widened on the device
        try
        {
            return GatherRows(wide, indexShape, paddingIndex);
        }
        finally
        {
            if (!ReferenceEquals(wide, ids)) wide.Dispose();
        }
    }

    /// <summary>The gather itself from int64 ids (null: none). The ids' storage is retained by the result for the backward pass.</summary>
    private Tensor GatherRows(Tensor? ids, long[] indexShape, long paddingIndex)
    {
        long rows = shape[0], cols = ShapeSize(shape.AsSpan(1)), n = ids?.Count ?? 0;
        // Any element type moves as 4-byte words (the kernel only loads and stores): int64 rows are 2 cols words each.
        long words = cols * ElementSize(Dtype) / 4;
        var outShape = new long[indexShape.Length + Rank - 1];
        indexShape.CopyTo(outShape, 0);
        for (int i = 1; i < Rank; i++) outShape[indexShape.Length + i - 1] = shape[i];
        var y = Empty(outShape, Device, Dtype, Range is IntegerRange r ? r with { Exact = false } : null);
        Tensor? kept = null;  // the ids, kept alive with the result for the backward pass
        if (ids is not null && n > 0)
        {
            try
            {
                Ops.GatherRows(RawBuffer, rows, words, ids.RawBuffer, n, y.RawBuffer);
                kept = ids.Detach();
                DisposeScope.Untrack(kept);
            }
            catch
            {
                y.Dispose();
                throw;
            }
        }
        if (Dtype != Dtype.Float32)
        {
            kept?.Dispose();
            return y;  // an integer table has no gradient
        }
        var table = this;
        var indexBuffer = kept?.RawBuffer;
        var recorded = Record(y, "GatherRows", new[] { table },
                              g => new Tensor?[] { Gradients.GatherRows(g, indexBuffer, n, table.ShapeArray, paddingIndex, table.Device) });
        if (kept is not null) recorded.Attach(kept);  // freed with the result, after any backward pass
        return recorded;
    }
}
