namespace Kernels.Benchmarks.Cases;

/// <summary>
/// C = op(A) op(B) through <see cref="Ops.Gemm"/> against the device's BLAS (<see cref="GemmReference"/>).
/// FLOPs = 2 m n k.
/// </summary>
public sealed class GemmCase : BenchmarkCase
{
    readonly GemmShape shape;
    readonly float[] a, b;
    readonly DeviceBuffer da, db, dc;
    readonly GemmReference reference;

    public GemmCase(CaseSpec spec, Device device, GemmShape shape) : base(spec, device)
    {
        this.shape = shape;
        a = RandomFloats(shape.ACount, 1);
        b = RandomFloats(shape.BCount, 2);
        da = DeviceBuffer.FromArray(device, a);
        db = DeviceBuffer.FromArray(device, b);
        dc = DeviceBuffer.Allocate(device, shape.CCount * sizeof(float));
        reference = new GemmReference(device, shape, a, b);
    }

    public override double Work => shape.Flops;
    public override Throughput Throughput => Throughput.Flops;
    public override string ReferenceName => reference.Name;

    public override void RunKernels()
    {
        var s = shape;
        Ops.Gemm(s.TransA ? Transpose.Transpose : Transpose.NoTranspose, s.TransB ? Transpose.Transpose : Transpose.NoTranspose,
                 s.M, s.N, s.K, 1f, da, s.Lda, db, s.Ldb, 0f, dc, s.Ldc);
        SynchronizeKernels();
    }

    public override void RunReference() => reference.Run();

    public override void Check()
    {
        RunKernels();
        RunReference();
        CheckAgainstFloat64("libkernels", dc.ToArray());
        CheckAgainstFloat64(reference.Name, reference.ReadC());
    }

    // 64 sampled entries of C, each a float64 dot product; bound (k + 4) eps sum |a b|, the error of
    // any float32 summation order (same bound as native/dev/gemm.cu).
    void CheckAgainstFloat64(string who, float[] c)
    {
        foreach (long at in SampleIndices(shape.CCount, 64))
        {
            long i = at / shape.N, j = at % shape.N;
            double sum = 0, sumAbs = 0;
            for (long p = 0; p < shape.K; p++)
            {
                double x = (double)shape.A(a, i, p) * shape.B(b, p, j);
                sum += x;
                sumAbs += Math.Abs(x);
            }
            double bound = (shape.K + 4) * 1.1920929e-7 * sumAbs + 1e-30;
            if (!(Math.Abs(c[at] - sum) <= bound))
                throw Wrong($"{who} C[{i}, {j}] = {c[at]:R}, float64 reference {sum:R} (bound {bound:G3})");
        }
    }

    public override void Dispose()
    {
        da.Dispose();
        db.Dispose();
        dc.Dispose();
        reference.Dispose();
    }
}
