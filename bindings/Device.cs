using System.Diagnostics.CodeAnalysis;

namespace Kernels;

/// <summary>
/// A compute device: the CPU, a CUDA GPU or an OpenCL device. Devices belong to the native library,
/// which enumerates them once; each is represented by one cached instance, so reference equality works.
/// </summary>
public sealed unsafe class Device
{
    // PublicationOnly: a failed enumeration (library not found) is retried on the next use, not cached.
    static readonly Lazy<IReadOnlyList<Device>> s_all = new(Enumerate, LazyThreadSafetyMode.PublicationOnly);

    Device(nint handle)
    {
        Handle = handle;
        byte* text;
        Ensure.Success(NativeMethods.kn_device_name(handle, &text));
        Name = NativeText.FromUtf8(text);
        Ensure.Success(NativeMethods.kn_device_description(handle, &text));
        Description = NativeText.FromUtf8(text);
        DeviceKind kind;
        Ensure.Success(NativeMethods.kn_device_kind_of(handle, &kind));
        Kind = kind;
        long memory;
        Ensure.Success(NativeMethods.kn_device_memory(handle, &memory));
        TotalMemory = memory;
        int major, minor;
        Ensure.Success(NativeMethods.kn_device_capability(handle, &major, &minor));
        Capability = (major, minor);
    }

    /// <summary>Every device the library found: the CPU first, then CUDA devices, then OpenCL devices.</summary>
    public static IReadOnlyList<Device> All => s_all.Value;

    /// <summary>The CPU device ("cpu"), which is always present.</summary>
    public static Device Cpu => All[0];

    /// <summary>The device named <paramref name="name"/>: "cpu", "cuda:N", "opencl:N" ("cuda" and "opencl" mean index 0).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="DeviceNotFoundException">No such device; the message lists the devices there are and why a backend is missing.</exception>
    public static Device Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Status status = Find(name, out nint handle);
        Ensure.Success(status);
        return FromHandle(handle);
    }

    /// <summary>Like <see cref="Get"/>, but returns false instead of throwing when no device has that name.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    public static bool TryGet(string name, [NotNullWhen(true)] out Device? device)
    {
        ArgumentNullException.ThrowIfNull(name);
        Status status = Find(name, out nint handle);
        if (status == Status.ErrorNotFound)
        {
            device = null;
            return false;
        }
        Ensure.Success(status);
        device = FromHandle(handle);
        return true;
    }

    /// <summary>Whether a backend is usable here and, when it is not, why ("not compiled in", "no CUDA driver found", ...).</summary>
    public static (bool Available, string Reason) BackendInfo(DeviceKind kind)
    {
        int available;
        byte* reason;
        Ensure.Success(NativeMethods.kn_backend_info(kind, &available, &reason));
        return (available != 0, NativeText.FromUtf8(reason));
    }

    /// <summary>The short name accepted by <see cref="Get"/>, e.g. "cuda:0".</summary>
    public string Name { get; }

    /// <summary>What the hardware calls itself, e.g. "NVIDIA H100 80GB HBM3".</summary>
    public string Description { get; }

    /// <summary>Which backend runs this device.</summary>
    public DeviceKind Kind { get; }

    /// <summary>Total memory in bytes (host RAM for the CPU).</summary>
    public long TotalMemory { get; }

    /// <summary>CUDA: the compute capability (9, 0); OpenCL: the device's OpenCL version; CPU: the widest SIMD in bits, 0.</summary>
    public (int Major, int Minor) Capability { get; }

    /// <summary>The native kn_device*; owned by the library and valid for the life of the process.</summary>
    internal nint Handle { get; }

    /// <summary>Waits until all work queued on this device has finished.</summary>
    public void Synchronize() => Ensure.Success(NativeMethods.kn_device_synchronize(Handle));

    /// <summary>
    /// Memory this library holds on the device: live buffers (bytes and count), memory kept by the
    /// caching allocator for reuse, and the peak of live bytes. A training loop that does not leak
    /// keeps <see cref="MemoryStats.LiveBytes"/> flat from step to step.
    /// </summary>
    public MemoryStats GetMemoryStats()
    {
        long live, buffers, cached, peak;
        Ensure.Success(NativeMethods.kn_device_memory_stats(Handle, &live, &buffers, &cached, &peak));
        return new MemoryStats(live, buffers, cached, peak);
    }

    /// <summary>
    /// How this device's buffer allocations were served since the process started: from the caching
    /// allocator's kept memory (<c>CacheHits</c>) or by the driver / system allocator
    /// (<c>DeviceAllocations</c>). A training loop in its steady state adds only cache hits.
    /// </summary>
    public (long CacheHits, long DeviceAllocations) GetAllocationCounts()
    {
        long hits, allocations;
        Ensure.Success(NativeMethods.kn_device_allocation_counts(Handle, &hits, &allocations));
        return (hits, allocations);
    }

    /// <summary>Returns the memory the caching allocator keeps for reuse to the driver (or the system).</summary>
    public void Trim() => Ensure.Success(NativeMethods.kn_device_trim(Handle));

    /// <summary>The name and the hardware, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)".</summary>
    public override string ToString() => $"{Name} ({Description})";

    /// <summary>The cached instance for a native handle (every handle is one of <see cref="All"/>).</summary>
    internal static Device FromHandle(nint handle)
    {
        foreach (Device device in All)
        {
            if (device.Handle == handle)
                return device;
        }
        throw new KernelsException(Status.ErrorInternal, $"libkernels returned device handle 0x{handle:x}, which kn_device_get does not list");
    }

    static Status Find(string name, out nint handle)
    {
        byte[] utf8 = NativeText.ToUtf8(name, nameof(name));
        nint found = 0;
        Status status;
        fixed (byte* text = utf8)
            status = NativeMethods.kn_device_find(text, &found);
        handle = found;
        return status;
    }

    static IReadOnlyList<Device> Enumerate()
    {
        int count;
        Ensure.Success(NativeMethods.kn_device_count(&count));
        var devices = new Device[count];
        for (int i = 0; i < count; i++)
        {
            nint handle;
            Ensure.Success(NativeMethods.kn_device_get(i, &handle));
            devices[i] = new Device(handle);
        }
        return Array.AsReadOnly(devices);
    }
}

/// <summary>What <see cref="Device.GetMemoryStats"/> reports (bytes).</summary>
/// <param name="LiveBytes">Bytes in buffers created and not yet freed.</param>
/// <param name="LiveBuffers">How many such buffers.</param>
/// <param name="CachedBytes">Freed memory the caching allocator keeps for reuse (<see cref="Device.Trim"/> returns it).</param>
/// <param name="PeakLiveBytes">The highest <paramref name="LiveBytes"/> seen since the process started.</param>
public readonly record struct MemoryStats(long LiveBytes, long LiveBuffers, long CachedBytes, long PeakLiveBytes);
