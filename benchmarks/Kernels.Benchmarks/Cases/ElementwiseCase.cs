namespace Kernels.Benchmarks.Cases;

/// <summary>Which elementwise call a case makes.</summary>
public enum ElementwiseKind
{
    /// <summary>y = max(x, 0): 4 bytes read + 4 written per element, one compare.</summary>
    Relu,
    /// <summary>y = tanh x: same traffic as ReLU but a transcendental per element (does the math hide under memory?).</summary>
    Tanh,
    /// <summary>c = a + b, same shapes: 8 bytes read + 4 written per element.</summary>
    Add,
    /// <summary>c[r, j] = a[r, j] + bias[j] (a Dense layer's bias): broadcast along rows, ~8 bytes per element.</summary>
    BiasAdd,
}

/// <summary>
/// The memory-bound elementwise family (kn_unary_f32, kn_binary_f32) against the device's copy
/// bandwidth (<see cref="CopyReference"/>) moving the same number of bytes.
/// </summary>
public sealed class ElementwiseCase : BenchmarkCase
{
    readonly ElementwiseKind kind;
    readonly long rows, cols, n;
    readonly float[] x, other;
    readonly DeviceBuffer dx, dother, dy;
    readonly CopyReference reference;

    /// <param name="rows">Rows of the [rows, cols] operand (only BiasAdd cares; the others see rows * cols elements).</param>
    public ElementwiseCase(CaseSpec spec, Device device, ElementwiseKind kind, long rows, long cols) : base(spec, device)
    {
        this.kind = kind;
        this.rows = rows;
        this.cols = cols;
        n = rows * cols;
        x = RandomFloats(n, 3);
        other = kind switch { ElementwiseKind.Add => RandomFloats(n, 4), ElementwiseKind.BiasAdd => RandomFloats(cols, 4), _ => new float[1] };
        dx = DeviceBuffer.FromArray(device, x);
        dother = DeviceBuffer.FromArray(device, other);
        dy = DeviceBuffer.Allocate(device, n * sizeof(float));
        reference = new CopyReference(device, Work);
    }

    public override double Work => kind switch
    {
        ElementwiseKind.Add => 12.0 * n,
        ElementwiseKind.BiasAdd => 8.0 * n + 4.0 * cols,
        _ => 8.0 * n,
    };

    public override Throughput Throughput => Throughput.Bytes;
    public override string ReferenceName => reference.Name;

    public override void RunKernels()
    {
        switch (kind)
        {
            case ElementwiseKind.Relu: Ops.Unary(UnaryOp.Relu, dx, dy, n); break;
            case ElementwiseKind.Tanh: Ops.Unary(UnaryOp.Tanh, dx, dy, n); break;
            case ElementwiseKind.Add: Ops.Binary(BinaryOp.Add, dx, [n], dother, [n], dy, [n]); break;
            case ElementwiseKind.BiasAdd: Ops.Binary(BinaryOp.Add, dx, [rows, cols], dother, [cols], dy, [rows, cols]); break;
        }
        SynchronizeKernels();
    }

    public override void RunReference() => reference.Run();

    public override void Check()
    {
        RunKernels();
        float[] y = dy.ToArray();
        foreach (long i in SampleIndices(n, 256))
        {
            double want = kind switch
            {
                ElementwiseKind.Relu => Math.Max(x[i], 0.0),
                ElementwiseKind.Tanh => Math.Tanh(x[i]),
                ElementwiseKind.Add => (double)x[i] + other[i],
                _ => (double)x[i] + other[i % cols],
            };
            // One rounding of the float32 result (two ulps for tanh's own approximation).
            double bound = 2.5e-7 * Math.Abs(want) + (kind == ElementwiseKind.Tanh ? 2.5e-7 : 1e-30);
            if (!(Math.Abs(y[i] - want) <= bound))
                throw Wrong($"element {i} is {y[i]:R}, float64 reference {want:R}");
        }
        reference.Check(Spec.Id);
    }

    public override void Dispose()
    {
        dx.Dispose();
        dother.Dispose();
        dy.Dispose();
        reference.Dispose();
    }
}
