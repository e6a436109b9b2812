// Bad input: each call must throw the documented exception type with a message that names the
// problem, and the library must stay usable: a valid call right after each one succeeds.
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

/// <summary>A call that must fail, on buffers prepared by the fixture; the fragments must all
/// appear in the exception's message.</summary>
public sealed record BadCall(string Name, Action<ErrorTests.Operands> Call, params string[] MessageFragments)
{
    public override string ToString() => Name;
}

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class ErrorTests : DeviceFixture
{
    public ErrorTests(string deviceName) : base(deviceName) { }

    /// <summary>Buffers for the bad calls: a is 3x4 (12 floats), b is 4x5 (20), c is 3x5 (15).</summary>
    public sealed class Operands : IDisposable
    {
        public Operands(Device device)
        {
            A = DeviceBuffer.FromArray(device, TestData.Uniform(12, -1, 1, "errors a"));
            B = DeviceBuffer.FromArray(device, TestData.Uniform(20, -1, 1, "errors b"));
            C = DeviceBuffer.FromArray(device, TestData.Uniform(15, -1, 1, "errors c"));
        }

        public DeviceBuffer A { get; }
        public DeviceBuffer B { get; }
        public DeviceBuffer C { get; }

        public void Dispose()
        {
            A.Dispose();
            B.Dispose();
            C.Dispose();
        }
    }

    private static TestCaseData Case(BadCall call) => new TestCaseData(call).SetArgDisplayNames(call.Name);

    private static readonly long[] Shape34 = { 3, 4 };

    public static IEnumerable<TestCaseData> ShapeMismatchCases() => new[]
    {
        new BadCall("gemm lda < k", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 3, o.B, 5, 0, o.C, 5), "lda", "3"),
        new BadCall("gemm ldb < n", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, o.B, 4, 0, o.C, 5), "ldb"),
        new BadCall("gemm ldc < n", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 2), "ldc"),
        new BadCall("gemm transposed lda < m", o => Ops.Gemm(Transpose.Transpose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 2, o.B, 5, 0, o.C, 5), "lda"),
        new BadCall("gemm A buffer too small for m", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 4, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 5), "'a'"),
        new BadCall("gemm B buffer too small for ldb", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, o.B, 6, 0, o.C, 5), "'b'", "ldb=6"),
        new BadCall("gemm C buffer too small for ldc", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 6), "'c'"),
        new BadCall("gemm batches past the end of A", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 5, 2, 12, 0, 15), "'a'"),
        new BadCall("gemm overlapping C batches", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 1, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 5, 2, 4, 0, 3), "stride_c"),
        new BadCall("binary [3, 4] with [5]", o => Ops.Binary(BinaryOp.Add, o.A, Shape34, o.B, new long[] { 5 }, o.C, Shape34), "[3, 4]", "[5]"),
        new BadCall("binary output [4, 3] for [3, 4]", o => Ops.Binary(BinaryOp.Mul, o.A, Shape34, o.A, Shape34, o.B, new long[] { 4, 3 }), "[4, 3]", "[3, 4]"),
        new BadCall("binary a buffer too small for [4, 4]", o => Ops.Binary(BinaryOp.Add, o.A, new long[] { 4, 4 }, o.B, new long[] { 4 }, o.B, new long[] { 4, 4 }), "'a'", "[4, 4]"),
        new BadCall("binary backward [3, 4] with [2, 4]", o => Ops.BinaryBackward(BinaryOp.Sub, o.A, Shape34, o.B, new long[] { 2, 4 }, o.C, Shape34, o.C, null), "[3, 4]", "[2, 4]"),
        new BadCall("unary n past x", o => Ops.Unary(UnaryOp.Exp, o.A, o.B, 13), "'x'", "13"),
        new BadCall("reduce x too small", o => Ops.Reduce(ReduceOp.Sum, o.A, o.B, 2, 7, 1), "'x'"),
        new BadCall("argreduce indices too small", o => Ops.ArgReduce(ArgReduceOp.Argmax, o.B, o.A, 1, 1, 20), "'indices'"),
        new BadCall("softmax y too small", o => Ops.Softmax(o.B, o.A, 4, 5), "'y'"),
        new BadCall("read past the end", o => o.A.Read<float>(new float[5], byteOffset: 8 * 4), "overrun"),
        new BadCall("write past the end", o => o.A.Write<float>(new float[13]), "overrun"),
        new BadCall("fill past the end", o => o.A.Fill(1, offset: 10, count: 3), "overrun"),
        new BadCall("copy past the end of the source", o => o.B.CopyFrom(o.A, 0, 0, 13 * 4), "overrun"),
    }.Select(Case);

    public static IEnumerable<TestCaseData> ArgumentCases() => new[]
    {
        new BadCall("unary n = -1", o => Ops.Unary(UnaryOp.Neg, o.A, o.B, -1), "negative"),
        new BadCall("gemm m = -1", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, -1, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 5), "negative"),
        new BadCall("gemm batch count = -2", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, o.B, 5, 0, o.C, 5, -2), "negative"),
        new BadCall("reduce inner = -1", o => Ops.Reduce(ReduceOp.Max, o.A, o.B, 1, 1, -1), "negative"),
        new BadCall("softmax rows = -1", o => Ops.Softmax(o.A, o.B, -1, 3), "negative"),
        new BadCall("binary shape [3, -4]", o => Ops.Binary(BinaryOp.Add, o.A, new long[] { 3, -4 }, o.B, new long[] { 4 }, o.C, new long[] { 3, 4 }), "negative"),
        new BadCall("read at offset -4", o => o.A.Read<float>(new float[1], byteOffset: -4), "negative"),
        new BadCall("fill count = -1", o => o.A.Fill(1, 0, -1), "negative"),
        new BadCall("gemm C is A", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 3, 3, 1, o.B, 3, o.C, 3, 0, o.B, 3), "same buffer"),
        new BadCall("reduce y is x", o => Ops.Reduce(ReduceOp.Sum, o.A, o.A, 1, 4, 1), "same buffer"),
        new BadCall("copy between overlapping ranges of one buffer", o => o.A.CopyFrom(o.A, 0, 8, 16), "overlap"),
        new BadCall("argmax over zero elements", o => Ops.ArgReduce(ArgReduceOp.Argmax, o.A, o.B, 2, 0, 2), "argmax", "zero elements"),
        new BadCall("max over zero elements", o => Ops.Reduce(ReduceOp.Max, o.A, o.B, 2, 0, 2), "max", "zero elements"),
        new BadCall("relu backward without x", o => Ops.UnaryBackward(UnaryOp.Relu, null, o.A, o.B, o.C, 4), "input x", "NULL"),
        new BadCall("tanh backward without y", o => Ops.UnaryBackward(UnaryOp.Tanh, o.A, null, o.B, o.C, 4), "output y", "NULL"),
        new BadCall("unary op outside the enum", o => Ops.Unary((UnaryOp)99, o.A, o.B, 4), "99"),
    }.Select(Case);

    public static IEnumerable<TestCaseData> NullCases() => new[]
    {
        new BadCall("unary x", o => Ops.Unary(UnaryOp.Neg, null!, o.B, 4)),
        new BadCall("unary y", o => Ops.Unary(UnaryOp.Neg, o.A, null!, 4)),
        new BadCall("gemm b", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, o.A, 4, null!, 5, 0, o.C, 5)),
        new BadCall("binary c", o => Ops.Binary(BinaryOp.Add, o.A, Shape34, o.A, Shape34, null!, Shape34)),
        new BadCall("binary backward dc", o => Ops.BinaryBackward(BinaryOp.Add, o.A, Shape34, o.A, Shape34, null!, Shape34, o.B, null)),
        new BadCall("unary backward dy", o => Ops.UnaryBackward(UnaryOp.Neg, o.A, null, null!, o.B, 4)),
        new BadCall("reduce x", o => Ops.Reduce(ReduceOp.Sum, null!, o.B, 1, 4, 1)),
        new BadCall("argreduce indices", o => Ops.ArgReduce(ArgReduceOp.Argmin, o.A, null!, 1, 4, 1)),
        new BadCall("softmax y", o => Ops.Softmax(o.A, null!, 1, 4)),
        new BadCall("softmax backward dx", o => Ops.SoftmaxBackward(o.A, o.B, null!, 1, 4)),
        new BadCall("copy source", o => o.A.CopyFrom(null!, 0, 0, 4)),
        new BadCall("allocate on a null device", _ => DeviceBuffer.Allocate(null!, 4).Dispose()),
        new BadCall("from array on a null device", _ => DeviceBuffer.FromArray(null!, new float[] { 1 }).Dispose()),
        new BadCall("device name", _ => Device.Get(null!)),
    }.Select(Case);

    public static IEnumerable<TestCaseData> DisposedCases() => new[]
    {
        new BadCall("unary with a disposed x", o => Ops.Unary(UnaryOp.Neg, Disposed(o), o.B, 1)),
        new BadCall("gemm with a disposed c", o => Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 1, 1, 1, 1, o.A, 1, o.B, 1, 0, Disposed(o), 1)),
        new BadCall("reduce with a disposed y", o => Ops.Reduce(ReduceOp.Sum, o.A, Disposed(o), 1, 1, 1)),
        new BadCall("copy from a disposed buffer", o => o.A.CopyFrom(Disposed(o), 0, 0, 4)),
        new BadCall("read", o => Disposed(o).ToArray()),
        new BadCall("write", o => Disposed(o).Write<float>(new float[] { 1 })),
        new BadCall("fill", o => Disposed(o).Fill(0)),
    }.Select(Case);

    private static DeviceBuffer Disposed(Operands o)
    {
        var buffer = DeviceBuffer.Allocate(o.A.Device, 16);
        buffer.Dispose();
        return buffer;
    }

    [TestCaseSource(nameof(ShapeMismatchCases))]
    public void BadShapes_ThrowShapeMismatchNamingTheProblem(BadCall bad) => ExpectFailure<ShapeMismatchException>(bad);

    [TestCaseSource(nameof(ArgumentCases))]
    public void BadArguments_ThrowKernelsArgumentNamingTheProblem(BadCall bad) => ExpectFailure<KernelsArgumentException>(bad);

    [TestCaseSource(nameof(NullCases))]
    public void NullArguments_ThrowArgumentNull(BadCall bad) => ExpectFailure<ArgumentNullException>(bad);

    [TestCaseSource(nameof(DisposedCases))]
    public void DisposedBuffers_ThrowObjectDisposed(BadCall bad) => ExpectFailure<ObjectDisposedException>(bad);

    [Test]
    public void ShapeMismatch_CarriesTheNativeStatus()
    {
        using var o = new Operands(Device);
        var error = Assert.Throws<ShapeMismatchException>(() => o.A.Read<float>(new float[13]));
        Assert.That(error!.Status, Is.EqualTo(Status.ErrorShapeMismatch));
        Assert.That(error, Is.InstanceOf<KernelsException>(), "every library error derives from KernelsException");
    }

    private void ExpectFailure<TException>(BadCall bad) where TException : Exception
    {
        using var operands = new Operands(Device);
        float[] aBefore = operands.A.ToArray(), bBefore = operands.B.ToArray(), cBefore = operands.C.ToArray();

        var error = Assert.Throws<TException>(() => bad.Call(operands), $"{bad.Name} on {DeviceName}");
        foreach (string fragment in bad.MessageFragments)
            Assert.That(error!.Message, Does.Contain(fragment), $"{bad.Name}: the message names the problem");
        if (error is KernelsException native)
        {
            Status expected = native switch
            {
                ShapeMismatchException => Status.ErrorShapeMismatch,
                KernelsArgumentException => Status.ErrorInvalidArgument,
                _ => native.Status,
            };
            Assert.That(native.Status, Is.EqualTo(expected), $"{bad.Name}: the status carried by {native.GetType().Name}");
        }

        // A failed call changes nothing, and the library keeps working.
        Expect.Identical(operands.A.ToArray(), aBefore, $"a after the failed {bad.Name}");
        Expect.Identical(operands.B.ToArray(), bBefore, $"b after the failed {bad.Name}");
        Expect.Identical(operands.C.ToArray(), cBefore, $"c after the failed {bad.Name}");
        Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, 3, 5, 4, 1, operands.A, 4, operands.B, 5, 0, operands.C, 5);
        float[] c = operands.C.ToArray();
        for (int i = 0; i < 3; i++)
        {
            for (int j = 0; j < 5; j++)
            {
                double expected = 0;
                for (int p = 0; p < 4; p++) expected += (double)aBefore[i * 4 + p] * bBefore[p * 5 + j];
                Assert.That(c[i * 5 + j], Is.EqualTo(expected).Within(8 * TestData.Unit * 4), $"C[{i},{j}] of a valid GEMM after the failed {bad.Name}");
            }
        }
    }
}
