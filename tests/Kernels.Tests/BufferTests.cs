// Device buffers: host round trips at offsets, copies on one device and across devices, fill, the
// empty buffer, disposal.
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class BufferTests : DeviceFixture
{
    public BufferTests(string deviceName) : base(deviceName) { }

    /// <summary>Bit patterns a copy must not "normalise": NaN payloads, -0, denormals, infinities.</summary>
    private static readonly float[] AwkwardValues =
    {
        BitConverter.Int32BitsToSingle(0x7fc12345), BitConverter.Int32BitsToSingle(unchecked((int)0xffa00001)),
        -0f, 0f, float.Epsilon, -float.Epsilon, 1e-40f, float.MaxValue, float.MinValue,
        float.PositiveInfinity, float.NegativeInfinity, 1f, -1f, 0.1f,
    };

    [TestCase(1)]
    [TestCase(14)]
    [TestCase(1000)]
    [TestCase(1_000_003)]
    public void FromArray_ThenToArray_RoundTripsBitExactly(int count)
    {
        float[] data = TestData.Uniform(count, -1e6, 1e6, $"round trip {count}");
        for (int i = 0; i < Math.Min(count, AwkwardValues.Length); i++) data[i] = AwkwardValues[i];
        using var buffer = DeviceBuffer.FromArray(Device, data);
        Assert.Multiple(() =>
        {
            Assert.That(buffer.Bytes, Is.EqualTo(count * 4L), "Bytes");
            Assert.That(buffer.Length, Is.EqualTo((long)count), "Length");
            Assert.That(buffer.Device.Name, Is.EqualTo(Device.Name), "Device");
        });
        Expect.Identical(buffer.ToArray(), data, $"round trip of {count} floats through {DeviceName}");
    }

    [Test]
    public void Write_AtByteOffset_ChangesOnlyThatRange()
    {
        float[] initial = TestData.Uniform(100, -1, 1, "write offset initial");
        float[] patch = TestData.Uniform(17, 5, 6, "write offset patch");
        using var buffer = DeviceBuffer.FromArray(Device, initial);
        buffer.Write<float>(patch, byteOffset: 23 * sizeof(float));
        float[] expected = (float[])initial.Clone();
        patch.CopyTo(expected, 23);
        Expect.Identical(buffer.ToArray(), expected, "buffer after writing 17 floats at element 23");
    }

    /// <summary>Address: what a CUDA-aware MPI is handed. On the CPU the buffer's own floats are read through it;
    /// on CUDA it moves by the byte offset; on OpenCL (a cl_mem, no address) it is refused with a typed exception.</summary>
    [Test]
    public void Address_IsTheBuffersMemory_OrRefusedOnOpenCL()
    {
        float[] data = TestData.Uniform(257, -1, 1, "address");
        using var buffer = DeviceBuffer.FromArray(Device, data);
        if (Device.Kind == DeviceKind.OpenCL)
        {
            var e = Assert.Throws<BackendNotSupportedException>(() => buffer.Address());
            Assert.That(e!.Message, Does.Contain("kn_buffer_address").And.Contain("OpenCL"));
            return;
        }
        nint start = buffer.Address(), later = buffer.Address(100 * sizeof(float));
        Assert.That(start, Is.Not.EqualTo(nint.Zero), "address of a 257-float buffer");
        Assert.That(later - start, Is.EqualTo((nint)(100 * sizeof(float))), "byte offset 400 moves the address by 400");
        Assert.That(buffer.Address(buffer.Bytes) - start, Is.EqualTo((nint)buffer.Bytes), "the end of the buffer is a valid offset");
        Assert.Throws<ShapeMismatchException>(() => buffer.Address(buffer.Bytes + 4), "4 bytes past the end");
        if (Device.Kind == DeviceKind.Cpu)
        {
            Device.Synchronize();
            var seen = new float[data.Length];
            System.Runtime.InteropServices.Marshal.Copy(start, seen, 0, seen.Length);
            Expect.Identical(seen, data, "the floats read through Address");
        }
        buffer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => buffer.Address(), "a disposed buffer has no address");
    }

    [Test]
    public void Read_AtByteOffset_ReturnsThatRange()
    {
        float[] data = TestData.Uniform(100, -1, 1, "read offset");
        using var buffer = DeviceBuffer.FromArray(Device, data);
        var part = new float[31];
        buffer.Read<float>(part, byteOffset: 61 * sizeof(float));
        Expect.Identical(part, data[61..92], "31 floats read at element 61");
    }

    [Test]
    public void WriteAndRead_BytesAtUnalignedOffsets_RoundTrip()
    {
        // Offsets are in bytes (kernels.h); a backend that rounds them to floats or to a vector
        // width would move these bytes.
        byte[] initial = Enumerable.Range(0, 64).Select(i => (byte)i).ToArray();
        byte[] patch = { 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212 };
        using var buffer = DeviceBuffer.Allocate(Device, 64);
        buffer.Write<byte>(initial);
        buffer.Write<byte>(patch, byteOffset: 5);
        var all = new byte[64];
        buffer.Read<byte>(all);
        byte[] expected = (byte[])initial.Clone();
        patch.CopyTo(expected, 5);
        Assert.That(all, Is.EqualTo(expected), "64 bytes after writing 13 bytes at byte offset 5");
        var middle = new byte[9];
        buffer.Read<byte>(middle, byteOffset: 3);
        Assert.That(middle, Is.EqualTo(expected[3..12]), "9 bytes read at byte offset 3");
    }

    [Test]
    public void WriteInt64_ThenToInt64Array_RoundTrips()
    {
        long[] values = { long.MinValue, -1, 0, 1, long.MaxValue, 1L << 40, 12345678901 };
        using var buffer = DeviceBuffer.Allocate(Device, values.Length * sizeof(long));
        buffer.Write<long>(values);
        Expect.Equal(buffer.ToInt64Array(), values, "int64 round trip");
    }

    [TestCase(0, 1000)]
    [TestCase(3, 17)]
    [TestCase(999, 1)]
    [TestCase(0, 100003)]
    [TestCase(5, 0)]
    public void Fill_WithOffsetAndCount_SetsOnlyThatRange(long offset, long count)
    {
        long length = Math.Max(1000, offset + count);
        float[] initial = TestData.Uniform(length, -1, 1, $"fill {offset} {count}");
        using var buffer = DeviceBuffer.FromArray(Device, initial);
        buffer.Fill(-2.5f, offset, count);
        float[] expected = (float[])initial.Clone();
        Array.Fill(expected, -2.5f, (int)offset, (int)count);
        Expect.Identical(buffer.ToArray(), expected, $"buffer of {length} after filling {count} floats at element {offset}");
    }

    [Test]
    public void Fill_WithoutRange_SetsEveryElement()
    {
        using var buffer = DeviceBuffer.Allocate(Device, 1031 * sizeof(float));
        buffer.Fill(float.NegativeInfinity);
        Expect.Identical(buffer.ToArray(), TestData.Filled(1031, float.NegativeInfinity), "buffer after Fill(-inf)");
        buffer.Fill(3.25f, offset: 1000);
        float[] expected = TestData.Filled(1031, float.NegativeInfinity);
        Array.Fill(expected, 3.25f, 1000, 31);
        Expect.Identical(buffer.ToArray(), expected, "buffer after Fill(3.25, offset: 1000), count defaulting to the rest");
    }

    [Test]
    public void CopyFrom_BetweenBuffersOfThisDevice_CopiesTheByteRange()
    {
        float[] source = TestData.Uniform(300, -1, 1, "copy source");
        float[] destination = TestData.Uniform(200, 5, 6, "copy destination");
        using var sb = DeviceBuffer.FromArray(Device, source);
        using var db = DeviceBuffer.FromArray(Device, destination);
        db.CopyFrom(sb, sourceOffset: 101 * 4, destinationOffset: 7 * 4, bytes: 150 * 4);
        float[] expected = (float[])destination.Clone();
        Array.Copy(source, 101, expected, 7, 150);
        Expect.Identical(db.ToArray(), expected, "destination after copying 150 floats from element 101 to element 7");
        Expect.Identical(sb.ToArray(), source, "source after the copy");
    }

    [Test]
    public void CopyFrom_WithinOneBufferNonOverlapping_CopiesTheRange()
    {
        float[] data = TestData.Uniform(100, -1, 1, "copy within");
        using var buffer = DeviceBuffer.FromArray(Device, data);
        buffer.CopyFrom(buffer, sourceOffset: 0, destinationOffset: 60 * 4, bytes: 40 * 4);
        float[] expected = (float[])data.Clone();
        Array.Copy(data, 0, expected, 60, 40);
        Expect.Identical(buffer.ToArray(), expected, "buffer after copying its first 40 floats to element 60");
    }

    [Test]
    public void ZeroByteBuffer_AcceptsEveryEmptyOperation()
    {
        using var empty = DeviceBuffer.Allocate(Device, 0);
        using var fromEmptyArray = DeviceBuffer.FromArray(Device, ReadOnlySpan<float>.Empty);
        using var other = DeviceBuffer.FromArray(Device, new float[] { 1, 2, 3 });
        Assert.Multiple(() =>
        {
            Assert.That(empty.Bytes, Is.Zero, "Bytes");
            Assert.That(empty.Length, Is.Zero, "Length");
            Assert.That(empty.ToArray(), Is.Empty, "ToArray");
            Assert.That(fromEmptyArray.Bytes, Is.Zero, "FromArray(empty).Bytes");
        });
        empty.Write<float>(ReadOnlySpan<float>.Empty);
        empty.Read<float>(Span<float>.Empty);
        empty.Fill(1f);
        empty.CopyFrom(other, 0, 0, 0);
        other.CopyFrom(empty, 0, 4, 0);
        Ops.Unary(UnaryOp.Exp, empty, fromEmptyArray, 0);
        Expect.Identical(other.ToArray(), new float[] { 1, 2, 3 }, "a buffer after zero-byte copies from an empty one");
    }

    [Test]
    public void Dispose_MarksDisposedAndIsIdempotent_LaterUseThrowsObjectDisposed()
    {
        var buffer = DeviceBuffer.FromArray(Device, new float[] { 1, 2 });
        Assert.That(buffer.IsDisposed, Is.False);
        buffer.Dispose();
        buffer.Dispose();
        Assert.That(buffer.IsDisposed, Is.True);
        Assert.Throws<ObjectDisposedException>(() => buffer.ToArray());
    }
}

/// <summary>Copies and mixed-device calls between the CPU and every other device.</summary>
public sealed class CrossDeviceTests
{
    [TestCaseSource(typeof(BackendDevices), nameof(BackendDevices.NonCpuCases))]
    public void CopyFrom_CpuToDeviceAndBack_RoundTripsAtOffsets(string deviceName)
    {
        Device device = BackendDevices.Require(deviceName);
        float[] data = TestData.Uniform(10007, -1, 1, "cross copy");
        using var cpu = DeviceBuffer.FromArray(Device.Cpu, data);
        using var remote = DeviceBuffer.Allocate(device, 12000 * sizeof(float));
        remote.Fill(7f);
        remote.CopyFrom(cpu, sourceOffset: 3 * 4, destinationOffset: 100 * 4, bytes: 10000 * 4);
        using var back = DeviceBuffer.Allocate(Device.Cpu, 10000 * sizeof(float));
        back.CopyFrom(remote, sourceOffset: 100 * 4, destinationOffset: 0, bytes: 10000 * 4);
        Expect.Identical(back.ToArray(), data[3..10003], $"10000 floats cpu -> {deviceName} -> cpu");
        float[] remoteAll = remote.ToArray();
        Expect.Identical(remoteAll[..100], TestData.Filled(100, 7f), $"{deviceName} buffer before the copied range");
        Expect.Identical(remoteAll[10100..], TestData.Filled(1900, 7f), $"{deviceName} buffer after the copied range");
    }

    [TestCaseSource(typeof(BackendDevices), nameof(BackendDevices.NonCpuCases))]
    public void Ops_WithBuffersOnTwoDevices_ThrowDeviceMismatchNamingBoth(string deviceName)
    {
        Device device = BackendDevices.Require(deviceName);
        using var onCpu = DeviceBuffer.FromArray(Device.Cpu, new float[] { 1, 2, 3, 4 });
        using var onDevice = DeviceBuffer.FromArray(device, new float[] { 5, 6, 7, 8 });
        using var cOnDevice = DeviceBuffer.Allocate(device, 4 * sizeof(float));

        var calls = new (string Name, Action Call)[]
        {
            ("unary", () => Ops.Unary(UnaryOp.Neg, onCpu, onDevice, 4)),
            ("matmul", () => Ops.MatMul(onCpu, onDevice, cOnDevice, 2, 2, 2)),
            ("binary", () => Ops.Binary(BinaryOp.Add, onDevice, new long[] { 4 }, onCpu, new long[] { 4 }, cOnDevice, new long[] { 4 })),
            ("softmax", () => Ops.Softmax(onDevice, onCpu, 2, 2)),
        };
        foreach ((string name, Action call) in calls)
        {
            var error = Assert.Throws<DeviceMismatchException>(call, $"{name} with buffers on cpu and {deviceName}");
            Assert.That(error!.Message, Does.Contain("cpu").And.Contain(deviceName), $"{name}: the message names both devices");
        }

        // The library is still usable: the same call with both buffers on the device works.
        Ops.Unary(UnaryOp.Neg, onDevice, cOnDevice, 4);
        Expect.Identical(cOnDevice.ToArray(), new float[] { -5, -6, -7, -8 }, "a valid call after the mismatches");
    }
}
