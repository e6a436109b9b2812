namespace Kernels.Benchmarks.Cases;

/// <summary>
/// Forward 2-D convolution (<see cref="Ops.Conv2D"/>, NCHW, groups 1) against the device's BLAS doing
/// the lowered product alone: y[oc, (n, p)] = W[oc, c kh kw] col[c kh kw, (n, p)] as one GEMM of
/// OutChannels x (Batch OutHeight OutWidth) x (InChannels KernelHeight KernelWidth), that is, what a
/// GEMM-based convolution would cost if building the column matrix were free. A ratio near 1 says
/// the lowering (or whatever the backend does instead) costs little next to the product.
/// FLOPs = 2 Batch OutChannels OutHeight OutWidth InChannels KernelHeight KernelWidth.
/// </summary>
public sealed class Conv2DCase : BenchmarkCase
{
    readonly Conv2DGeometry g;
    readonly float[] x, w;
    readonly DeviceBuffer dx, dw, dy;
    readonly GemmReference reference;

    public Conv2DCase(CaseSpec spec, Device device, Conv2DGeometry g) : base(spec, device)
    {
        this.g = g;
        x = RandomFloats(g.InputElements, 11);
        w = RandomFloats(g.WeightElements, 12);
        dx = DeviceBuffer.FromArray(device, x);
        dw = DeviceBuffer.FromArray(device, w);
        dy = DeviceBuffer.Allocate(device, g.OutputElements * sizeof(float));
        long taps = g.InChannels * g.KernelHeight * g.KernelWidth, positions = g.Batch * g.OutHeight * g.OutWidth;
        var lowered = new GemmShape(g.OutChannels, positions, taps);
        reference = new GemmReference(device, lowered, w, RandomFloats(taps * positions, 13));
    }

    public override double Work => g.Flops;
    public override Throughput Throughput => Throughput.Flops;
    public override string ReferenceName => $"the lowered GEMM alone on {reference.Name}";

    public override void RunKernels()
    {
        Ops.Conv2D(dx, dw, null, dy, g);
        SynchronizeKernels();
    }

    public override void RunReference() => reference.Run();

    public override void Check()
    {
        RunKernels();
        RunReference();
        float[] y = dy.ToArray();
        long oh = g.OutHeight, ow = g.OutWidth;
        foreach (long at in SampleIndices(g.OutputElements, 64))
        {
            long n = at / (g.OutChannels * oh * ow), k = at / (oh * ow) % g.OutChannels, r0 = at / ow % oh, c0 = at % ow;
            double sum = 0, sumAbs = 0;
            for (long c = 0; c < g.InChannels; c++)
                for (long r = 0; r < g.KernelHeight; r++)
                    for (long s = 0; s < g.KernelWidth; s++)
                    {
                        long ih = r0 * g.StrideHeight - g.PadHeight + r * g.DilationHeight;
                        long iw = c0 * g.StrideWidth - g.PadWidth + s * g.DilationWidth;
                        if (ih < 0 || ih >= g.InHeight || iw < 0 || iw >= g.InWidth) continue;
                        double v = (double)x[((n * g.InChannels + c) * g.InHeight + ih) * g.InWidth + iw] *
                                   w[((k * g.InChannels + c) * g.KernelHeight + r) * g.KernelWidth + s];
                        sum += v;
                        sumAbs += Math.Abs(v);
                    }
            double bound = (g.InChannels * g.KernelHeight * g.KernelWidth + 4) * 1.1920929e-7 * sumAbs + 1e-30;
            if (!(Math.Abs(y[at] - sum) <= bound))
                throw Wrong($"y[{n}, {k}, {r0}, {c0}] = {y[at]:R}, float64 reference {sum:R} (bound {bound:G3})");
        }
    }

    public override void Dispose()
    {
        dx.Dispose();
        dw.Dispose();
        dy.Dispose();
        reference.Dispose();
    }
}
