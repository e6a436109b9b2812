using System.Runtime.InteropServices;
using System.Text;

namespace Kernels.Benchmarks.References;

/// <summary>
/// Just enough OpenCL to run the references on the same OpenCL device as a libkernels "opencl:N"
/// device: its own context and in-order queue, buffers, clEnqueueCopyBuffer (the device's copy
/// bandwidth) and the handles CLBlast needs. Devices are enumerated the way libkernels does it
/// (platforms in order, CL_DEVICE_TYPE_ALL), and the match is checked by name.
/// </summary>
public sealed unsafe partial class OpenClQueue : IDisposable
{
    const string Library = "libOpenCL.so.1";
    const uint PlatformName = 0x0902, DeviceName = 0x102B;
    const ulong DeviceTypeAll = 0xFFFFFFFF, MemReadWrite = 1;

    [LibraryImport(Library)] private static partial int clGetPlatformIDs(uint entries, nint* platforms, uint* count);
    [LibraryImport(Library)] private static partial int clGetPlatformInfo(nint platform, uint name, nuint size, byte* value, nuint* sizeRet);
    [LibraryImport(Library)] private static partial int clGetDeviceIDs(nint platform, ulong type, uint entries, nint* devices, uint* count);
    [LibraryImport(Library)] private static partial int clGetDeviceInfo(nint device, uint name, nuint size, byte* value, nuint* sizeRet);
    [LibraryImport(Library)] private static partial nint clCreateContext(nint* properties, uint count, nint* devices, nint notify, nint user, int* error);
    [LibraryImport(Library)] private static partial nint clCreateCommandQueue(nint context, nint device, ulong properties, int* error);
    [LibraryImport(Library)] private static partial nint clCreateBuffer(nint context, ulong flags, nuint size, void* host, int* error);
    [LibraryImport(Library)] private static partial int clEnqueueWriteBuffer(nint queue, nint buffer, uint blocking, nuint offset, nuint size, void* source, uint events, nint* waitList, nint* evt);
    [LibraryImport(Library)] private static partial int clEnqueueReadBuffer(nint queue, nint buffer, uint blocking, nuint offset, nuint size, void* destination, uint events, nint* waitList, nint* evt);
    [LibraryImport(Library)] private static partial int clEnqueueCopyBuffer(nint queue, nint source, nint destination, nuint sourceOffset, nuint destinationOffset, nuint size, uint events, nint* waitList, nint* evt);
    [LibraryImport(Library)] private static partial int clFinish(nint queue);
    [LibraryImport(Library)] private static partial int clReleaseMemObject(nint buffer);
    [LibraryImport(Library)] private static partial int clReleaseCommandQueue(nint queue);
    [LibraryImport(Library)] private static partial int clReleaseContext(nint context);

    nint context, queue;
    readonly List<nint> buffers = new();

    OpenClQueue(nint context, nint queue, string description)
    {
        this.context = context;
        this.queue = queue;
        Description = description;
    }

    /// <summary>"NAME (PLATFORM)", in the form libkernels' Device.Description uses.</summary>
    public string Description { get; }

    /// <summary>The cl_command_queue (CLBlast takes a pointer to it).</summary>
    public nint Queue => queue;

    /// <summary>
    /// A context and queue on the device that libkernels calls <paramref name="device"/> ("opencl:N").
    /// Throws when the N-th device found here is not the one libkernels describes.
    /// </summary>
    public static OpenClQueue For(Device device)
    {
        if (device.Kind != DeviceKind.OpenCL) throw new ArgumentException($"{device.Name} is not an OpenCL device", nameof(device));
        int index = int.Parse(device.Name.AsSpan(device.Name.IndexOf(':') + 1));
        uint platformCount;
        Check(clGetPlatformIDs(0, null, &platformCount), "clGetPlatformIDs");
        var platforms = new nint[platformCount];
        fixed (nint* p = platforms) Check(clGetPlatformIDs(platformCount, p, null), "clGetPlatformIDs");
        int seen = 0;
        foreach (nint platform in platforms)
        {
            uint count;
            if (clGetDeviceIDs(platform, DeviceTypeAll, 0, null, &count) != 0 || count == 0) continue;
            var devices = new nint[count];
            fixed (nint* d = devices) Check(clGetDeviceIDs(platform, DeviceTypeAll, count, d, null), "clGetDeviceIDs");
            foreach (nint candidate in devices)
            {
                if (seen++ != index) continue;
                string description = $"{DeviceString(candidate, DeviceName)} ({PlatformString(platform, PlatformName)})";
                if (description != device.Description)
                    throw new InvalidOperationException($"OpenCL device {index} here is \"{description}\" but libkernels' {device.Name} is \"{device.Description}\"");
                int error;
                nint id = candidate;
                nint context = clCreateContext(null, 1, &id, 0, 0, &error);
                Check(error, "clCreateContext");
                nint queue = clCreateCommandQueue(context, id, 0, &error);
                if (error != 0) { clReleaseContext(context); Check(error, "clCreateCommandQueue"); }
                return new OpenClQueue(context, queue, description);
            }
        }
        throw new InvalidOperationException($"no OpenCL device {index} found for {device.Name} ({device.Description})");
    }

    /// <summary>A read-write buffer of <paramref name="bytes"/>, filled from <paramref name="values"/> when given. Freed with the queue.</summary>
    public nint CreateBuffer(long bytes, ReadOnlySpan<float> values = default)
    {
        int error;
        nint buffer = clCreateBuffer(context, MemReadWrite, (nuint)Math.Max(bytes, 4), null, &error);
        Check(error, $"clCreateBuffer({bytes} bytes)");
        buffers.Add(buffer);
        if (!values.IsEmpty)
            fixed (float* v = values) Check(clEnqueueWriteBuffer(queue, buffer, 1, 0, (nuint)(values.Length * sizeof(float)), v, 0, null, null), "clEnqueueWriteBuffer");
        return buffer;
    }

    /// <summary>Frees a buffer made by <see cref="CreateBuffer"/> before the queue goes.</summary>
    public void ReleaseBuffer(nint buffer)
    {
        if (buffers.Remove(buffer)) clReleaseMemObject(buffer);
    }

    public float[] Read(nint buffer, long count)
    {
        var result = new float[count];
        fixed (float* r = result) Check(clEnqueueReadBuffer(queue, buffer, 1, 0, (nuint)(count * sizeof(float)), r, 0, null, null), "clEnqueueReadBuffer");
        return result;
    }

    /// <summary>Queues a device-side copy (the copy-bandwidth reference).</summary>
    public void Copy(nint source, nint destination, long bytes) =>
        Check(clEnqueueCopyBuffer(queue, source, destination, 0, 0, (nuint)bytes, 0, null, null), "clEnqueueCopyBuffer");

    public void Finish() => Check(clFinish(queue), "clFinish");

    public void Dispose()
    {
        foreach (nint b in buffers) clReleaseMemObject(b);
        buffers.Clear();
        if (queue != 0) clReleaseCommandQueue(queue);
        if (context != 0) clReleaseContext(context);
        queue = context = 0;
    }

    /// <summary>Null when an OpenCL loader is present, else why not.</summary>
    public static string? Unavailable
    {
        get
        {
            return NativeLibrary.TryLoad(Library, out _) ? null
                : $"{Library} not found; install ocl-icd-opencl-dev and an OpenCL driver such as pocl-opencl-icd";
        }
    }

    static string DeviceString(nint device, uint name)
    {
        nuint size;
        Check(clGetDeviceInfo(device, name, 0, null, &size), "clGetDeviceInfo");
        var bytes = new byte[size];
        fixed (byte* b = bytes) Check(clGetDeviceInfo(device, name, size, b, null), "clGetDeviceInfo");
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0');
    }

    static string PlatformString(nint platform, uint name)
    {
        nuint size;
        Check(clGetPlatformInfo(platform, name, 0, null, &size), "clGetPlatformInfo");
        var bytes = new byte[size];
        fixed (byte* b = bytes) Check(clGetPlatformInfo(platform, name, size, b, null), "clGetPlatformInfo");
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0');
    }

    static void Check(int error, string what)
    {
        if (error != 0) throw new InvalidOperationException($"{what} failed with OpenCL error {error}");
    }
}

/// <summary>
/// The OpenCL backend's reference: CLBlast's SGEMM (Debian's libclblast, the hand-tuned OpenCL BLAS)
/// on an <see cref="OpenClQueue"/> of the same device. CLBlast compiles its kernels on first use per
/// device and shape class, so a case warms it up before timing. Debian's build carries tuned parameters
/// for common GPUs; for PoCL on a CPU it falls back to its defaults (see README: what limits it).
/// </summary>
public static unsafe partial class ClBlast
{
    const string Library = "libclblast.so.1";
    const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [LibraryImport(Library)] private static partial int CLBlastSgemm(int layout, int transA, int transB, nuint m, nuint n, nuint k,
        float alpha, nint a, nuint aOffset, nuint lda, nint b, nuint bOffset, nuint ldb, float beta,
        nint c, nuint cOffset, nuint ldc, nint* queue, nint* evt);

    /// <summary>Null when libclblast loads, else why not.</summary>
    public static string? Unavailable
    {
        get
        {
            if (!NativeLibrary.TryLoad(Library, out nint handle))
                return $"{Library} not found; install libclblast-dev (scripts/install-prereqs.sh)";
            return NativeLibrary.TryGetExport(handle, "CLBlastSgemm", out _) ? null : $"{Library} has no CLBlastSgemm";
        }
    }

    /// <summary>Queues C = alpha op(A) op(B) + beta C (row-major) on the queue; does not wait.</summary>
    public static void Sgemm(OpenClQueue queue, bool transA, bool transB, long m, long n, long k, float alpha,
                             nint a, long lda, nint b, long ldb, float beta, nint c, long ldc)
    {
        nint q = queue.Queue;
        int status = CLBlastSgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, (nuint)m, (nuint)n, (nuint)k,
                                  alpha, a, 0, (nuint)lda, b, 0, (nuint)ldb, beta, c, 0, (nuint)ldc, &q, null);
        if (status != 0) throw new InvalidOperationException($"CLBlastSgemm {m}x{n}x{k} failed with CLBlast status {status}");
    }
}
