using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Integer tensors (int32, int64) on every backend: round trips, every layout op (against the same op
/// on a float32 tensor of positions, so the expected int values come from an independent path and large
/// int64 values test the word-pair copy), kn_cast against C# reference rules with edge values, the
/// float32 gate (one error per op family, naming op and types; the process stays usable), labels and ids
/// on the device (SparseCCE, Embedding, IndexSelect, Accuracy), the DataLoader's int64 targets and
/// Compile by Keras names. A backend that is absent is skipped with its reason, or fails when
/// KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1 says it must be there.
/// </summary>
[TestFixture]
public class DtypeTests
{
    // Values whose bytes would not survive a float conversion: NaN patterns (signalling and quiet, as
    // int32 and as either half of an int64), extremes, negative numbers.
    private static readonly int[] Int32Edges =
        { 0, -1, 1, int.MinValue, int.MaxValue, 0x7F800001, unchecked((int)0xFFC00001), 0x7FC00000, 16777217, -16777217 };
    private static readonly long[] Int64Edges =
    {
        0, -1, 1, long.MinValue, long.MaxValue, 0x7F800001_7FC00001L, unchecked((long)0xFFC00001_7F800001UL),
        (1L << 53) + 1, -(1L << 40) - 3, 0x00000001_FFFFFFFFL,
    };

    private static long[] Int64Values(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(i => i < Int64Edges.Length ? Int64Edges[i] : r.NextInt64(long.MinValue, long.MaxValue)).ToArray();
    }

    private static int[] Int32Values(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(i => i < Int32Edges.Length ? Int32Edges[i] : r.Next(int.MinValue, int.MaxValue)).ToArray();
    }

    // ---- Round trips -------------------------------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Integer_tensors_round_trip_through_the_device_bit_for_bit(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var longs = Int64Values(37, 1);
        var ints = Int32Values(37, 2);
        using var l = Tensor.FromArray(longs, new long[] { 37 }, device);
        using var i = Tensor.FromArray(ints, new long[] { 37 }, device);
        Assert.That(l.Dtype, Is.EqualTo(Dtype.Int64));
        Assert.That(i.Dtype, Is.EqualTo(Dtype.Int32));
        Assert.That(l.ToArray<long>(), Is.EqualTo(longs), "int64 upload and read");
        Assert.That(i.ToArray<int>(), Is.EqualTo(ints), "int32 upload and read");

        using var lCpu = l.To(Device.Cpu);
        using var iCpu = i.To(Device.Cpu);
        using var lBack = lCpu.To(device);
        Assert.That(lCpu.Dtype, Is.EqualTo(Dtype.Int64));
        Assert.That(lCpu.ToArray<long>(), Is.EqualTo(longs), "int64 moved to the CPU");
        Assert.That(iCpu.ToArray<int>(), Is.EqualTo(ints), "int32 moved to the CPU");
        Assert.That(lBack.ToArray<long>(), Is.EqualTo(longs), "int64 moved back");

        using var d = l.Detach();
        using var r = l.Reshape(1, 37);
        Assert.That(d.ToArray<long>(), Is.EqualTo(longs));
        Assert.That(r.Dtype, Is.EqualTo(Dtype.Int64));
        Assert.That(r.ToArray<long>(), Is.EqualTo(longs));
        using var scalar = Tensor.FromArray(new long[] { -5 }, ReadOnlySpan<long>.Empty, device);
        Assert.That(scalar.Item<long>(), Is.EqualTo(-5L));
        using var zeros = Tensor.Zeros(new long[] { 3, 5 }, Dtype.Int64, device);
        Assert.That(zeros.ToArray<long>(), Is.All.EqualTo(0L));
        using var empty = Tensor.FromArray(Array.Empty<int>(), new long[] { 0, 4 }, device);
        Assert.That(empty.ToArray<int>(), Is.Empty);
        using var range = Tensor.ArangeInt64(5, -6, -3, device);
        Assert.That(range.ToArray<long>(), Is.EqualTo(new long[] { 5, 2, -1, -4 }));
    }

    [Test]
    public void Reading_with_the_wrong_type_names_both_types()
    {
        using var l = Tensor.FromArray(new long[] { 1, 2 });
        using var f = Tensor.FromArray(new float[] { 1, 2 });
        var e1 = Assert.Throws<DtypeMismatchException>(() => l.ToArray<int>())!;
        Assert.That(e1.Message, Does.Contain("int64").And.Contain("int32").And.Contain("ToArray<long>()"));
        var e2 = Assert.Throws<DtypeMismatchException>(() => l.ToArray())!;
        Assert.That(e2.Message, Does.Contain("int64").And.Contain("ToArray<long>()"));
        var e3 = Assert.Throws<DtypeMismatchException>(() => f.ToArray<long>())!;
        Assert.That(e3.Message, Does.Contain("float32").And.Contain("int64"));
        using var one = Tensor.FromArray(new long[] { 7 });
        Assert.Throws<DtypeMismatchException>(() => one.Item());
        Assert.That(one.Item<long>(), Is.EqualTo(7L));
        Assert.Throws<ArgumentException>(() => f.ToArray<double>());
        Assert.That(l.ToString(), Does.Contain("int64").And.Contain("[1, 2]"));
    }

    [Test]
    public void An_int64_shape_past_2_pow_63_bytes_is_refused_naming_the_type()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros(new[] { (1L << 61) - 1 }, Dtype.Int64))!;
        Assert.That(e.Message, Does.Contain("int64").And.Contain("2^63 bytes"));
        using var ok = Tensor.Zeros(new long[] { 2 }, Dtype.Int64);
        Assert.That(ok.ToArray<long>(), Is.EqualTo(new long[] { 0, 0 }));
    }

    // ---- Layout ops ----------------------------------------------------------------------------------

    /// <summary>
    /// Runs <paramref name="op"/> on an int tensor of <paramref name="shape"/> and on a float32 tensor of
    /// the positions 0..n-1 (exact in float32, the float path tested against index formulas elsewhere):
    /// result element k must be the int value at the position the float result names.
    /// </summary>
    private static void CheckLayout<T>(Device device, string what, long[] shape, T[] values, Func<Tensor, Tensor> op) where T : unmanaged
    {
        using var scope = new DisposeScope();
        var positions = Enumerable.Range(0, values.Length).Select(p => (float)p).ToArray();
        var ints = typeof(T) == typeof(long) ? Tensor.FromArray((long[])(object)values, shape, device) : Tensor.FromArray((int[])(object)values, shape, device);
        var y = op(ints);
        var where = op(Tensor.FromArray(positions, shape, device));
        Assert.That(y.Dtype, Is.EqualTo(ints.Dtype), $"{what}: element type kept");
        Assert.That(y.ShapeArray, Is.EqualTo(where.ShapeArray), $"{what}: shape");
        var want = where.ToArray().Select(p => values[(int)p]).ToArray();
        Assert.That(y.ToArray<T>(), Is.EqualTo(want), $"{what} of {typeof(T).Name} {Tensor.FormatShape(shape)}");
    }

    private static void CheckAllLayoutOps<T>(Device device, Func<int, int, T[]> values) where T : unmanaged
    {
        foreach (var shape in new[] { new long[] { 7 }, new long[] { 3, 5 }, new long[] { 67, 33 }, new long[] { 2, 3, 1, 5, 7 } })
        {
            int n = (int)shape.Aggregate(1L, (a, b) => a * b);
            var v = values(n, n);
            int r = shape.Length;
            var reversed = Enumerable.Range(0, r).Reverse().ToArray();
            CheckLayout(device, "Permute (reversed)", shape, v, t => t.Permute(reversed));
            CheckLayout(device, "Transpose(0, -1)", shape, v, t => t.Transpose(0, -1));
            CheckLayout(device, "Narrow", shape, v, t => t.Narrow(-1, 1, shape[^1] - 1));
            CheckLayout(device, "Select", shape, v, t => t.Select(0, shape[0] - 1));
            CheckLayout(device, "Slice step 2", shape, v, t => t.Slice(-1, 0, shape[^1], 2));
            CheckLayout(device, "Slice of a transpose", shape, v, t => t.Transpose(0, -1).Slice(0, 1, shape[^1], 3));
            CheckLayout(device, "Concatenate", shape, v, t => Tensor.Concatenate(new[] { t, t.Narrow(0, 0, 1) }, 0));
            CheckLayout(device, "Concatenate along the last dimension", shape, v, t => Tensor.Concatenate(new[] { t.Narrow(-1, 0, 1), t }, -1));
            CheckLayout(device, "Stack", shape, v, t => Tensor.Stack(new[] { t, t }, r));
            CheckLayout(device, "Split", shape, v, t => t.Split(2, -1)[^1]);
            CheckLayout(device, "IndexSelect", shape, v, t => t.IndexSelect(-1, new long[] { shape[^1] - 1, 0, 0 }));
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Layout_ops_move_int64_values_bit_for_bit(string name, DeviceKind kind, string requireVariable) =>
        CheckAllLayoutOps(TestDevices.Require(name, kind, requireVariable), Int64Values);

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Layout_ops_move_int32_values_bit_for_bit(string name, DeviceKind kind, string requireVariable) =>
        CheckAllLayoutOps(TestDevices.Require(name, kind, requireVariable), Int32Values);

    [Test]
    public void Joining_different_element_types_is_refused_naming_them()
    {
        using var l = Tensor.FromArray(new long[] { 1, 2 });
        using var f = Tensor.FromArray(new float[] { 1, 2 });
        var e = Assert.Throws<DtypeMismatchException>(() => Tensor.Concatenate(new[] { l, f }))!;
        Assert.That(e.Message, Does.Contain("Concatenate").And.Contain("int64").And.Contain("float32"));
        Assert.Throws<DtypeMismatchException>(() => Tensor.Stack(new[] { f, l }));
    }

    // ---- Casts ---------------------------------------------------------------------------------------

    // kernels.h's rules, written out in C#.
    private static int FloatToInt32(float x) =>
        float.IsNaN(x) ? 0 : x >= 2147483648f ? int.MaxValue : x < -2147483648f ? int.MinValue : (int)Math.Truncate((double)x);
    private static long FloatToInt64(float x) =>
        float.IsNaN(x) ? 0 : x >= 9223372036854775808f ? long.MaxValue : x < -9223372036854775808f ? long.MinValue : (long)Math.Truncate((double)x);

    private static readonly float[] FloatEdges =
    {
        0f, -0f, 0.5f, -0.5f, 0.99999994f, -0.99999994f, 2.7f, -2.7f, 1.5f, -1.5f, 16777217f, 2147483520f, 2147483648f,
        -2147483648f, -2147483904f, 3e9f, -3e9f, 9.2233715e18f, 9223372036854775808f, -9223372036854775808f, -1e19f,
        float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-30f, 123456.789f, -98765.4321f,
    };

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Casts_follow_the_documented_rules(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var r = new Random(3);
        var floats = FloatEdges.Concat(Enumerable.Range(0, 1000).Select(_ => (float)((r.NextDouble() - 0.5) * 1e7))).ToArray();
        using var f = Tensor.FromArray(floats, new long[] { floats.Length }, device);
        using var toInt = f.To(Dtype.Int32);
        using var toLong = f.To(Dtype.Int64);
        Assert.That(toInt.ToArray<int>(), Is.EqualTo(floats.Select(FloatToInt32).ToArray()), "float32 -> int32");
        Assert.That(toLong.ToArray<long>(), Is.EqualTo(floats.Select(FloatToInt64).ToArray()), "float32 -> int64");
        Assert.That(toInt.ToArray<int>().Take(10), Is.EqualTo(new[] { 0, 0, 0, 0, 0, 0, 2, -2, 1, -1 }), "truncation toward zero");

        var longs = Int64Values(300, 4);
        using var l = Tensor.FromArray(longs, new long[] { longs.Length }, device);
        using var lToInt = l.To(Dtype.Int32);
        using var lToFloat = l.To(Dtype.Float32);
        Assert.That(lToInt.ToArray<int>(), Is.EqualTo(longs.Select(v => unchecked((int)v)).ToArray()), "int64 -> int32 keeps the low 32 bits");
        Assert.That(lToFloat.ToArray(), Is.EqualTo(longs.Select(v => (float)v).ToArray()), "int64 -> float32 rounds to nearest even");

        var ints = Int32Values(300, 5);
        using var i = Tensor.FromArray(ints, new long[] { ints.Length }, device);
        using var iToLong = i.To(Dtype.Int64);
        using var iToFloat = i.To(Dtype.Float32);
        Assert.That(iToLong.ToArray<long>(), Is.EqualTo(ints.Select(v => (long)v).ToArray()), "int32 -> int64 sign-extends");
        Assert.That(iToFloat.ToArray(), Is.EqualTo(ints.Select(v => (float)v).ToArray()), "int32 -> float32");
        Assert.That(iToFloat.ToArray()[8], Is.EqualTo(16777216f), "2^24 + 1 rounds to 2^24");
        Assert.That(ReferenceEquals(i.To(Dtype.Int32), i), "the same type is the tensor itself");
    }

    [Test]
    public void Integer_tensors_have_no_gradient()
    {
        using var l = Tensor.FromArray(new long[] { 1, 2 });
        var e = Assert.Throws<DtypeMismatchException>(() => l.RequiresGrad = true)!;
        Assert.That(e.Message, Does.Contain("int64"));
        using var f = Tensor.FromArray(new float[] { 1.5f, -2.5f });
        f.RequiresGrad = true;
        using var cast = f.To(Dtype.Int64);
        Assert.That(cast.RequiresGrad, Is.False, "a cast is not differentiable");
    }

    // ---- The float32 gate ---------------------------------------------------------------------------

    private static void AssertRefused(string op, Func<object> call, params string[] mentions)
    {
        var e = Assert.Throws<DtypeMismatchException>(() => call(), op)!;
        Assert.That(e.Message, Does.StartWith(op + ":"), op);
        foreach (var m in mentions) Assert.That(e.Message, Does.Contain(m), op);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Float_ops_refuse_integer_tensors_naming_the_op_and_the_types(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long live = Tensor.LiveCount;
        using (var scope = new DisposeScope())
        {
            var l = Tensor.FromArray(new long[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, new long[] { 3, 4 }, device);
            var i = l.To(Dtype.Int32);
            var f = Tensor.Ones(new long[] { 3, 4 }, device);
            var w = Tensor.Ones(new long[] { 4, 2 }, device);
            AssertRefused("Relu", () => l.Relu(), "int64 tensor [3, 4]", "float32");                   // unary
            AssertRefused("Scale", () => i.Mul(2f), "int32 tensor [3, 4]");                              // x * scalar is the unary op Scale
            AssertRefused("Add", () => f + l, "float32 tensor [3, 4]", "int64 tensor [3, 4]", "mix");     // mixed binary
            AssertRefused("Add", () => l + l, "int64 tensor [3, 4] where float32 is needed");           // both integer
            AssertRefused("Less", () => l.Lt(2f), "int64");                                             // comparison
            AssertRefused("MatMul", () => l.MatMul(w), "int64 tensor [3, 4]");                          // gemm
            AssertRefused("MatMul", () => f.MatMul(w.To(Dtype.Int64)), "int64 tensor [4, 2]");
            AssertRefused("Sum", () => l.Sum(), "int64");                                               // reductions
            AssertRefused("Mean", () => l.Mean(1), "int64");
            AssertRefused("ArgMax", () => l.ArgMax(), "int64");
            AssertRefused("Softmax", () => l.Softmax(), "int64");                                       // softmax
            AssertRefused("LogSoftmax", () => i.LogSoftmax(), "int32");
            var image = Tensor.FromArray(new long[16], new long[] { 1, 1, 4, 4 }, device);
            var kernel = Tensor.Ones(new long[] { 1, 1, 3, 3 }, device);
            AssertRefused("Conv2D", () => image.Conv2D(kernel), "int64 tensor [1, 1, 4, 4]");           // convolution
            AssertRefused("MaxPool2D", () => image.MaxPool2D(2), "int64");                              // pooling
            AssertRefused("MeanSquaredError", () => Losses.MeanSquaredError(f, l), "float32", "int64");   // losses
            AssertRefused("SparseCategoricalCrossEntropy", () => Losses.SparseCategoricalCrossEntropy(l, l.Select(1, 0)), "int64 tensor [3, 4]");
            using var dense = new Dense(4, 2, device: device);
            AssertRefused("Linear", () => dense.Forward(l), "int64");                                   // a layer: its first op refuses
            AssertRefused("Linear", () => l.Linear(w), "int64 tensor [3, 4]");                          // the fused dense op
            AssertRefused("Dropout.Forward", () => new Dropout(0.5f).Forward(l), "int64");              // an op without a name: from the stack
        }
        // The process stays usable, and nothing the refused calls made is left alive.
        using (var scope = new DisposeScope())
        {
            var ok = Tensor.FromArray(new float[] { 1, -2 }, new long[] { 2 }, device).Relu().Sum();
            Assert.That(ok.Item(), Is.EqualTo(1f));
        }
        Assert.That(Tensor.LiveCount, Is.EqualTo(live), "live tensors after the refused calls");
    }

    // ---- Labels on the device: the sparse cross-entropy --------------------------------------------

    private static readonly float[] LogitValues = { 0.5f, -1f, 2f, 0f, 3f, -0.5f, 1f, 1f, -2f, 0.25f, 0.75f, -1.5f };

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Integer_labels_give_the_loss_and_gradient_of_float_labels(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] labels = { 2, 0, 1, 2 };
        (float Loss, float[] Grad) Run(Func<Tensor, Tensor> loss)
        {
            using var scope = new DisposeScope();
            var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 }, device);
            logits.RequiresGrad = true;
            var value = loss(logits);
            value.Backward();
            return (value.Item(), logits.Grad!.ToArray());
        }
        var fromFloat = Run(x => Losses.SparseCategoricalCrossEntropy(x, Tensor.FromArray(labels.Select(v => (float)v).ToArray(), device)));
        var fromInt64 = Run(x => Losses.SparseCategoricalCrossEntropy(x, Tensor.FromArray(labels, device)));
        var fromInt32 = Run(x => Losses.SparseCategoricalCrossEntropy(x, Tensor.FromArray(labels.Select(v => (int)v).ToArray(), device)));
        var fromColumn = Run(x => Losses.SparseCategoricalCrossEntropy(x, Tensor.FromArray(labels, new long[] { 4, 1 }, device)));
        // float64 reference of the loss: mean over rows of logsumexp - logit[label].
        double want = 0;
        for (int r = 0; r < 4; r++)
        {
            var row = LogitValues.Skip(3 * r).Take(3).Select(v => (double)v).ToArray();
            want += Math.Log(row.Sum(Math.Exp)) - row[labels[r]];
        }
        Assert.That(fromInt64.Loss, Is.EqualTo(want / 4).Within(1e-6), "int64 labels against float64");
        Assert.That(fromInt64.Loss, Is.EqualTo(fromFloat.Loss), "int64 and float labels: the same loss");
        Assert.That(fromInt64.Grad, Is.EqualTo(fromFloat.Grad), "... and the same gradient");
        Assert.That(fromInt32.Loss, Is.EqualTo(fromFloat.Loss), "int32 labels");
        Assert.That(fromInt32.Grad, Is.EqualTo(fromFloat.Grad));
        Assert.That(fromColumn.Loss, Is.EqualTo(fromFloat.Loss), "[N, 1] labels");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void A_bad_label_with_a_known_range_is_refused_before_any_kernel(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 }, device);
        var high = Tensor.FromArray(new long[] { 0, 1, 3, 2 }, device);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Losses.SparseCategoricalCrossEntropy(logits, high))!;
        Assert.That(e.Message, Does.Contain("label 3").And.Contain("[0, 3)").And.Contain("without a device read"));
        // The range survives layout ops: a reshape, a move, a join.
        var moved = Tensor.FromArray(new int[] { -1, 0, 1, 2 }, new long[] { 2, 2 }, device).To(Device.Cpu).To(device).Reshape(4);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => Losses.SparseCategoricalCrossEntropy(logits, moved))!;
        Assert.That(e.Message, Does.Contain("label -1"));
        var joined = Tensor.Concatenate(new[] { Tensor.FromArray(new long[] { 0, 1 }, device), Tensor.FromArray(new long[] { 2, 7 }, device) });
        Assert.Throws<ArgumentOutOfRangeException>(() => Losses.SparseCategoricalCrossEntropy(logits, joined));
        // A slice keeps bounds but not exactness: labels 0..2 cut from 0..5 are fine.
        var sliced = Tensor.FromArray(new long[] { 0, 1, 2, 0, 5 }, device).Narrow(0, 0, 4);
        Assert.That(float.IsFinite(Losses.SparseCategoricalCrossEntropy(logits, sliced).Item()), "valid labels of a slice");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void A_bad_label_computed_on_the_device_gives_a_NaN_loss(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 }, device);
        // A cast result has no known range: the kernel's documented behaviour applies (NaN for that row).
        var computed = Tensor.FromArray(new float[] { 0, 1, 9, 2 }, device).To(Dtype.Int64);
        Assert.That(float.IsNaN(Losses.SparseCategoricalCrossEntropy(logits, computed).Item()), "NaN loss, not a wrong number");
        var good = Tensor.FromArray(new float[] { 0, 1, 2, 2 }, device).To(Dtype.Int64);
        Assert.That(float.IsFinite(Losses.SparseCategoricalCrossEntropy(logits, good).Item()));
    }

    [Test]
    public void Labels_on_another_device_or_of_the_wrong_shape_are_refused()
    {
        using var scope = new DisposeScope();
        var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 });
        var e = Assert.Throws<ShapeMismatchException>(() => Losses.SparseCategoricalCrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1, 2 })))!;
        Assert.That(e.Message, Does.Contain("3 labels").And.Contain("4 rows"));
        Assert.Throws<ShapeMismatchException>(() => Losses.SparseCategoricalCrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1, 2, 0 }, new long[] { 2, 2 })));
        if (Device.TryGet("opencl:0", out var other))
            Assert.Throws<DeviceMismatchException>(() => Losses.SparseCategoricalCrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1, 2, 0 }, other)));
    }

    // ---- Ids on the device: Embedding and IndexSelect ---------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Embedding_and_IndexSelect_take_integer_id_tensors(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        using var embedding = new Embedding(7, 5, paddingIdx: 0, seed: 3, device: device);
        long[] ids = { 6, 0, 2, 2, 5, 1 };
        var fromSpan = embedding.Forward(ids, new long[] { 2, 3 });
        var fromInt64 = embedding.Forward(Tensor.FromArray(ids, new long[] { 2, 3 }, device));
        var fromInt32 = embedding.Forward(Tensor.FromArray(ids.Select(v => (int)v).ToArray(), new long[] { 2, 3 }, device));
        Assert.That(fromInt64.ShapeArray, Is.EqualTo(new long[] { 2, 3, 5 }));
        Assert.That(fromInt64.ToArray(), Is.EqualTo(fromSpan.ToArray()), "int64 ids");
        Assert.That(fromInt32.ToArray(), Is.EqualTo(fromSpan.ToArray()), "int32 ids");

        // The gradient through int ids equals the one through host ids (the same scatter-add).
        fromInt64.Sum().Backward();
        var gradInt = embedding.Weight.Grad!.ToArray();
        embedding.Weight.ZeroGrad();
        fromSpan.Sum().Backward();
        Assert.That(gradInt, Is.EqualTo(embedding.Weight.Grad!.ToArray()), "gradient");

        var table = Tensor.FromArray(Enumerable.Range(0, 12).Select(v => (float)v).ToArray(), new long[] { 4, 3 }, device);
        var picked = table.IndexSelect(1, Tensor.FromArray(new int[] { 2, 0 }, device));
        Assert.That(picked.ToArray(), Is.EqualTo(new float[] { 2, 0, 5, 3, 8, 6, 11, 9 }));

        // A bad id: named with its value; known range -> no device read; unknown range -> libkernels' check.
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => embedding.Forward(Tensor.FromArray(new long[] { 1, 7 }, device)))!;
        Assert.That(e.Message, Does.Contain("index 7").And.Contain("[0, 7)"));
        var computed = Tensor.FromArray(new float[] { 1, 9 }, device).To(Dtype.Int64);
        var e2 = Assert.Throws<KernelsArgumentException>(() => embedding.Forward(computed))!;
        Assert.That(e2.Message, Does.Contain("indices[1] = 9"));
        Assert.Throws<DtypeMismatchException>(() => table.IndexSelect(0, Tensor.FromArray(new float[] { 0 }, device)));
    }

    // ---- Metrics, data, Compile by name --------------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Accuracy_on_integer_targets_matches_the_host_path(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        var r = new Random(7);
        var onDevice = new Accuracy();
        var onHost = new Accuracy();
        for (int batch = 0; batch < 3; batch++)
        {
            int n = 17 + batch;
            var logits = Tensor.FromArray(Enumerable.Range(0, n * 5).Select(_ => (float)r.NextDouble()).ToArray(), new long[] { n, 5 }, device);
            var labels = Enumerable.Range(0, n).Select(_ => (long)r.Next(5)).ToArray();
            onDevice.Update(logits, Tensor.FromArray(labels, device));
            onHost.Update(logits, Tensor.FromArray(labels.Select(v => (float)v).ToArray(), device));
        }
        Assert.That(onHost.Result(), Is.GreaterThan(0.05).And.LessThan(0.6), "a non-trivial accuracy");
        Assert.That(onDevice.Result(), Is.EqualTo(onHost.Result()));
        Assert.That(onDevice.Counts.Length, Is.EqualTo(0), "the device path fills no confusion matrix");
        onDevice.Reset();
        Assert.That(double.IsNaN(onDevice.Result()), "reset");
    }

    [Test]
    public void The_DataLoader_yields_int64_targets_for_integer_datasets()
    {
        var features = Enumerable.Range(0, 20).Select(v => (float)v).ToArray();
        var labels = Enumerable.Range(0, 10).Select(v => (long)(v * 1000003)).ToArray();  // beyond float32's exact integers
        var data = new ArrayDataset(features, new long[] { 2 }, labels);
        Assert.That(data.TargetDtype, Is.EqualTo(Dtype.Int64));
        var loader = new DataLoader(data.Subset(Enumerable.Range(0, 10).ToArray()), 4, shuffle: true, seed: 3);
        int seen = 0;
        foreach (var batch in loader.Batches())
        {
            using (batch)
            {
                Assert.That(batch.Targets.Dtype, Is.EqualTo(Dtype.Int64));
                Assert.That(batch.Targets.ShapeArray, Is.EqualTo(new long[] { batch.Size }));
                var x = batch.Inputs.ToArray();
                var y = batch.Targets.ToArray<long>();
                for (int i = 0; i < batch.Size; i++) Assert.That(y[i], Is.EqualTo((long)(x[2 * i] / 2) * 1000003), "target of its sample");
                seen += batch.Size;
            }
        }
        Assert.That(seen, Is.EqualTo(10));
        // A float view of the same dataset still works for float consumers.
        Span<float> f = stackalloc float[2], t = stackalloc float[1];
        data.Get(3, f, t);
        Assert.That(t[0], Is.EqualTo(3000009f));
        var regression = new ArrayDataset(features, new long[] { 2 }, new float[10]);
        Assert.That(regression.TargetDtype, Is.EqualTo(Dtype.Float32));
        Assert.Throws<NotSupportedException>(() => regression.Get(0, new float[2], new long[1]));
    }

    [Test]
    public void Compile_takes_losses_and_metrics_by_their_Keras_names()
    {
        var r = new Random(1);
        var x = new float[200 * 2];
        var y = new long[200];
        for (int i = 0; i < 200; i++)
        {
            y[i] = i % 2;
            x[2 * i] = (float)(y[i] * 2 - 1 + 0.3 * (r.NextDouble() - 0.5));
            x[2 * i + 1] = (float)(r.NextDouble() - 0.5);
        }
        using var network = new Sequential(new Dense(2, 8, seed: 1), Activation.Tanh(), new Dense(8, 2, seed: 2));
        using var model = new Model(network);
        model.Compile(new Adam(network.Parameters(), 0.05f), "sparse_categorical_crossentropy", "accuracy", "precision");
        var history = model.Fit(new ArrayDataset(x, new long[] { 2 }, y), epochs: 5, batchSize: 20, verbose: 0);
        Assert.That(history["loss"][^1], Is.LessThan(history["loss"][0]));
        Assert.That(history["accuracy"][^1], Is.GreaterThan(0.95));
        Assert.That(history.Values.Keys, Does.Contain("precision"));

        foreach (var loss in Losses.KnownNames) Assert.That(Losses.FromName(loss), Is.Not.Null, loss);
        foreach (var metric in Metric.KnownNames) Assert.That(Metric.FromName(metric), Is.Not.Null, metric);
        Assert.That(Metric.FromName("ACC"), Is.InstanceOf<Accuracy>());
        var e = Assert.Throws<ArgumentException>(() => model.Compile(new Sgd(network.Parameters(), 0.1f), "hinge"))!;
        Assert.That(e.Message, Does.Contain("'hinge'").And.Contain("sparse_categorical_crossentropy").And.Contain("mse"));
        var e2 = Assert.Throws<ArgumentException>(() => model.Compile(new Sgd(network.Parameters(), 0.1f), "mse", "auc"))!;
        Assert.That(e2.Message, Does.Contain("'auc'").And.Contain("accuracy"));
    }
}
