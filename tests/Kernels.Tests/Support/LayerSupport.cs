// Helpers for the CNN-layer kernel tests (ConvolutionTests, PoolingTests, BatchNormTests): ops a GPU
// backend may not implement yet, and guarded int32 buffers (max pooling's indices).
using System.Globalization;
using NUnit.Framework;

namespace Kernels.Tests.Support;

public static class LayerSupport
{
    /// <summary>
    /// Runs a kernel call. A non-CPU device that answers NOT_SUPPORTED (its kernels for this op are not
    /// written yet) ignores the test with the library's message, or fails it when the run requires that
    /// backend (KERNELS_REQUIRE_CUDA / KERNELS_REQUIRE_OPENCL): visible, never a silent pass. The CPU
    /// must implement everything.
    /// </summary>
    public static void Run(Device device, Action call)
    {
        try
        {
            call();
        }
        catch (BackendNotSupportedException e) when (device.Kind != DeviceKind.Cpu)
        {
            if (BackendDevices.IsRequired(device.Kind))
                Assert.Fail($"{device.Name} must implement this op ({BackendDevices.RequirementVariable(device.Kind)}=1): {e.Message}");
            Assert.Ignore($"{device.Name} does not implement this op yet: {e.Message}");
        }
    }

    /// <summary>An int32 buffer holding the values, followed by Guarded.GuardElements copies of -7.</summary>
    public static DeviceBuffer Int32Buffer(Device device, int[] values)
    {
        var all = new int[values.Length + Guarded.GuardElements];
        values.CopyTo(all, 0);
        Array.Fill(all, -7, values.Length, Guarded.GuardElements);
        var buffer = DeviceBuffer.Allocate(device, all.Length * sizeof(int));
        buffer.Write<int>(all);
        return buffer;
    }

    /// <summary>The first count int32 values, after checking that the guard is intact.</summary>
    public static int[] ReadInt32(DeviceBuffer buffer, long count, string what)
    {
        var all = new int[buffer.Bytes / sizeof(int)];
        buffer.Read<int>(all);
        Assert.That(all, Has.Length.EqualTo(count + Guarded.GuardElements), $"{what}: buffer length");
        for (long i = count; i < all.Length; i++)
        {
            if (all[i] != -7)
                Assert.Fail(string.Create(CultureInfo.InvariantCulture,
                    $"{what}: the kernel wrote past the end of its output: guard element {i - count} is {all[i]}"));
        }
        return all[..(int)count];
    }

    /// <summary>Asserts that an input buffer still holds exactly what was written (a kernel wrote into it otherwise).</summary>
    public static void Unchanged(DeviceBuffer buffer, float[] written, string what) =>
        Expect.Identical(buffer.ToArray()[..written.Length], written, $"{what} (an input) was modified:");
}
