namespace Kernels.Benchmarks.Cases;

/// <summary>What a case's figure of merit counts.</summary>
public enum Throughput
{
    /// <summary>Compute-bound: floating-point operations per second (GEMM, a training step).</summary>
    Flops,
    /// <summary>Memory-bound: bytes read + written per second (elementwise, reductions, softmax).</summary>
    Bytes,
}

/// <summary>
/// One benchmark case: a library call on one device with fixed shapes, and the reference it is
/// compared with, on the same device. A case is built by <see cref="Catalog"/> from its id, set up
/// once (buffers, data, warm-up, a correctness check of both sides), then its two sides are timed
/// by either engine: <see cref="Engine.InterleavedRunner"/> or BenchmarkDotNet.
///
/// Both Run methods are complete calls as a C# user makes them: on an asynchronous device (CUDA,
/// OpenCL) each ends by waiting for the device, so the time includes launch and synchronisation
/// cost. Kernel-only GPU times live in native/dev.
/// </summary>
public abstract class BenchmarkCase : IDisposable
{
    protected BenchmarkCase(CaseSpec spec, Device device)
    {
        Spec = spec;
        Device = device;
    }

    public CaseSpec Spec { get; }
    public Device Device { get; }

    /// <summary>Floating-point operations (Flops cases) or bytes moved (Bytes cases) of one call.</summary>
    public abstract double Work { get; }
    public abstract Throughput Throughput { get; }

    /// <summary>What the reference side runs, e.g. "OpenBLAS sgemm (Haswell, 2 threads)".</summary>
    public abstract string ReferenceName { get; }

    /// <summary>One call of the library, waiting for the device.</summary>
    public abstract void RunKernels();

    /// <summary>One call of the reference, waiting for the device.</summary>
    public abstract void RunReference();

    /// <summary>
    /// Runs each side once and checks its output (against float64 on sampled entries, or the copy
    /// against its source), so no figure is ever reported for a call that computed the wrong thing.
    /// Throws <see cref="InvalidOperationException"/> naming the case and the entry.
    /// </summary>
    public abstract void Check();

    public abstract void Dispose();

    /// <summary>Waits for the library's device; free on the CPU, where every call is synchronous.</summary>
    protected void SynchronizeKernels()
    {
        if (Device.Kind != DeviceKind.Cpu) Device.Synchronize();
    }

    protected InvalidOperationException Wrong(string what) => new($"{Spec.Id}: {what}");

    /// <summary>Deterministic uniform floats in [low, high) (xorshift64*), cheap enough for 64M elements.</summary>
    public static float[] RandomFloats(long count, ulong seed, float low = -1f, float high = 1f)
    {
        var values = new float[count];
        ulong state = 0x9E3779B97F4A7C15UL * (seed + 1);
        float scale = (high - low) / (1 << 24);
        for (long i = 0; i < count; i++)
        {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            values[i] = low + (uint)((state * 0x2545F4914F6CDD1DUL) >> 40) * scale;
        }
        return values;
    }

    /// <summary>count distinct-ish indices in [0, n) spread over the range (first and last included).</summary>
    protected static long[] SampleIndices(long n, int count)
    {
        if (n <= count) return Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray();
        var random = new Random(12345);
        var picks = new long[count];
        picks[0] = 0;
        picks[1] = n - 1;
        for (int i = 2; i < count; i++) picks[i] = random.NextInt64(n);
        return picks;
    }
}
