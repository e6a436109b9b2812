using Kernels.Benchmarks.References;

namespace Kernels.Benchmarks.Cases;

/// <summary>
/// One reference context per device for the whole process: CLBlast compiles its kernels per OpenCL
/// context and cuBLAS initialises per handle, so creating them once keeps that cost out of every case.
/// </summary>
public static class ReferenceDevices
{
    static readonly Dictionary<string, OpenClQueue> s_openCl = new();
    static readonly Dictionary<string, CudaReference> s_cuda = new();

    public static OpenClQueue OpenCl(Device device)
    {
        lock (s_openCl)
        {
            if (!s_openCl.TryGetValue(device.Name, out var queue))
                s_openCl[device.Name] = queue = OpenClQueue.For(device);
            return queue;
        }
    }

    public static CudaReference Cuda(Device device)
    {
        lock (s_cuda)
        {
            if (!s_cuda.TryGetValue(device.Name, out var reference))
                s_cuda[device.Name] = reference = CudaReference.For(device);
            return reference;
        }
    }

    /// <summary>Why the GEMM reference of this kind of device cannot run here, or null when it can.</summary>
    public static string? GemmUnavailable(DeviceKind kind) => kind switch
    {
        DeviceKind.Cpu => OpenBlas.Unavailable,
        DeviceKind.OpenCL => OpenClQueue.Unavailable ?? ClBlast.Unavailable,
        DeviceKind.Cuda => CudaReference.Unavailable,
        _ => $"no reference for {kind}",
    };

    /// <summary>Why the copy reference of this kind of device cannot run here, or null when it can.</summary>
    public static string? CopyUnavailable(DeviceKind kind) => kind switch
    {
        DeviceKind.Cpu => null,
        DeviceKind.OpenCL => OpenClQueue.Unavailable,
        DeviceKind.Cuda => CudaReference.Unavailable,
        _ => $"no reference for {kind}",
    };
}

/// <summary>
/// The copy-bandwidth reference of a memory-bound case: a copy on the same device that moves as many
/// bytes as the kernel does (copying N bytes reads N and writes N), so time(copy) / time(kernel) is
/// the kernel's bandwidth as a fraction of the device's copy bandwidth. CPU: glibc memcpy on every
/// core (<see cref="HostCopy"/>); OpenCL: clEnqueueCopyBuffer; CUDA: cudaMemcpy device to device.
/// </summary>
public sealed unsafe class CopyReference : IDisposable
{
    readonly Device device;
    readonly long bytes;
    readonly HostArray? hostSource, hostDestination;
    readonly OpenClQueue? queue;
    readonly CudaReference? cuda;
    readonly nint source, destination;

    /// <param name="device">The library's device; the copy runs on the same hardware.</param>
    /// <param name="trafficBytes">Bytes the kernel reads + writes; the copy moves the same (copies half).</param>
    public CopyReference(Device device, double trafficBytes)
    {
        this.device = device;
        bytes = Math.Max(64, (long)(trafficBytes / 2) / 64 * 64);
        var values = BenchmarkCase.RandomFloats(bytes / sizeof(float), 99);
        switch (device.Kind)
        {
            case DeviceKind.Cpu:
                hostSource = new HostArray(values);
                hostDestination = new HostArray(values.Length);
                Name = $"memcpy ({HostCopy.ThreadsFor(bytes)} thread{(HostCopy.ThreadsFor(bytes) == 1 ? "" : "s")})";
                break;
            case DeviceKind.OpenCL:
                queue = ReferenceDevices.OpenCl(device);
                source = queue.CreateBuffer(bytes, values);
                destination = queue.CreateBuffer(bytes);
                Name = "clEnqueueCopyBuffer";
                break;
            case DeviceKind.Cuda:
                cuda = ReferenceDevices.Cuda(device);
                source = cuda.Allocate(bytes, values);
                destination = cuda.Allocate(bytes);
                Name = "cudaMemcpy device to device";
                break;
            default:
                throw new NotSupportedException($"no copy reference for {device}");
        }
    }

    public string Name { get; }

    public void Run()
    {
        if (hostSource is not null) HostCopy.Copy(hostDestination!.Pointer, hostSource.Pointer, bytes);
        else if (queue is not null) { queue.Copy(source, destination, bytes); queue.Finish(); }
        else { cuda!.Copy(source, destination, bytes); cuda.Synchronize(); }
    }

    /// <summary>Copies once and compares the destination with the source on sampled elements.</summary>
    public void Check(string caseId)
    {
        Run();
        long count = bytes / sizeof(float);
        float[] src, dst;
        if (hostSource is not null) { src = hostSource.Span.ToArray(); dst = hostDestination!.Span.ToArray(); }
        else if (queue is not null) { src = queue.Read(source, count); dst = queue.Read(destination, count); }
        else { src = cuda!.Read(source, count); dst = cuda.Read(destination, count); }
        for (long i = 0; i < count; i += Math.Max(1, count / 97))
            if (BitConverter.SingleToInt32Bits(src[i]) != BitConverter.SingleToInt32Bits(dst[i]))
                throw new InvalidOperationException($"{caseId}: reference copy on {device.Name} wrong at element {i}");
    }

    public void Dispose()
    {
        hostSource?.Dispose();
        hostDestination?.Dispose();
        if (queue is not null) { queue.ReleaseBuffer(source); queue.ReleaseBuffer(destination); }
        if (cuda is not null) { cuda.Free(source); cuda.Free(destination); }
    }
}
