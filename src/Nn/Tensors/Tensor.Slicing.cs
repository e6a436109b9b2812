namespace Kernels.Nn;

// Slices and joins: Narrow / Select / Slice, Concatenate / Stack, Split / Chunk. Every one is a copy by
// the strided-copy kernel (tensors here own contiguous storage, so a slice is not an aliasing view):
// a slice reads x through an offset and x's strides; a join writes each part into a slice of the
// result. Negative dimensions and indices count from the end. The gradient rules are in Gradients.cs.
public sealed partial class Tensor
{
    /// <summary>
    /// The elements <paramref name="start"/> .. <paramref name="start"/> + <paramref name="length"/> - 1 along
    /// <paramref name="dim"/> (PyTorch's narrow); a negative start counts from the end. A copy; the gradient
    /// is g written into that slice of zeros.
    /// </summary>
    public Tensor Narrow(int dim, long start, long length)
    {
        int d = Axis(dim, nameof(Narrow), nameof(dim));
        long size = shape[d];
        long first = start < 0 ? start + size : start;
        if (first < 0 || first > size || length < 0 || length > size - first)
            throw new ArgumentOutOfRangeException(first < 0 || first > size ? nameof(start) : nameof(length),
                $"Narrow({dim}, {start}, {length}): dimension {d} of {FormatShape(shape)} has {size} elements; " +
                $"the slice needs start in {-size}..{size} and 0 <= length <= size - start");
        return SliceCopy(d, first, length, 1, keepDim: true, "Narrow");
    }

    /// <summary>
    /// Index <paramref name="index"/> along <paramref name="dim"/>, which is dropped: a tensor of rank
    /// Rank - 1 (PyTorch's select, NumPy's x[:, index]); a negative index counts from the end.
    /// </summary>
    public Tensor Select(int dim, long index)
    {
        int d = Axis(dim, nameof(Select), nameof(dim));
        long size = shape[d];
        long i = index < 0 ? index + size : index;
        if (i < 0 || i >= size)
            throw new ArgumentOutOfRangeException(nameof(index),
                $"Select({dim}, {index}): dimension {d} of {FormatShape(shape)} has {size} elements; indices {-size}..{size - 1}");
        return SliceCopy(d, i, 1, 1, keepDim: false, "Select");
    }

    /// <summary>
    /// Every <paramref name="step"/>-th element from <paramref name="start"/> up to (not including)
    /// <paramref name="end"/> along <paramref name="dim"/>, as Python's x[start:end:step]: negative start and
    /// end count from the end, both are clamped to 0..size, step must be positive.
    /// </summary>
    public Tensor Slice(int dim, long start, long end, long step = 1)
    {
        int d = Axis(dim, nameof(Slice), nameof(dim));
        if (step <= 0)
            throw new ArgumentOutOfRangeException(nameof(step), $"Slice({dim}, {start}, {end}, {step}): step must be positive");
        long size = shape[d];
        long first = Math.Clamp(start < 0 ? start + size : start, 0, size);
        long last = Math.Clamp(end < 0 ? end + size : end, 0, size);
        long length = last > first ? (last - first + step - 1) / step : 0;
        return SliceCopy(d, first, length, step, keepDim: true, "Slice");
    }

    /// <summary>
    /// Joins tensors along an existing dimension <paramref name="dim"/>: they have one rank and agree on
    /// every other dimension (parts of length 0 are allowed). The gradient of each part is its slice of g.
    /// </summary>
    public static Tensor Concatenate(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        var parts = CheckParts(tensors, nameof(Concatenate));
        var first = parts[0];
        int d = first.Axis(dim, nameof(Concatenate), nameof(dim));
        var outShape = (long[])first.shape.Clone();
        outShape[d] = 0;
        foreach (var p in parts)
        {
            bool fits = p.Rank == first.Rank;
            for (int i = 0; fits && i < p.Rank; i++) fits = i == d || p.shape[i] == first.shape[i];
            if (!fits)
                throw new ShapeMismatchException(
                    $"Concatenate along dimension {d}: every part needs the shape of the first outside that dimension; got {PartShapes(parts)}");
            outShape[d] += p.shape[d];
        }
        var y = Empty(outShape, first.Device, first.Dtype, IntegerRange.Join(parts));
        var yStrides = ContiguousStrides(outShape);
        long at = 0;
        var starts = new long[parts.Length];
        for (int k = 0; k < parts.Length; k++)
        {
            starts[k] = at;
            var p = parts[k];
            if (p.Count > 0) CopyStrided(p, 0, ContiguousStrides(p.shape), y, at * yStrides[d], yStrides, p.shape);
            at += p.shape[d];
        }
        return Record(y, "Concatenate", parts, g => Gradients.Concatenate(g, parts, d, starts));
    }

    /// <summary>
    /// Joins tensors of one shape along a new dimension <paramref name="dim"/> (0..Rank; negative counts
    /// from the end of the result's dimensions). The gradient of part k is g.Select(dim, k).
    /// </summary>
    public static Tensor Stack(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        var parts = CheckParts(tensors, nameof(Stack));
        var first = parts[0];
        int rank = first.Rank + 1;
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= rank)
            throw new ArgumentOutOfRangeException(nameof(dim),
                $"Stack(dim {dim}): stacking tensors of shape {FormatShape(first.shape)} gives rank {rank}, dimensions {-rank}..{rank - 1}");
        foreach (var p in parts)
            if (!p.shape.AsSpan().SequenceEqual(first.shape))
                throw new ShapeMismatchException($"Stack: every part needs one shape; got {PartShapes(parts)}");
        var outShape = new long[rank];
        for (int i = 0, j = 0; i < rank; i++) outShape[i] = i == d ? parts.Length : first.shape[j++];
        var y = Empty(outShape, first.Device, first.Dtype, IntegerRange.Join(parts));
        var yAll = ContiguousStrides(outShape);
        var yStrides = yAll.Where((_, i) => i != d).ToArray();  // part k is the slice [.., k, ..] of y
        if (first.Count > 0)
        {
            var xStrides = ContiguousStrides(first.shape);
            for (int k = 0; k < parts.Length; k++)
                CopyStrided(parts[k], 0, xStrides, y, k * yAll[d], yStrides, first.shape);
        }
        return Record(y, "Stack", parts, g => Gradients.Stack(g, parts, d));
    }

    /// <summary>
    /// Cuts this tensor along <paramref name="dim"/> into parts of the given lengths, which must add up to
    /// the dimension's size (zeros allowed). Each part is a <see cref="Narrow"/>, with its gradient.
    /// </summary>
    public Tensor[] Split(IReadOnlyList<long> sizes, int dim = 0)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        int d = Axis(dim, nameof(Split), nameof(dim));
        if (sizes.Any(s => s < 0) || sizes.Sum() != shape[d])
            throw new ArgumentException(
                $"Split: sizes ({string.Join(", ", sizes)}) must be >= 0 and add up to {shape[d]}, dimension {d} of {FormatShape(shape)}",
                nameof(sizes));
        var parts = new Tensor[sizes.Count];
        long at = 0;
        for (int k = 0; k < parts.Length; k++)
        {
            parts[k] = Narrow(d, at, sizes[k]);
            at += sizes[k];
        }
        return parts;
    }

    /// <summary>
    /// Cuts this tensor along <paramref name="dim"/> into parts of <paramref name="splitSize"/> elements, the
    /// last one shorter when the size does not divide (PyTorch's split with an int).
    /// </summary>
    public Tensor[] Split(long splitSize, int dim = 0)
    {
        int d = Axis(dim, nameof(Split), nameof(dim));
        if (splitSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(splitSize), $"Split: splitSize {splitSize} must be positive");
        long size = shape[d];
        var sizes = new List<long>();
        for (long at = 0; at < size; at += splitSize) sizes.Add(Math.Min(splitSize, size - at));
        if (sizes.Count == 0) sizes.Add(0);  // an empty dimension gives one empty part, as PyTorch does
        return Split(sizes, d);
    }

    /// <summary>
    /// Cuts this tensor along <paramref name="dim"/> into at most <paramref name="chunks"/> parts of
    /// ceil(size / chunks) elements (PyTorch's chunk: fewer parts when the size runs out).
    /// </summary>
    public Tensor[] Chunk(int chunks, int dim = 0)
    {
        if (chunks <= 0)
            throw new ArgumentOutOfRangeException(nameof(chunks), $"Chunk: {chunks} chunks; at least 1 is needed");
        int d = Axis(dim, nameof(Chunk), nameof(dim));
        long size = shape[d];
        return Split(size == 0 ? 1 : (size + chunks - 1) / chunks, d);
    }

    /// <summary>
    /// The copy of a slice: <paramref name="length"/> indices start, start + step, ... along dimension
    /// <paramref name="d"/> (all in range), the dimension kept or dropped (Select).
    /// </summary>
    private Tensor SliceCopy(int d, long start, long length, long step, bool keepDim, string name)
    {
        var strides = ContiguousStrides(shape);
        long offset = start * strides[d];
        strides[d] *= step;
        var outShape = (long[])shape.Clone();
        outShape[d] = length;
        if (!keepDim)
        {
            outShape = outShape.Where((_, i) => i != d).ToArray();
            strides = strides.Where((_, i) => i != d).ToArray();
        }
        // Any element type; a slice's values lie within the source's known range, which may no longer be tight.
        var y = Empty(outShape, Device, Dtype, Range is IntegerRange r ? r with { Exact = false } : null);
        if (y.Count > 0) CopyStrided(this, offset, strides, y, 0, null, outShape);
        var x = this;
        return Record(y, name, new[] { x }, g => new Tensor?[] { Gradients.Slice(x, g, d, start, step, keepDim) });
    }

    /// <summary>The row-major strides (in elements) of a contiguous tensor of this shape.</summary>
    internal static long[] ContiguousStrides(ReadOnlySpan<long> dims)
    {
        var strides = new long[dims.Length];
        long stride = 1;
        for (int i = dims.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= dims[i];
        }
        return strides;
    }

    /// <summary>Dimension <paramref name="dim"/> counted from the end when negative; out of range throws, naming the shape.</summary>
    private int Axis(int dim, string op, string parameter)
    {
        int d = dim < 0 ? dim + Rank : dim;
        if (d < 0 || d >= Rank)
            throw new ArgumentOutOfRangeException(parameter,
                Rank == 0 ? $"{op}: a tensor of rank 0 has no dimension {dim}"
                          : $"{op}: dimension {dim} of a tensor of rank {Rank} {FormatShape(shape)}; dimensions are {-Rank}..{Rank - 1}");
        return d;
    }

    /// <summary>The parts of a join, checked: at least one, none null, all on one device and of one element type.</summary>
    private static Tensor[] CheckParts(IReadOnlyList<Tensor> tensors, string op)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0) throw new ArgumentException($"{op}: no tensors given; at least one is needed", nameof(tensors));
        var parts = tensors.ToArray();
        for (int k = 0; k < parts.Length; k++)
            if (parts[k] is null) throw new ArgumentNullException(nameof(tensors), $"{op}: tensor {k} is null");
        foreach (var p in parts)
            if (p.Device != parts[0].Device)
                throw new DeviceMismatchException(
                    $"{op}: every part must be on one device; got {string.Join(", ", parts.Select(t => t.Device.Name))}");
        foreach (var p in parts)
            if (p.Dtype != parts[0].Dtype)
                throw new DtypeMismatchException(
                    $"{op}: every part must have one element type; got {string.Join(", ", parts.Select(t => DtypeName(t.Dtype) + " " + FormatShape(t.shape)))}");
        return parts;
    }

    private static string PartShapes(Tensor[] parts) => string.Join(", ", parts.Select(p => FormatShape(p.shape)));
}
