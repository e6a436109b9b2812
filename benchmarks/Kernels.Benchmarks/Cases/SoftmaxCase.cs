namespace Kernels.Benchmarks.Cases;

/// <summary>
/// Row softmax of a [rows, cols] matrix (kn_softmax_f32) against the device's copy bandwidth moving
/// the same bytes: 4 read + 4 written per element when each row is read once (a kernel that reads a
/// row twice, for its maximum and then its sum, shows up here as a ratio below 1).
/// </summary>
public sealed class SoftmaxCase : BenchmarkCase
{
    readonly long rows, cols;
    readonly float[] x;
    readonly DeviceBuffer dx, dy;
    readonly CopyReference reference;

    public SoftmaxCase(CaseSpec spec, Device device, long rows, long cols) : base(spec, device)
    {
        (this.rows, this.cols) = (rows, cols);
        x = RandomFloats(rows * cols, 6, -8f, 8f);
        dx = DeviceBuffer.FromArray(device, x);
        dy = DeviceBuffer.Allocate(device, rows * cols * sizeof(float));
        reference = new CopyReference(device, Work);
    }

    public override double Work => 8.0 * rows * cols;
    public override Throughput Throughput => Throughput.Bytes;
    public override string ReferenceName => reference.Name;

    public override void RunKernels()
    {
        Ops.Softmax(dx, dy, rows, cols);
        SynchronizeKernels();
    }

    public override void RunReference() => reference.Run();

    public override void Check()
    {
        RunKernels();
        float[] y = dy.ToArray();
        foreach (long r in SampleIndices(rows, 8))
        {
            double max = double.NegativeInfinity, sum = 0;
            for (long j = 0; j < cols; j++) max = Math.Max(max, x[r * cols + j]);
            for (long j = 0; j < cols; j++) sum += Math.Exp(x[r * cols + j] - max);
            for (long j = 0; j < cols; j += Math.Max(1, cols / 16))
            {
                double want = Math.Exp(x[r * cols + j] - max) / sum;
                // exp and the row sum in float32: a few ulps plus cols * eps relative from the sum.
                double bound = (8 + cols) * 1.1920929e-7 * want + 1e-30;
                if (!(Math.Abs(y[r * cols + j] - want) <= bound))
                    throw Wrong($"y[{r}, {j}] is {y[r * cols + j]:R}, float64 reference {want:R}");
            }
        }
        reference.Check(Spec.Id);
    }

    public override void Dispose()
    {
        dx.Dispose();
        dy.Dispose();
        reference.Dispose();
    }
}
