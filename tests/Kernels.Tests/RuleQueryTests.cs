// The rules libkernels exports so that no caller keeps its own copy (kn_conv2d_output_size,
// kn_pool2d_output_size, kn_unary_backward_uses_output): their answers on geometries worked by hand,
// and that the size queries refuse exactly what the kernels refuse, with the same message.
using NUnit.Framework;

namespace Kernels.Tests;

[TestFixture]
public class RuleQueryTests
{
    // Output sizes worked by hand from (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1.
    [TestCase(32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 16, 16, TestName = "Conv2DOutputSize 32x32 k3 s2 p1 -> 16x16")]
    [TestCase(7, 9, 3, 3, 1, 1, 0, 0, 2, 2, 3, 5, TestName = "Conv2DOutputSize 7x9 k3 dilation 2 -> 3x5")]
    [TestCase(5, 6, 5, 1, 3, 4, 2, 0, 1, 1, 2, 2, TestName = "Conv2DOutputSize 5x6 k5x1 s3x4 p2x0 -> 2x2")]
    [TestCase(28, 28, 5, 5, 1, 1, 0, 0, 1, 1, 24, 24, TestName = "Conv2DOutputSize 28x28 k5 -> 24x24")]
    public void Conv2DOutputSize_MatchesHandWorkedSize(long inH, long inW, long kH, long kW, long sH, long sW, long pH,
                                                       long pW, long dH, long dW, long wantH, long wantW)
    {
        var g = new Conv2DGeometry(2, 4, inH, inW, 6, kH, kW, sH, sW, pH, pW, dH, dW, Groups: 2);
        Assert.That(g.OutputSize(), Is.EqualTo((wantH, wantW)));
        Assert.That((g.OutHeight, g.OutWidth), Is.EqualTo((wantH, wantW)));
        Assert.That(g.OutputElements, Is.EqualTo(2 * 6 * wantH * wantW));
    }

    // Worked by hand from (in + 2 pad - kernel) / stride + 1.
    [TestCase(5, 5, 2, 2, 2, 2, 0, 0, 2, 2, TestName = "Pool2DOutputSize 5x5 k2 s2 -> 2x2")]
    [TestCase(7, 7, 3, 3, 2, 2, 1, 1, 4, 4, TestName = "Pool2DOutputSize 7x7 k3 s2 p1 -> 4x4")]
    [TestCase(4, 9, 4, 2, 1, 3, 2, 1, 5, 4, TestName = "Pool2DOutputSize 4x9 k4x2 s1x3 p2x1 -> 5x4")]
    public void Pool2DOutputSize_MatchesHandWorkedSize(long inH, long inW, long kH, long kW, long sH, long sW, long pH,
                                                       long pW, long wantH, long wantW)
    {
        var g = new Pool2DGeometry(2, 3, inH, inW, kH, kW, sH, sW, pH, pW);
        Assert.That(g.OutputSize(), Is.EqualTo((wantH, wantW)));
        Assert.That(g.OutputElements, Is.EqualTo(2 * 3 * wantH * wantW));
    }

    // What follows the C function's name ("conv2d: ..." vs "conv2d_output_size: ...").
    private static string AfterName(string message) => message[message.IndexOf(':')..];

    private static IEnumerable<TestCaseData> BadConvGeometries()
    {
        yield return new TestCaseData(new Conv2DGeometry(1, 1, 4, 4, 1, 6, 6), typeof(ShapeMismatchException)).SetName("kernel larger than the input");
        yield return new TestCaseData(new Conv2DGeometry(1, 6, 5, 5, 4, 3, 3, Groups: 3), typeof(ShapeMismatchException)).SetName("channels not divisible by groups");
        yield return new TestCaseData(new Conv2DGeometry(1, 1, 4, 4, 1, 3, 3, StrideHeight: 0), typeof(KernelsArgumentException)).SetName("zero stride");
        yield return new TestCaseData(new Conv2DGeometry(1, 1, 4, 4, 1, 3, 3, PadWidth: -1), typeof(KernelsArgumentException)).SetName("negative padding");
    }

    [TestCaseSource(nameof(BadConvGeometries))]
    public void Conv2DOutputSize_RefusesWhatConv2DRefuses_WithTheSameMessage(Conv2DGeometry g, Type expected)
    {
        var device = Device.Cpu;
        using var b = DeviceBuffer.Allocate(device, 4096 * sizeof(float));
        var query = Assert.Throws(expected, () => g.OutputSize())!;
        var call = Assert.Throws(expected, () => Ops.Conv2D(b, b, null, b, g))!;
        Assert.That(query.Message, Does.StartWith("conv2d_output_size: "));
        Assert.That(AfterName(query.Message), Is.EqualTo(AfterName(call.Message)));
    }

    private static IEnumerable<TestCaseData> BadPoolGeometries()
    {
        yield return new TestCaseData(new Pool2DGeometry(1, 2, 8, 8, 3, 3, 1, 1, 2, 1), typeof(KernelsArgumentException)).SetName("padding over half the kernel");
        yield return new TestCaseData(new Pool2DGeometry(1, 1, 3, 9, 6, 2, 1, 1, 1, 0), typeof(ShapeMismatchException)).SetName("window larger than the input");
        yield return new TestCaseData(new Pool2DGeometry(1, 1, 3, 3, 2, 2, 0, 1), typeof(KernelsArgumentException)).SetName("zero stride");
    }

    [TestCaseSource(nameof(BadPoolGeometries))]
    public void Pool2DOutputSize_RefusesWhatPool2DRefuses_WithTheSameMessage(Pool2DGeometry g, Type expected)
    {
        var device = Device.Cpu;
        using var b = DeviceBuffer.Allocate(device, 4096 * sizeof(float));
        var query = Assert.Throws(expected, () => g.OutputSize())!;
        var call = Assert.Throws(expected, () => Ops.Pool2D(PoolOp.Avg, b, b, null, g))!;
        Assert.That(query.Message, Does.StartWith("pool2d_output_size: "));
        Assert.That(AfterName(query.Message), Is.EqualTo(AfterName(call.Message)));
    }

    [Test]
    public void UnaryBackwardUsesOutput_IsTheListDocumentedInKernelsH()
    {
        var fromY = new[] { UnaryOp.Exp, UnaryOp.Sqrt, UnaryOp.Rsqrt, UnaryOp.Reciprocal, UnaryOp.Tanh, UnaryOp.Sigmoid };
        foreach (var op in Enum.GetValues<UnaryOp>())
            Assert.That(Ops.UnaryBackwardUsesOutput(op), Is.EqualTo(fromY.Contains(op)), op.ToString());
    }

    [Test]
    public void UnaryBackwardUsesOutput_UnknownOp_ThrowsKernelsArgumentException()
    {
        var e = Assert.Throws<KernelsArgumentException>(() => Ops.UnaryBackwardUsesOutput((UnaryOp)999))!;
        Assert.That(e.Message, Does.Contain("999"));
    }
}
