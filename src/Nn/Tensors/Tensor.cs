using System.Text;

namespace Kernels.Nn;

/// <summary>
/// Device memory shared by a tensor and its views (reshape). Freed when the last tensor using it
/// is disposed.
/// </summary>
internal sealed class Storage
{
    private int references = 1;

    public Storage(DeviceBuffer buffer) => Buffer = buffer;

    public DeviceBuffer Buffer { get; }

    public void Retain() => Interlocked.Increment(ref references);

    public void Release()
    {
        int left = Interlocked.Decrement(ref references);
        if (left == 0) Buffer.Dispose();
        // Each tensor releases at most once (Tensor.Dispose takes its storage with Interlocked.Exchange),
        // so a negative count is a bug here, not a user error: say so instead of freeing twice.
        else if (left < 0) throw new InvalidOperationException($"tensor storage released {-left} more time(s) than it was retained");
    }
}

/// <summary>
/// A dense, row-major tensor on one device, float32 (the default) or int32 / int64 (labels, token ids:
/// see <see cref="Dtype"/>), with define-by-run autograd: operations on float32 tensors that require
/// gradients record how to differentiate themselves, and <see cref="Backward"/> walks that record in reverse.
/// </summary>
public sealed partial class Tensor : IDisposable
{
    private readonly long[] shape;
    private Storage? storage;
    private bool requiresGrad;

    internal Tensor(Storage storage, long[] shape, Dtype dtype = Dtype.Float32, IntegerRange? range = null)
    {
        this.storage = storage;
        this.shape = shape;
        Dtype = dtype;
        Range = range;
        Count = ShapeSize(shape);
        DisposeScope.Track(this);
        Interlocked.Increment(ref liveTensors);
    }

    /// <summary>Dimensions, outermost first. A scalar has rank 0.</summary>
    public IReadOnlyList<long> Shape => shape;

    internal long[] ShapeArray => shape;

    /// <summary>Number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>Number of elements.</summary>
    public long Count { get; }

    /// <summary>Where the data lives.</summary>
    public Device Device => Storage.Buffer.Device;

    /// <summary>
    /// The float32 data, for the float ops: the one place where they refuse an integer tensor
    /// (<see cref="Float32Buffer"/>). Layout ops, which move bytes of any type, use <see cref="RawBuffer"/>.
    /// </summary>
    internal DeviceBuffer Buffer => Dtype == Dtype.Float32 ? Storage.Buffer : Float32Buffer(null);

    /// <summary>The data whatever its element type (layout ops, casts, reading back).</summary>
    internal DeviceBuffer RawBuffer => Storage.Buffer;

    private Storage Storage => storage ?? throw new ObjectDisposedException(nameof(Tensor), "the tensor was disposed");

    /// <summary>True once disposed (or freed by its <see cref="DisposeScope"/>).</summary>
    public bool IsDisposed => storage is null;

    /// <summary>
    /// Whether gradients flow to this tensor. Set it on leaves (parameters, inputs); results of
    /// operations require gradients when any input does.
    /// </summary>
    public bool RequiresGrad
    {
        get => requiresGrad;
        set
        {
            if (Node is not null && !value)
                throw new InvalidOperationException("RequiresGrad can only be cleared on a leaf tensor; use Detach()");
            if (value && Dtype != Dtype.Float32)
                throw new DtypeMismatchException($"RequiresGrad: a {DtypeName(Dtype)} tensor {FormatShape(shape)} has no gradient; only float32 tensors do");
            requiresGrad = value;
        }
    }

    /// <summary>The accumulated gradient of a leaf after <see cref="Backward"/>, else null.</summary>
    public Tensor? Grad { get; internal set; }

    /// <summary>How this tensor was computed (null for leaves and under <see cref="NoGrad"/>).</summary>
    internal GradNode? Node { get; set; }

    /// <summary>True when this tensor was created by the user, not by a recorded operation.</summary>
    public bool IsLeaf => Node is null;

    // ---- Creation ------------------------------------------------------------------------------

    /// <summary>A tensor with the given values (row-major) and shape, on a device (CPU by default).</summary>
    public static Tensor FromArray(ReadOnlySpan<float> values, ReadOnlySpan<long> shape, Device? device = null)
    {
        var dims = CheckShape(shape);
        if (ShapeSize(dims) != values.Length)
            throw new ArgumentException($"{values.Length} values do not fill shape {FormatShape(dims)} ({ShapeSize(dims)} elements)", nameof(values));
        var buffer = DeviceBuffer.FromArray(device ?? Device.Cpu, values);
        return new Tensor(new Storage(buffer), dims);
    }

    /// <summary>A 1-D tensor of the given values.</summary>
    public static Tensor FromArray(float[] values, Device? device = null) => FromArray(values, new long[] { values.Length }, device);

    /// <summary>A rank-0 tensor holding one value.</summary>
    public static Tensor Scalar(float value, Device? device = null) => FromArray(new[] { value }, ReadOnlySpan<long>.Empty, device);

    /// <summary>Uninitialised storage for a result: only operations that overwrite every element use it.</summary>
    internal static Tensor Empty(ReadOnlySpan<long> shape, Device device, Dtype dtype = Dtype.Float32, IntegerRange? range = null)
    {
        var dims = CheckShape(shape);
        if (ShapeSize(dims) > long.MaxValue / ElementSize(dtype))
            throw new ArgumentException($"shape {FormatShape(dims)} has more elements than fit in 2^63 bytes of {DtypeName(dtype)}", nameof(shape));
        var buffer = DeviceBuffer.Allocate(device, ElementSize(dtype) * ShapeSize(dims));
        return new Tensor(new Storage(buffer), dims, dtype, range);
    }

    /// <summary>A tensor filled with one value.</summary>
    public static Tensor Full(ReadOnlySpan<long> shape, float value, Device? device = null)
    {
        var t = Empty(shape, device ?? Device.Cpu);
        if (t.Count > 0) t.Buffer.Fill(value, 0, t.Count);
        return t;
    }

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(ReadOnlySpan<long> shape, Device? device = null) => Full(shape, 0f, device);

    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(ReadOnlySpan<long> shape, Device? device = null) => Full(shape, 1f, device);

    /// <summary>start, start + step, ... below end, as a 1-D tensor.</summary>
    public static Tensor Arange(float start, float end, float step = 1, Device? device = null)
    {
        if (step == 0 || float.IsNaN(step)) throw new ArgumentException("step must be non-zero", nameof(step));
        long n = Math.Max(0, (long)Math.Ceiling((end - start) / step));
        var values = new float[n];
        for (long i = 0; i < n; i++) values[i] = start + i * step;
        return FromArray(values, device);
    }

    /// <summary>Uniform values in [low, high), reproducible from the seed.</summary>
    public static Tensor Uniform(ReadOnlySpan<long> shape, float low, float high, int seed, Device? device = null)
    {
        var dims = CheckShape(shape);
        var random = new Random(seed);
        var values = new float[ShapeSize(dims)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(low + (high - low) * random.NextDouble());
        return FromArray(values, dims, device);
    }

    /// <summary>Normal values (Box-Muller) with the given mean and standard deviation, reproducible from the seed.</summary>
    public static Tensor Normal(ReadOnlySpan<long> shape, float mean, float std, int seed, Device? device = null)
    {
        var dims = CheckShape(shape);
        var random = new Random(seed);
        var values = new float[ShapeSize(dims)];
        for (int i = 0; i < values.Length; i += 2)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            values[i] = (float)(mean + std * r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < values.Length) values[i + 1] = (float)(mean + std * r * Math.Sin(2 * Math.PI * u2));
        }
        return FromArray(values, dims, device);
    }

    // ---- Reading back and moving -----------------------------------------------------------------

    /// <summary>The values of a float32 tensor, row-major, copied to a new array (waits for queued work);
    /// <see cref="ToArray{T}"/> reads int32 and int64 tensors.</summary>
    public float[] ToArray()
    {
        if (Dtype != Dtype.Float32)
            throw new DtypeMismatchException($"ToArray(): the tensor {FormatShape(shape)} is {DtypeName(Dtype)}; read it with ToArray<{ClrName(Dtype)}>() or convert it with To(Dtype.Float32)");
        var values = new float[Count];
        if (Count > 0)
        {
            CountHostRead();
            Buffer.Read<float>(values);
        }
        return values;
    }

    /// <summary>The single value of a one-element tensor.</summary>
    public float Item()
    {
        if (Count != 1) throw new InvalidOperationException($"Item() needs exactly one element; the tensor has shape {FormatShape(shape)}");
        return ToArray()[0];  // ToArray refuses an integer tensor (Item<T>() reads those)
    }

    /// <summary>
    /// A copy on another device (the same tensor when already there). Differentiable: the gradient of
    /// the copy flows back to this tensor's device (what lets one network run its layers on several
    /// devices, <see cref="Sequential.PlaceOn"/>).
    /// </summary>
    public Tensor To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (ReferenceEquals(device, Device)) return this;
        var copy = Empty(shape, device, Dtype, Range);
        if (Count > 0) copy.RawBuffer.CopyFrom(RawBuffer, 0, 0, ElementSize(Dtype) * Count);
        var source = Device;
        return Record(copy, "to " + device.Name, new[] { this }, g => new Tensor?[] { g.To(source) });
    }

    /// <summary>
    /// Moves a leaf (a parameter or buffer) to <paramref name="device"/> in place: the same Tensor object
    /// (so layers, optimizers and callers holding it keep holding it) now owns a copy on the new device,
    /// and the old memory is freed. Its gradient, if any, is dropped.
    /// </summary>
    internal void MoveTo(Device device)
    {
        if (ReferenceEquals(device, Device)) return;
        if (Node is not null)
            throw new InvalidOperationException("MoveTo: only a leaf tensor (a parameter or buffer) moves in place; this one was computed by an operation");
        Tensor copy;
        using (NoGrad()) copy = To(device);
        DisposeScope.Untrack(copy);
        ZeroGrad();
        (storage, copy.storage) = (copy.storage, storage);
        copy.Dispose();
    }

    /// <summary>A copy on the named device ("cpu", "cuda:0", "opencl:0").</summary>
    public Tensor To(string device) => To(Device.Get(device));

    /// <summary>A new tensor sharing this one's data but not its gradient history.</summary>
    public Tensor Detach()
    {
        Storage.Retain();
        return new Tensor(Storage, (long[])shape.Clone(), Dtype, Range);
    }

    private List<IDisposable>? attachments;

    /// <summary>Ties a resource that a backward rule needs (e.g. a label buffer) to this tensor's lifetime.</summary>
    internal void Attach(IDisposable resource) => (attachments ??= new()).Add(resource);

    /// <summary>Frees the tensor's reference to its device memory (and its gradient). Idempotent.</summary>
    public void Dispose()
    {
        // Exactly one caller takes the storage, even when several threads dispose the same tensor:
        // a plain read-then-clear let two of them release it twice (freeing the memory of a live
        // Detach() view) and count the tensor out twice.
        var s = Interlocked.Exchange(ref storage, null);
        if (s is null) return;
        Node = null;
        if (attachments is not null)
            foreach (var resource in attachments) resource.Dispose();
        attachments = null;
        Grad?.Dispose();
        Grad = null;
        s.Release();
        Interlocked.Decrement(ref liveTensors);
    }

    private static long liveTensors;

    /// <summary>Tensors created and not yet disposed, in this process (for leak checks).</summary>
    public static long LiveCount => Interlocked.Read(ref liveTensors);

    private static long hostReads;

    /// <summary>Copies from a device buffer to the host so far, in this process (ToArray, Item, ArgMax's
    /// indices): each one waits for the device's queued work, so tests count them to hold a training
    /// loop to its few synchronisations.</summary>
    internal static long HostReads => Interlocked.Read(ref hostReads);

    internal static void CountHostRead() => Interlocked.Increment(ref hostReads);

    // ---- Shapes ----------------------------------------------------------------------------------

    internal static long ShapeSize(ReadOnlySpan<long> dims)
    {
        long n = 1;
        foreach (var d in dims) n = checked(n * d);
        return n;
    }

    internal static long[] CheckShape(ReadOnlySpan<long> dims)
    {
        foreach (var d in dims)
            if (d < 0) throw new ArgumentException($"shape {FormatShape(dims)} has a negative dimension", "shape");
        if (dims.Length > NativeConstants.KN_MAX_RANK)
            throw new ArgumentException($"shape {FormatShape(dims)} has rank {dims.Length}; at most {NativeConstants.KN_MAX_RANK} is supported", "shape");
        // Every size derived from a shape (elements, then 4-byte float32 bytes) must fit in an int64 (Empty
        // checks the 8-byte int64 case);
        // a zero dimension makes them all 0 whatever the other dimensions are.
        if (dims.IndexOf(0L) < 0)
        {
            long elements = 1;
            foreach (var d in dims)
            {
                if (elements > long.MaxValue / 4 / d)
                    throw new ArgumentException($"shape {FormatShape(dims)} has more elements than fit in 2^63 bytes of float32", "shape");
                elements *= d;
            }
        }
        return dims.ToArray();
    }

    internal static string FormatShape(ReadOnlySpan<long> dims)
    {
        var s = new StringBuilder("[");
        for (int i = 0; i < dims.Length; i++) s.Append(i > 0 ? ", " : "").Append(dims[i]);
        return s.Append(']').ToString();
    }

    /// <summary>"Tensor[2, 3] on cpu" followed by the values when there are at most 100.</summary>
    public override string ToString()
    {
        if (IsDisposed) return "Tensor (disposed)";
        var head = $"Tensor{FormatShape(shape)}{(Dtype == Dtype.Float32 ? "" : " " + DtypeName(Dtype))} on {Device.Name}{(RequiresGrad ? ", requires grad" : "")}";
        if (Count > 100) return head;
        var values = ValuesAsText();
        var s = new StringBuilder(head).Append('\n');
        Format(s, values, 0, 0);
        return s.ToString();
    }

    private void Format(StringBuilder s, string[] values, int dim, long offset)
    {
        if (dim == Rank)
        {
            s.Append(values[offset]);
            return;
        }
        long stride = 1;
        for (int d = dim + 1; d < Rank; d++) stride *= shape[d];
        s.Append('[');
        for (long i = 0; i < shape[dim]; i++)
        {
            if (i > 0) s.Append(dim == Rank - 1 ? ", " : ",\n" + new string(' ', dim + 1));
            Format(s, values, dim + 1, offset + i * stride);
        }
        s.Append(']');
    }
}
