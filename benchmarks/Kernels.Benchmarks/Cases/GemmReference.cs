using Kernels.Benchmarks.References;

namespace Kernels.Benchmarks.Cases;

/// <summary>One GEMM call's shape as kn_gemm_f32 takes it (row-major, dense leading dimensions).</summary>
public readonly record struct GemmShape(long M, long N, long K, bool TransA = false, bool TransB = false)
{
    public long Lda => TransA ? M : K;
    public long Ldb => TransB ? K : N;
    public long Ldc => N;
    public double Flops => 2.0 * M * N * K;
    public long ACount => M * K;
    public long BCount => K * N;
    public long CCount => M * N;
    public override string ToString() => $"{M}x{N}x{K}{(TransA || TransB ? $" {(TransA ? 'T' : 'N')}{(TransB ? 'T' : 'N')}" : "")}";

    /// <summary>A[i, p] of op(A) in the stored array.</summary>
    public float A(float[] a, long i, long p) => TransA ? a[p * Lda + i] : a[i * Lda + p];
    /// <summary>B[p, j] of op(B) in the stored array.</summary>
    public float B(float[] b, long p, long j) => TransB ? b[j * Ldb + p] : b[p * Ldb + j];
}

/// <summary>
/// The GEMM reference of a device with its own copy of the operands: OpenBLAS on the CPU, CLBlast on
/// an OpenCL device, cuBLAS on a CUDA device. Same shape, transposes, alpha = 1 and beta = 0 as the
/// library's call.
/// </summary>
public sealed unsafe class GemmReference : IDisposable
{
    readonly GemmShape shape;
    readonly HostArray? ha, hb, hc;
    readonly OpenClQueue? queue;
    readonly CudaReference? cuda;
    readonly nint da, db, dc;

    public GemmReference(Device device, GemmShape shape, float[] a, float[] b)
    {
        this.shape = shape;
        switch (device.Kind)
        {
            case DeviceKind.Cpu:
                ha = new HostArray(a);
                hb = new HostArray(b);
                hc = new HostArray(shape.CCount);
                Name = $"OpenBLAS sgemm ({OpenBlas.CoreName}, {OpenBlas.Threads} thread{(OpenBlas.Threads == 1 ? "" : "s")})";
                break;
            case DeviceKind.OpenCL:
                queue = ReferenceDevices.OpenCl(device);
                da = queue.CreateBuffer(a.LongLength * 4, a);
                db = queue.CreateBuffer(b.LongLength * 4, b);
                dc = queue.CreateBuffer(shape.CCount * 4);
                Name = "CLBlast sgemm";
                break;
            case DeviceKind.Cuda:
                cuda = ReferenceDevices.Cuda(device);
                da = cuda.Allocate(a.LongLength * 4, a);
                db = cuda.Allocate(b.LongLength * 4, b);
                dc = cuda.Allocate(shape.CCount * 4);
                Name = "cuBLAS sgemm (FP32)";
                break;
            default:
                throw new NotSupportedException($"no GEMM reference for {device}");
        }
    }

    public string Name { get; }

    /// <summary>One call, waiting for the device.</summary>
    public void Run()
    {
        var s = shape;
        if (ha is not null)
            OpenBlas.Sgemm(s.TransA, s.TransB, (int)s.M, (int)s.N, (int)s.K, 1f, ha.Pointer, (int)s.Lda, hb!.Pointer, (int)s.Ldb, 0f, hc!.Pointer, (int)s.Ldc);
        else if (queue is not null)
        {
            ClBlast.Sgemm(queue, s.TransA, s.TransB, s.M, s.N, s.K, 1f, da, s.Lda, db, s.Ldb, 0f, dc, s.Ldc);
            queue.Finish();
        }
        else
        {
            cuda!.Sgemm(s.TransA, s.TransB, s.M, s.N, s.K, 1f, da, s.Lda, db, s.Ldb, 0f, dc, s.Ldc);
            cuda.Synchronize();
        }
    }

    public float[] ReadC()
    {
        if (hc is not null) return hc.Span.ToArray();
        if (queue is not null) return queue.Read(dc, shape.CCount);
        return cuda!.Read(dc, shape.CCount);
    }

    public void Dispose()
    {
        ha?.Dispose();
        hb?.Dispose();
        hc?.Dispose();
        if (queue is not null) { queue.ReleaseBuffer(da); queue.ReleaseBuffer(db); queue.ReleaseBuffer(dc); }
        if (cuda is not null) { cuda.Free(da); cuda.Free(db); cuda.Free(dc); }
    }
}
