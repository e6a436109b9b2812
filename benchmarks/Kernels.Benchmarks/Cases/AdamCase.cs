namespace Kernels.Benchmarks.Cases;

/// <summary>
/// One Adam update over n parameters (kn_adam_step_f32): reads param, grad, m, v and writes param,
/// m, v, so 28 bytes per element, against the device's copy of the same bytes. A memory-bound
/// kernel with a sqrt and a division per element: does the math hide under the memory traffic?
/// </summary>
public sealed class AdamCase : BenchmarkCase
{
    const float Lr = 1e-3f, Beta1 = 0.9f, Beta2 = 0.999f, Eps = 1e-8f, WeightDecay = 0.01f;
    const long Step = 10;  // every call is step 10: the state drifts, but nothing grows without bound
    readonly long n;
    readonly float[] param, grad, m, v;
    readonly DeviceBuffer dparam, dgrad, dm, dv;
    readonly CopyReference reference;

    public AdamCase(CaseSpec spec, Device device, long n) : base(spec, device)
    {
        this.n = n;
        param = RandomFloats(n, 5);
        grad = RandomFloats(n, 6);
        m = RandomFloats(n, 7, -0.1f, 0.1f);
        v = RandomFloats(n, 8, 0f, 0.01f);
        dparam = DeviceBuffer.FromArray(device, param);
        dgrad = DeviceBuffer.FromArray(device, grad);
        dm = DeviceBuffer.FromArray(device, m);
        dv = DeviceBuffer.FromArray(device, v);
        reference = new CopyReference(device, Work);
    }

    public override double Work => 28.0 * n;
    public override Throughput Throughput => Throughput.Bytes;
    public override string ReferenceName => reference.Name;

    public override void RunKernels()
    {
        Ops.AdamStep(dparam, dgrad, dm, dv, n, Lr, Beta1, Beta2, Eps, WeightDecay, false, Step);
        SynchronizeKernels();
    }

    public override void RunReference() => reference.Run();

    public override void Check()
    {
        dparam.Write<float>(param);
        dm.Write<float>(m);
        dv.Write<float>(v);
        RunKernels();
        float[] gotP = dparam.ToArray(), gotM = dm.ToArray(), gotV = dv.ToArray();
        double c1 = 1 / (1 - Math.Pow(Beta1, Step)), c2 = 1 / (1 - Math.Pow(Beta2, Step));
        foreach (long i in SampleIndices(n, 256))
        {
            double g = grad[i] + (double)WeightDecay * param[i];
            double mi = Beta1 * (double)m[i] + (1 - (double)Beta1) * g;
            double vi = Beta2 * (double)v[i] + (1 - (double)Beta2) * g * g;
            double update = Lr * (mi * c1) / (Math.Sqrt(vi * c2) + Eps);
            double p = param[i] - update;
            // The self-test's bound: 16 float epsilons of the magnitudes the value was formed from.
            const double e16 = 16 * 5.96e-8;
            if (!(Math.Abs(gotM[i] - mi) <= e16 * (Math.Abs(Beta1 * m[i]) + Math.Abs((1 - Beta1) * g))))
                throw Wrong($"m[{i}] is {gotM[i]:R}, float64 reference {mi:R}");
            if (!(Math.Abs(gotV[i] - vi) <= e16 * (Math.Abs(Beta2 * v[i]) + (1 - Beta2) * g * g) + 1e-30))
                throw Wrong($"v[{i}] is {gotV[i]:R}, float64 reference {vi:R}");
            if (!(Math.Abs(gotP[i] - p) <= e16 * (Math.Abs(param[i]) + Math.Abs(update))))
                throw Wrong($"param[{i}] is {gotP[i]:R}, float64 reference {p:R}");
        }
        reference.Check(Spec.Id);
    }

    public override void Dispose()
    {
        dparam.Dispose();
        dgrad.Dispose();
        dm.Dispose();
        dv.Dispose();
        reference.Dispose();
    }
}
