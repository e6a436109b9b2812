using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Kernels.Nn;

/// <summary>
/// Bounds on the values of an integer tensor, known without reading the device: computed on the host
/// when the values are uploaded (<see cref="Tensor.FromArray(ReadOnlySpan{long}, ReadOnlySpan{long}, Device?)"/>),
/// kept by the ops that only move values (reshape, permute, To(device), slices, joins), dropped by any op
/// whose result is unknown on the host. <see cref="Exact"/>: Min and Max occur in the tensor (an upload,
/// or a reshape / permute of one); a slice keeps the bounds but not the exactness (its values lie within
/// them). Losses use them to check class labels for free: bounds inside [0, classes) prove every label
/// valid, and exact bounds outside prove a bad one.
/// </summary>
internal readonly record struct IntegerRange(long Min, long Max, bool Exact)
{
    /// <summary>The bounds of a host array of integers (exact), null for an empty one.</summary>
    public static IntegerRange? Of(ReadOnlySpan<long> values)
    {
        if (values.IsEmpty) return null;
        long min = long.MaxValue, max = long.MinValue;
        foreach (var v in values)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        return new IntegerRange(min, max, true);
    }

    /// <summary>The bounds of a host array of int32 values (exact), null for an empty one.</summary>
    public static IntegerRange? Of(ReadOnlySpan<int> values)
    {
        if (values.IsEmpty) return null;
        int min = int.MaxValue, max = int.MinValue;
        foreach (var v in values)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        return new IntegerRange(min, max, true);
    }

    /// <summary>The bounds of the union of several tensors' values; null when one is unknown. Empty
    /// tensors (null bounds, no values) are skipped.</summary>
    public static IntegerRange? Join(IEnumerable<Tensor> parts)
    {
        IntegerRange? joined = null;
        foreach (var p in parts)
        {
            if (p.Count == 0) continue;
            if (p.Range is not IntegerRange r) return null;
            joined = joined is IntegerRange j ? new IntegerRange(Math.Min(j.Min, r.Min), Math.Max(j.Max, r.Max), j.Exact && r.Exact) : r;
        }
        return joined;
    }
}

// Element types: float32 (every differentiable op), int32 and int64 (class labels, token ids, indices).
// Integer tensors are made from host arrays, read back with ToArray<T>(), converted with To(Dtype) (the
// kn_cast kernel), and go through every layout op (To(device), Reshape, Detach, Permute / Transpose,
// Narrow / Select / Slice, Concatenate / Stack / Split, IndexSelect). Every float op refuses them in one
// place, the Buffer accessor (Float32Buffer), with a DtypeMismatchException naming the op and the types.
public sealed partial class Tensor
{
    /// <summary>The element type: <see cref="Dtype.Float32"/> unless made from int or long values or converted.</summary>
    public Dtype Dtype { get; }

    /// <summary>Known bounds of an integer tensor's values, or null (see <see cref="IntegerRange"/>).</summary>
    internal IntegerRange? Range { get; }

    /// <summary>Bytes per element.</summary>
    internal static long ElementSize(Dtype dtype) => dtype == Dtype.Int64 ? 8 : 4;

    /// <summary>"float32", "int32", "int64": the names messages use (PyTorch's).</summary>
    internal static string DtypeName(Dtype dtype) => dtype switch
    {
        Dtype.Float32 => "float32",
        Dtype.Int32 => "int32",
        Dtype.Int64 => "int64",
        _ => $"element type {(int)dtype}",
    };

    private static string ClrName(Dtype dtype) => dtype switch { Dtype.Int32 => "int", Dtype.Int64 => "long", _ => "float" };

    /// <summary>The element type of a C# type, for the generic readers; float, int and long only.</summary>
    private static Dtype DtypeOf<T>(string op) where T : unmanaged =>
        typeof(T) == typeof(float) ? Dtype.Float32
        : typeof(T) == typeof(int) ? Dtype.Int32
        : typeof(T) == typeof(long) ? Dtype.Int64
        : throw new ArgumentException($"{op}: {typeof(T).Name} is not an element type of a tensor; use float (float32), int (int32) or long (int64)");

    // ---- The float32 gate ------------------------------------------------------------------------

    /// <summary>
    /// The data of a float32 tensor for the float op <paramref name="op"/>; any other element type throws a
    /// <see cref="DtypeMismatchException"/> naming the op, the type and the shape. Every float op reaches
    /// its operands' memory through here (the <see cref="Buffer"/> property passes null: the op's name is
    /// then taken from the call stack, on this error path only).
    /// </summary>
    internal DeviceBuffer Float32Buffer(string? op)
    {
        if (Dtype == Dtype.Float32) return Storage.Buffer;
        throw new DtypeMismatchException(
            $"{op ?? OperationFromStack()}: {DtypeName(Dtype)} tensor {FormatShape(shape)} where float32 is needed " +
            "(integer tensors hold labels and ids; convert with To(Dtype.Float32) for arithmetic)");
    }

    /// <summary>Two operands of one op must have one element type: nothing is promoted silently.</summary>
    internal static void CheckSameDtype(string op, Tensor a, Tensor b)
    {
        if (a.Dtype != b.Dtype)
            throw new DtypeMismatchException(
                $"{op}: {DtypeName(a.Dtype)} tensor {FormatShape(a.shape)} and {DtypeName(b.Dtype)} tensor {FormatShape(b.shape)} " +
                "mix element types; convert one with To(Dtype)");
    }

    /// <summary>
    /// The op a float32 buffer was asked for by, when the caller did not say: the innermost public method
    /// of this library on the call stack (Tensor's by its name, others' as Type.Method), else the innermost
    /// method of this library. Runs only when an error is being raised.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static string OperationFromStack()
    {
        var assembly = typeof(Tensor).Assembly;
        string? fallback = null;
        foreach (var frame in new StackTrace(2, false).GetFrames())
        {
            var method = frame.GetMethod();
            var type = method?.DeclaringType;
            if (method is null || type is null || type.Assembly != assembly) continue;
            if (method.Name.Contains('<') || type.Name.Contains('<') || method.Name.StartsWith("get_", StringComparison.Ordinal)) continue;
            string name = type == typeof(Tensor) ? method.Name : $"{type.Name}.{method.Name}";
            if (method.IsPublic && type.IsPublic) return name;
            fallback ??= name;
        }
        return fallback ?? "a float32 op";
    }

    // ---- Creation --------------------------------------------------------------------------------

    /// <summary>An int64 tensor of the given values (class labels, token ids) and shape; its value range is noted on the host.</summary>
    public static Tensor FromArray(ReadOnlySpan<long> values, ReadOnlySpan<long> shape, Device? device = null) =>
        FromHost(values, shape, device, Dtype.Int64, IntegerRange.Of(values));

    /// <summary>An int32 tensor of the given values and shape; its value range is noted on the host.</summary>
    public static Tensor FromArray(ReadOnlySpan<int> values, ReadOnlySpan<long> shape, Device? device = null) =>
        FromHost(values, shape, device, Dtype.Int32, IntegerRange.Of(values));

    /// <summary>A 1-D int64 tensor of the given values.</summary>
    public static Tensor FromArray(long[] values, Device? device = null) => FromArray(values, new long[] { values.Length }, device);

    /// <summary>A 1-D int32 tensor of the given values.</summary>
    public static Tensor FromArray(int[] values, Device? device = null) => FromArray(values, new long[] { values.Length }, device);

    private static Tensor FromHost<T>(ReadOnlySpan<T> values, ReadOnlySpan<long> shape, Device? device, Dtype dtype, IntegerRange? range)
        where T : unmanaged
    {
        var dims = CheckShape(shape);
        if (ShapeSize(dims) != values.Length)
            throw new ArgumentException($"{values.Length} values do not fill shape {FormatShape(dims)} ({ShapeSize(dims)} elements)", nameof(values));
        var t = Empty(dims, device ?? Device.Cpu, dtype, range);
        try
        {
            if (values.Length > 0) t.RawBuffer.Write(values);
        }
        catch
        {
            t.Dispose();
            throw;
        }
        return t;
    }

    /// <summary>A tensor of zeros of the given element type.</summary>
    public static Tensor Zeros(ReadOnlySpan<long> shape, Dtype dtype, Device? device = null)
    {
        var t = Empty(shape, device ?? Device.Cpu, dtype, dtype == Dtype.Float32 ? null : new IntegerRange(0, 0, true));
        // All-zero bits are 0 in all three types: fill the buffer as float32 words.
        if (t.Count > 0) t.RawBuffer.Fill(0f, 0, t.Count * ElementSize(dtype) / 4);
        return t;
    }

    /// <summary>start, start + step, ... below end, as a 1-D int64 tensor (PyTorch's arange with integers).</summary>
    public static Tensor ArangeInt64(long start, long end, long step = 1, Device? device = null)
    {
        if (step == 0) throw new ArgumentException("step must be non-zero", nameof(step));
        long n = step > 0 ? (end > start ? (end - start + step - 1) / step : 0) : (start > end ? (start - end - step - 1) / -step : 0);
        var values = new long[n];
        for (long i = 0; i < n; i++) values[i] = start + i * step;
        return FromArray(values, device);
    }

    // ---- Reading back and converting -------------------------------------------------------------

    /// <summary>
    /// The values, row-major, as <typeparamref name="T"/>: float for float32, int for int32, long for int64
    /// (a mismatch throws naming both types; convert first with <see cref="To(Dtype)"/>). Waits for queued work.
    /// </summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var want = DtypeOf<T>($"ToArray<{typeof(T).Name}>()");
        if (want != Dtype)
            throw new DtypeMismatchException(
                $"ToArray<{ClrName(want)}>(): the tensor {FormatShape(shape)} is {DtypeName(Dtype)}, not {DtypeName(want)}; " +
                $"read it with ToArray<{ClrName(Dtype)}>() or convert it with To(Dtype.{want})");
        var values = new T[Count];
        if (Count > 0)
        {
            CountHostRead();
            RawBuffer.Read<T>(values);
        }
        return values;
    }

    /// <summary>The single value of a one-element tensor, as <typeparamref name="T"/> (which must match <see cref="Dtype"/>).</summary>
    public T Item<T>() where T : unmanaged
    {
        if (Count != 1) throw new InvalidOperationException($"Item() needs exactly one element; the tensor has shape {FormatShape(shape)}");
        return ToArray<T>()[0];
    }

    /// <summary>
    /// This tensor converted to <paramref name="dtype"/> on the same device by the kn_cast kernel (this
    /// tensor itself when it already has that type). float32 to int truncates toward zero (2.7 -> 2,
    /// -2.7 -> -2, as C and PyTorch), saturates beyond the target's range (+inf -> int.MaxValue) and turns NaN
    /// into 0; int64 to int32 keeps the low 32 bits (wraps); int to float32 rounds to the nearest float
    /// (2^24 + 1 -> 2^24). Not differentiable: the result has no gradient history.
    /// </summary>
    public Tensor To(Dtype dtype)
    {
        if (dtype == Dtype) return this;
        DtypeName(dtype);  // an undefined enum value fails in kn_cast with its number
        IntegerRange? range = dtype == Dtype.Float32 || Dtype == Dtype.Float32 ? null
                            : dtype == Dtype.Int64 || Range is IntegerRange r && r.Min >= int.MinValue && r.Max <= int.MaxValue ? Range
                            : null;
        var y = Empty(shape, Device, dtype, range);
        try
        {
            if (Count > 0) Ops.Cast(RawBuffer, Dtype, y.RawBuffer, dtype, Count);
        }
        catch
        {
            y.Dispose();
            throw;
        }
        return y;
    }

    /// <summary>The values as text for ToString (floats in G6, integers as they are).</summary>
    private string[] ValuesAsText() => Dtype switch
    {
        Dtype.Int32 => ToArray<int>().Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray(),
        Dtype.Int64 => ToArray<long>().Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray(),
        _ => ToArray().Select(v => v.ToString("G6", CultureInfo.InvariantCulture)).ToArray(),
    };

    // ---- Layout of any element type ----------------------------------------------------------------

    /// <summary>
    /// The strided copy (kn_strided_copy_f32) for any element type: it moves 4-byte words, so int32 goes
    /// through as it is (bit for bit: the kernels load and store, never compute) and int64 as two words per
    /// element: offsets and strides doubled, and one more innermost dimension of 2 words (or, when both
    /// sides are contiguous along the innermost dimension, that dimension doubled). The extra dimension
    /// means an int64 copy whose innermost dimension is strided needs rank &lt; 8 (KN_MAX_RANK) after the
    /// library drops size-1 dimensions. <paramref name="yStrides"/> null: y is contiguous from 0.
    /// </summary>
    internal static void CopyStrided(Tensor x, long xOffset, long[] xStrides, Tensor y, long yOffset, long[]? yStrides, long[] dims)
    {
        if (ElementSize(x.Dtype) == 8)
        {
            int r = dims.Length;
            bool innerContiguous = r > 0 && xStrides[r - 1] == 1 && (yStrides is null || yStrides[r - 1] == 1);
            long[] Words(long[] strides) =>
                innerContiguous ? strides.Select((s, i) => i == r - 1 ? 1 : 2 * s).ToArray() : strides.Select(s => 2 * s).Append(1L).ToArray();
            xStrides = Words(xStrides);
            if (yStrides is not null) yStrides = Words(yStrides);
            dims = innerContiguous ? dims.Select((d, i) => i == r - 1 ? 2 * d : d).ToArray() : dims.Append(2L).ToArray();
            xOffset *= 2;
            yOffset *= 2;
        }
        if (yStrides is null) Ops.StridedCopy(x.RawBuffer, xOffset, xStrides, y.RawBuffer, dims);
        else Ops.StridedCopy(x.RawBuffer, xOffset, xStrides, y.RawBuffer, yOffset, yStrides, dims);
    }
}
