// The generated safe wrappers (bindings/SafeNativeMethods.g.cs) under the public Ops methods: which
// buffers may be null comes from KN_OPTIONAL in kernels.h, and the exceptions name the PUBLIC
// parameter (CallerArgumentExpression), also where it differs from the C name (squareAverage vs
// square_avg, saveInvStd vs save_invstd).
using NUnit.Framework;

namespace Kernels.Tests;

[TestFixture]
public sealed class SafeWrapperTests
{
    private static DeviceBuffer Buffer(int floats) => DeviceBuffer.FromArray(Device.Cpu, new float[floats]);

    private static DeviceBuffer Disposed()
    {
        var buffer = Buffer(4);
        buffer.Dispose();
        return buffer;
    }

    public static IEnumerable<TestCaseData> NullCases()
    {
        yield return new TestCaseData((Action<DeviceBuffer>)(b => Ops.RmsPropStep(b, b, null!, null, 4, 0.1f, 0.9f, 1e-8f, 0, 0)), "squareAverage")
            .SetArgDisplayNames("RmsPropStep squareAverage (C: square_avg)");
        yield return new TestCaseData((Action<DeviceBuffer>)(b => Ops.BatchNormBackward(b, b, b, b, null!, null, b, b, 1, 1, 4, true)), "saveInvStd")
            .SetArgDisplayNames("BatchNormBackward saveInvStd (C: save_invstd)");
        yield return new TestCaseData((Action<DeviceBuffer>)(b => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 1, 1, 1, 1, b, 1, b, 1, 0, null!, 1)), "c")
            .SetArgDisplayNames("Gemm c");
        yield return new TestCaseData((Action<DeviceBuffer>)(b => Ops.Conv2D(b, null!, null, b, new Conv2DGeometry(1, 1, 2, 2, 1, 1, 1))), "w")
            .SetArgDisplayNames("Conv2D w");
        yield return new TestCaseData((Action<DeviceBuffer>)(b => Ops.CrossEntropyBackward(b, b, b, null!, 1, 1)), "dlogits")
            .SetArgDisplayNames("CrossEntropyBackward dlogits");
    }

    [TestCaseSource(nameof(NullCases))]
    public void A_null_required_buffer_throws_ArgumentNull_naming_the_public_parameter(Action<DeviceBuffer> call, string parameter)
    {
        using var b = Buffer(16);
        var error = Assert.Throws<ArgumentNullException>(() => call(b));
        Assert.That(error!.ParamName, Is.EqualTo(parameter));
    }

    [Test]
    public void A_disposed_buffer_throws_ObjectDisposed_naming_the_public_parameter()
    {
        using var b = Buffer(4);
        var error = Assert.Throws<ObjectDisposedException>(() => Ops.RmsPropStep(b, b, Disposed(), null, 4, 0.1f, 0.9f, 1e-8f, 0, 0));
        Assert.That(error!.Message, Does.Contain("'squareAverage'").And.Contain("16 bytes on cpu"));
    }

    [Test]
    public void A_disposed_destination_of_CopyFrom_is_called_the_buffer()
    {
        using var source = Buffer(4);
        var error = Assert.Throws<ObjectDisposedException>(() => Disposed().CopyFrom(source, 0, 0, 4));
        Assert.That(error!.Message, Does.StartWith("The buffer (16 bytes on cpu) was disposed."));
    }

    [Test]
    public void Buffers_marked_KN_OPTIONAL_accept_null()
    {
        // Average pooling without indices, a convolution without bias, SGD without momentum: each runs.
        var pool = new Pool2DGeometry(1, 1, 2, 2, 2, 2, 2, 2);
        using var x = DeviceBuffer.FromArray(Device.Cpu, new float[] { 1, 2, 3, 4 });
        using var y = Buffer(1);
        Ops.Pool2D(PoolOp.Avg, x, y, null, pool);
        Assert.That(y.ToArray(), Is.EqualTo(new[] { 2.5f }));

        using var w = DeviceBuffer.FromArray(Device.Cpu, new float[] { 2 });
        using var conv = Buffer(4);
        Ops.Conv2D(x, w, null, conv, new Conv2DGeometry(1, 1, 2, 2, 1, 1, 1));
        Assert.That(conv.ToArray(), Is.EqualTo(new[] { 2f, 4f, 6f, 8f }));

        using var param = DeviceBuffer.FromArray(Device.Cpu, new float[] { 1, 1 });
        using var grad = DeviceBuffer.FromArray(Device.Cpu, new float[] { 1, -1 });
        Ops.SgdStep(param, grad, null, 2, 0.5f, 0, 0, 0, false, true);
        Assert.That(param.ToArray(), Is.EqualTo(new[] { 0.5f, 1.5f }));
    }

    [Test]
    public void A_required_buffer_is_checked_before_an_optional_one_is_used()
    {
        // Leases are taken in the C parameter order, as the hand-written wrappers did: a disposed x is
        // reported before the null dy that follows it.
        using var b = Buffer(4);
        Assert.Throws<ObjectDisposedException>(() => Ops.UnaryBackward(UnaryOp.Relu, Disposed(), null, null!, b, 4));
    }
}
