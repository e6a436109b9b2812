namespace Kernels.Benchmarks.Cases;

/// <summary>
/// kn_reduce_f32 (sum) over x viewed as [outer, reduce, inner] against the device's copy bandwidth
/// moving the same bytes: the whole tensor (outer = inner = 1), each row of a [rows, cols] matrix
/// (a softmax denominator), or each column (a bias gradient: outer = 1, reduce = rows, inner = cols).
/// Bytes = 4 per element read + 4 per output written.
/// </summary>
public sealed class ReduceCase : BenchmarkCase
{
    readonly long outer, reduce, inner;
    readonly float[] x;
    readonly DeviceBuffer dx, dy;
    readonly CopyReference reference;

    public ReduceCase(CaseSpec spec, Device device, long outer, long reduce, long inner) : base(spec, device)
    {
        (this.outer, this.reduce, this.inner) = (outer, reduce, inner);
        x = RandomFloats(outer * reduce * inner, 5);
        dx = DeviceBuffer.FromArray(device, x);
        dy = DeviceBuffer.Allocate(device, outer * inner * sizeof(float));
        reference = new CopyReference(device, Work);
    }

    public override double Work => 4.0 * outer * reduce * inner + 4.0 * outer * inner;
    public override Throughput Throughput => Throughput.Bytes;
    public override string ReferenceName => reference.Name;

    public override void RunKernels()
    {
        Ops.Reduce(ReduceOp.Sum, dx, dy, outer, reduce, inner);
        SynchronizeKernels();
    }

    public override void RunReference() => reference.Run();

    public override void Check()
    {
        RunKernels();
        float[] y = dy.ToArray();
        foreach (long at in SampleIndices(outer * inner, 16))
        {
            long o = at / inner, i = at % inner;
            double sum = 0, sumAbs = 0;
            for (long r = 0; r < reduce; r++)
            {
                double v = x[(o * reduce + r) * inner + i];
                sum += v;
                sumAbs += Math.Abs(v);
            }
            // Any float32 summation order: |error| <= (reduce - 1) eps sum|x| (pairwise does far better).
            double bound = (reduce + 1) * 1.1920929e-7 * sumAbs + 1e-30;
            if (!(Math.Abs(y[at] - sum) <= bound))
                throw Wrong($"output [{o}, {i}] is {y[at]:R}, float64 reference {sum:R} (bound {bound:G3})");
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
