using System.Runtime.InteropServices;

namespace Kernels.Benchmarks.References;

/// <summary>
/// The CUDA references, found at run time so that nothing CUDA is needed to build or to run the CPU
/// and OpenCL benchmarks: cuBLAS SGEMM (FP32, default math mode: no TF32) and cudaMemcpy device to
/// device (the GPU's copy bandwidth), on the device libkernels calls "cuda:N" (CUDA ordinal N).
/// Libraries are tried newest first (CUDA 13, 12, 11); set KERNELS_CUDA_LIB_DIR to point at the
/// toolkit's lib64 when they are not on the loader's path.
/// Not run yet: written on a machine without a GPU (see benchmarks/README.md).
/// </summary>
public sealed unsafe class CudaReference : IDisposable
{
    const int MemcpyDeviceToDevice = 3, MemcpyHostToDevice = 1, MemcpyDeviceToHost = 2;
    const int OpN = 0, OpT = 1;

    static readonly Lazy<(Api? Api, string? Error)> s_api = new(Load);

    readonly Api api;
    readonly nint cublas;
    readonly List<nint> allocations = new();

    sealed class Api
    {
        public delegate* unmanaged<int, int> SetDevice;
        public delegate* unmanaged<nint*, nuint, int> Malloc;
        public delegate* unmanaged<nint, int> Free;
        public delegate* unmanaged<nint, nint, nuint, int, int> Memcpy;
        public delegate* unmanaged<nint, nint, nuint, int, nint, int> MemcpyAsync;
        public delegate* unmanaged<int> DeviceSynchronize;
        public delegate* unmanaged<nint*, int> CublasCreate;
        public delegate* unmanaged<nint, int> CublasDestroy;
        public delegate* unmanaged<nint, int, int, int, int, int, float*, nint, int, nint, int, float*, nint, int, int> CublasSgemm;
    }

    CudaReference(Api api, int ordinal)
    {
        this.api = api;
        Check(api.SetDevice(ordinal), "cudaSetDevice");
        nint handle;
        CheckBlas(api.CublasCreate(&handle), "cublasCreate");
        cublas = handle;
    }

    /// <summary>Null when cudart and cuBLAS load, else why not.</summary>
    public static string? Unavailable => s_api.Value.Error;

    public static CudaReference For(Device device)
    {
        if (device.Kind != DeviceKind.Cuda) throw new ArgumentException($"{device.Name} is not a CUDA device", nameof(device));
        var (api, error) = s_api.Value;
        if (api is null) throw new InvalidOperationException(error);
        return new CudaReference(api, int.Parse(device.Name.AsSpan(device.Name.IndexOf(':') + 1)));
    }

    public nint Allocate(long bytes, ReadOnlySpan<float> values = default)
    {
        nint p;
        Check(api.Malloc(&p, (nuint)Math.Max(bytes, 16)), $"cudaMalloc({bytes})");
        allocations.Add(p);
        if (!values.IsEmpty)
            fixed (float* v = values) Check(api.Memcpy(p, (nint)v, (nuint)(values.Length * sizeof(float)), MemcpyHostToDevice), "cudaMemcpy");
        return p;
    }

    public void Free(nint pointer)
    {
        if (allocations.Remove(pointer)) api.Free(pointer);
    }

    public float[] Read(nint pointer, long count)
    {
        var result = new float[count];
        fixed (float* r = result) Check(api.Memcpy((nint)r, pointer, (nuint)(count * sizeof(float)), MemcpyDeviceToHost), "cudaMemcpy");
        return result;
    }

    /// <summary>Queues a device-to-device copy on the default stream.</summary>
    public void Copy(nint source, nint destination, long bytes) =>
        Check(api.MemcpyAsync(destination, source, (nuint)bytes, MemcpyDeviceToDevice, 0), "cudaMemcpyAsync");

    /// <summary>
    /// Row-major C = alpha op(A) op(B) + beta C through column-major cuBLAS: C^T = op(B)^T op(A)^T,
    /// so B goes first and m, n swap; no data moves.
    /// </summary>
    public void Sgemm(bool transA, bool transB, long m, long n, long k, float alpha, nint a, long lda,
                      nint b, long ldb, float beta, nint c, long ldc)
    {
        CheckBlas(api.CublasSgemm(cublas, transB ? OpT : OpN, transA ? OpT : OpN, (int)n, (int)m, (int)k,
                                  &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc), "cublasSgemm");
    }

    public void Synchronize() => Check(api.DeviceSynchronize(), "cudaDeviceSynchronize");

    public void Dispose()
    {
        foreach (nint p in allocations) api.Free(p);
        allocations.Clear();
        if (cublas != 0) api.CublasDestroy(cublas);
    }

    static (Api?, string?) Load()
    {
        string? dir = Environment.GetEnvironmentVariable("KERNELS_CUDA_LIB_DIR");
        nint cudart = TryLoad(dir, "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so");
        nint blas = TryLoad(dir, "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so");
        if (cudart == 0 || blas == 0)
            return (null, $"{(cudart == 0 ? "libcudart" : "libcublas")} not found (set KERNELS_CUDA_LIB_DIR to the CUDA toolkit's lib64)");
        var api = new Api
        {
            SetDevice = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(cudart, "cudaSetDevice"),
            Malloc = (delegate* unmanaged<nint*, nuint, int>)NativeLibrary.GetExport(cudart, "cudaMalloc"),
            Free = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(cudart, "cudaFree"),
            Memcpy = (delegate* unmanaged<nint, nint, nuint, int, int>)NativeLibrary.GetExport(cudart, "cudaMemcpy"),
            MemcpyAsync = (delegate* unmanaged<nint, nint, nuint, int, nint, int>)NativeLibrary.GetExport(cudart, "cudaMemcpyAsync"),
            DeviceSynchronize = (delegate* unmanaged<int>)NativeLibrary.GetExport(cudart, "cudaDeviceSynchronize"),
            CublasCreate = (delegate* unmanaged<nint*, int>)NativeLibrary.GetExport(blas, "cublasCreate_v2"),
            CublasDestroy = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(blas, "cublasDestroy_v2"),
            CublasSgemm = (delegate* unmanaged<nint, int, int, int, int, int, float*, nint, int, nint, int, float*, nint, int, int>)
                NativeLibrary.GetExport(blas, "cublasSgemm_v2"),
        };
        return (api, null);
    }

    static nint TryLoad(string? dir, params string[] names)
    {
        foreach (string name in names)
        {
            if (dir is not null && NativeLibrary.TryLoad(Path.Combine(dir, name), out nint inDir)) return inDir;
            if (NativeLibrary.TryLoad(name, out nint h)) return h;
        }
        return 0;
    }

    static void Check(int error, string what)
    {
        if (error != 0) throw new InvalidOperationException($"{what} failed with cudaError {error}");
    }

    static void CheckBlas(int status, string what)
    {
        if (status != 0) throw new InvalidOperationException($"{what} failed with cuBLAS status {status}");
    }
}
