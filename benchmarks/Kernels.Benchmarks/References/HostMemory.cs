using System.Runtime.InteropServices;

namespace Kernels.Benchmarks.References;

/// <summary>
/// A 64-byte aligned float32 array in native memory for the CPU references (OpenBLAS, memcpy), filled
/// with the same values as the library's buffers of the same case so both sides do the same work.
/// </summary>
public sealed unsafe class HostArray : IDisposable
{
    public HostArray(long count)
    {
        Count = count;
        Pointer = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(count, 1) * sizeof(float), 64);
        // Touch every page now, so no page fault lands inside a timed run.
        for (long i = 0; i < count; i += 1024) Pointer[i] = 0;
    }

    public HostArray(ReadOnlySpan<float> values) : this(values.Length) => values.CopyTo(new Span<float>(Pointer, values.Length));

    public float* Pointer { get; private set; }
    public long Count { get; }
    public long Bytes => Count * sizeof(float);
    public Span<float> Span => new(Pointer, checked((int)Count));

    public void Dispose()
    {
        if (Pointer != null) NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}

/// <summary>
/// The CPU's copy bandwidth as the reference of the memory-bound kernels: glibc's memcpy, split into
/// one contiguous slice per core (the library's thread pool also uses every core), each slice at least
/// 256 KiB so small copies stay on one thread where waking a second would cost more than it saves.
/// The caller sizes the copy to move as many bytes as the kernel does (reads + writes), so
/// ratio = kernel GB/s / copy GB/s.
/// </summary>
public static unsafe partial class HostCopy
{
    [LibraryImport("libc", EntryPoint = "memcpy")]
    private static partial void* memcpy(void* destination, void* source, nuint bytes);

    const long MinSliceBytes = 256 << 10;

    /// <summary>Most threads a copy uses (every core unless the run was limited: Engine.Threading).</summary>
    public static int MaxThreads { get; set; } = Environment.ProcessorCount;

    /// <summary>Threads a copy of <paramref name="bytes"/> runs on.</summary>
    public static int ThreadsFor(long bytes) => (int)Math.Clamp(bytes / MinSliceBytes, 1, Math.Max(1, MaxThreads));

    public static void Copy(void* destination, void* source, long bytes)
    {
        int slices = ThreadsFor(bytes);
        if (slices == 1)
        {
            memcpy(destination, source, (nuint)bytes);
            return;
        }
        long per = (bytes / slices + 63) & ~63L;  // cache-line aligned slices
        nint d = (nint)destination, s = (nint)source;
        Parallel.For(0, slices, new ParallelOptions { MaxDegreeOfParallelism = slices }, i =>
        {
            long begin = i * per, end = Math.Min(bytes, begin + per);
            if (end > begin) memcpy((void*)(d + (nint)begin), (void*)(s + (nint)begin), (nuint)(end - begin));
        });
    }
}
