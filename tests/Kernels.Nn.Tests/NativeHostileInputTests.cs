using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Hostile sizes through the C# API reach the native caching allocator (issue 12): a request within a
/// block size of 2^63 bytes used to wrap when rounded up, take a parked small block and "succeed", and
/// the first write into the tensor then crashed the process. It must be a typed exception that names
/// the size and the device, and the library must keep working afterwards.
/// </summary>
[TestFixture]
public class NativeHostileInputTests
{
    [Test]
    public void Zeros_near_2_pow_63_bytes_after_a_small_free_throws_out_of_memory()
    {
        Tensor.Ones([64]).Dispose();  // parks a small block in the CPU device's cache
        long elements = (1L << 61) - 1;  // 2^63 - 4 bytes of float32
        var e = Assert.Throws<DeviceOutOfMemoryException>(() => Tensor.Zeros([elements]));
        Assert.That(e!.Message, Does.Contain((elements * 4).ToString()).And.Contain("cpu"));

        using var ok = Tensor.Full([3], 2.5f);
        Assert.That(ok.ToArray(), Is.EqualTo(new[] { 2.5f, 2.5f, 2.5f }));
    }
}
