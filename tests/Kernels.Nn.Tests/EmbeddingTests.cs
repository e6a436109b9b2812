using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// IndexSelect and the Embedding layer (the gather-rows kernel and its deterministic scatter-add
/// backward) on every backend: values exact (a gather is a copy), gradients against float64 finite
/// differences, the padding row, determinism (two backward passes give the same bits, and every backend
/// the CPU's bits: the kernels add in one fixed order), and bad ids. A backend that is absent is skipped
/// with its reason, or fails when KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1 says it must be there.
/// </summary>
[TestFixture]
public class EmbeddingTests
{
    private static float[] RandomFloats(long n, int seed) => Random(n, seed, -3, 3).Select(v => (float)v).ToArray();

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void IndexSelect_copies_the_selected_slices_exactly(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var values = RandomFloats(5 * 3 * 4, 1);
        using var x = Tensor.FromArray(values, new long[] { 5, 3, 4 }, device);
        long[] ids = { 4, 0, 4, 2, 2 };  // repeats, out of order
        using var rows = x.IndexSelect(0, ids);
        Assert.That(rows.ShapeArray, Is.EqualTo(new long[] { 5, 3, 4 }));
        Assert.That(rows.ToArray(), Is.EqualTo(ids.SelectMany(i => values.Skip((int)i * 12).Take(12)).ToArray()), "dim 0");

        using var one = x.IndexSelect(0, new long[] { 3 });
        Assert.That(one.ToArray(), Is.EqualTo(values.Skip(36).Take(12).ToArray()), "a single index");
        using var none = x.IndexSelect(0, ReadOnlySpan<long>.Empty);
        Assert.That(none.ShapeArray, Is.EqualTo(new long[] { 0, 3, 4 }), "no indices");

        // Along the last dimension (negative dim): y[a, b, k] = x[a, b, ids[k]].
        long[] cols = { 3, 3, 0 };
        using var last = x.IndexSelect(-1, cols);
        Assert.That(last.ShapeArray, Is.EqualTo(new long[] { 5, 3, 3 }));
        var want = new float[5 * 3 * 3];
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 3; b++)
                for (int k = 0; k < 3; k++) want[(a * 3 + b) * 3 + k] = values[(a * 3 + b) * 4 + cols[k]];
        Assert.That(last.ToArray(), Is.EqualTo(want), "dim -1");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void IndexSelect_gradient_matches_float64_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] ids = { 2, 0, 2, 2, 5, 1 };  // row 3 and 4 unused (zero gradient), row 2 three times
        Check(t => t[0].IndexSelect(0, ids).Tanh(),
              x => ids.SelectMany(i => Enumerable.Range(0, 7).Select(c => Math.Tanh(x[0][i * 7 + c]))).ToArray(),
              new[] { (Random(6 * 7, 3), new long[] { 6, 7 }) }, device);
        long[] cols = { 1, 1, 0 };
        Check(t => t[0].IndexSelect(1, cols).Square(),
              x => Enumerable.Range(0, 4).SelectMany(r => cols.Select(c => x[0][r * 2 + c] * x[0][r * 2 + c])).ToArray(),
              new[] { (Random(4 * 2, 4), new long[] { 4, 2 }) }, device);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Embedding_looks_up_rows_of_its_weight_in_the_ids_shape(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var embedding = new Embedding(10, 6, seed: 3, device: device);
        var weight = embedding.Weight.ToArray();
        long[] ids = { 9, 0, 3, 3, 7, 1 };
        using var y = embedding.Forward(ids, new long[] { 2, 3 });
        Assert.That(y.ShapeArray, Is.EqualTo(new long[] { 2, 3, 6 }));
        Assert.That(y.ToArray(), Is.EqualTo(ids.SelectMany(i => weight.Skip((int)i * 6).Take(6)).ToArray()));

        // The float32 form (ids as datasets yield them) gives the same result.
        using var idTensor = Tensor.FromArray(ids.Select(i => (float)i).ToArray(), new long[] { 2, 3 }, device);
        using var y2 = embedding.Forward(idTensor);
        Assert.That(y2.ToArray(), Is.EqualTo(y.ToArray()));
    }

    [Test]
    public void Embedding_weight_is_standard_normal_as_in_PyTorch()
    {
        using var embedding = new Embedding(1000, 64, seed: 11);
        var w = embedding.Weight.ToArray();
        double mean = w.Average(v => (double)v), variance = w.Average(v => (v - mean) * (v - mean));
        // 64,000 samples: the mean's standard error is 0.004, the variance's about 0.0056.
        Assert.That(mean, Is.EqualTo(0).Within(0.02));
        Assert.That(variance, Is.EqualTo(1).Within(0.03));
    }

    /// <summary>
    /// The gradient of sum(w * tanh(embedding(ids))) with respect to the weight against float64 central
    /// differences of the same function, with a padding row (which must get exactly zero) and repeated ids.
    /// Returns the gradient's bits for the determinism checks.
    /// </summary>
    private static float[] EmbeddingGradient(Device device, long? paddingIdx)
    {
        const long num = 7, dim = 5;
        long[] ids = { 3, 1, 3, 6, 0, 3, 1, 6, 6, 2, 3 };
        using var scope = new DisposeScope();
        var embedding = new Embedding(num, dim, paddingIdx, seed: 5, device: device);
        var y = embedding.Forward(ids, new long[] { 1, ids.Length });
        var w = Random(y.Count, 17);
        y.Tanh().Mul(Tensor.FromArray(w.Select(v => (float)v).ToArray(), y.ShapeArray, device)).Sum().Backward();
        var grad = embedding.Weight.Grad!.ToArray();

        var table = embedding.Weight.ToArray().Select(v => (double)v).ToArray();
        double Loss(double[] t)
        {
            double s = 0;
            for (int i = 0; i < ids.Length; i++)
                for (int c = 0; c < dim; c++) s += w[i * dim + c] * Math.Tanh(t[ids[i] * dim + c]);
            return s;
        }
        const double h = 1e-6;
        for (int e = 0; e < table.Length; e++)
        {
            double numeric = 0;
            if (paddingIdx is null || e / dim != paddingIdx)
            {
                double saved = table[e];
                table[e] = saved + h;
                double up = Loss(table);
                table[e] = saved - h;
                double down = Loss(table);
                table[e] = saved;
                numeric = (up - down) / (2 * h);
            }
            Assert.That(grad[e], Is.EqualTo(numeric).Within(2e-3 + 2e-3 * Math.Abs(numeric)),
                        $"d loss / d weight[{e / dim}, {e % dim}] on {device.Name} (padding {paddingIdx})");
        }
        return grad;
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Embedding_gradient_matches_float64_finite_differences_and_skips_the_padding_row(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        EmbeddingGradient(device, null);
        var grad = EmbeddingGradient(device, 6);
        Assert.That(grad.Skip(6 * 5).Take(5), Is.All.EqualTo(0f), "the padding row's gradient");
    }

    /// <summary>The scatter-add alone: the gradient of IndexSelect for a given upstream gradient (so every
    /// backend gets the same float32 inputs), 2,000 positions over 37 rows of 33 (many repeats).</summary>
    private static float[] ScatterAddGradient(Device device)
    {
        var r = new Random(21);
        var ids = Enumerable.Range(0, 2000).Select(_ => (long)(r.NextDouble() * r.NextDouble() * 37)).ToArray();
        using var scope = new DisposeScope();
        var table = Tensor.Zeros(new long[] { 37, 33 }, device);
        table.RequiresGrad = true;
        table.IndexSelect(0, ids).Backward(Tensor.FromArray(RandomFloats(2000 * 33, 22), new long[] { 2000, 33 }, device));
        return table.Grad!.ToArray();
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Gradients_have_the_same_bits_on_every_run_and_every_backend(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        static int[] Bits(float[] v) => v.Select(BitConverter.SingleToInt32Bits).ToArray();
        var firstRun = Bits(EmbeddingGradient(device, 3));   // two separate runs (NUnit2009 flags the same expression on both sides)
        Assert.That(Bits(EmbeddingGradient(device, 3)), Is.EqualTo(firstRun), "Embedding, two runs");
        var first = ScatterAddGradient(device);
        Assert.That(Bits(ScatterAddGradient(device)), Is.EqualTo(Bits(first)), "IndexSelect backward, two runs");
        Assert.That(Bits(first), Is.EqualTo(Bits(ScatterAddGradient(Device.Cpu))), "IndexSelect backward, this backend vs the CPU");
    }

    [Test]
    public void Embedding_padding_row_starts_at_zero_and_negative_padding_counts_from_the_end()
    {
        using var embedding = new Embedding(4, 3, paddingIdx: -1);
        Assert.That(embedding.PaddingIdx, Is.EqualTo(3));
        Assert.That(embedding.Weight.ToArray().Skip(9), Is.All.EqualTo(0f));
        Assert.That(embedding.Weight.ToArray().Take(9), Has.None.EqualTo(0f));
    }

    [Test]
    public void Bad_ids_and_sizes_name_the_value_and_its_position()
    {
        using var embedding = new Embedding(4, 3);
        var high = Assert.Throws<ArgumentOutOfRangeException>(() => embedding.Forward(new long[] { 0, 1, 2, 7 }))!;
        Assert.That(high.Message, Does.Contain("index 7 at position 3 is outside [0, 4)"));
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => embedding.Forward(new long[] { -1 }))!;
        Assert.That(negative.Message, Does.Contain("index -1 at position 0"));
        using var fractional = Tensor.FromArray(new[] { 1f, 2.5f });
        var notWhole = Assert.Throws<ArgumentOutOfRangeException>(() => embedding.Forward(fractional))!;
        Assert.That(notWhole.Message, Does.Contain("id 2.5 at position 1 is not a whole number in [0, 4)"));
        var shape = Assert.Throws<ShapeMismatchException>(() => embedding.Forward(new long[] { 1, 2, 3 }, new long[] { 2, 2 }))!;
        Assert.That(shape.Message, Does.Contain("3 ids do not fill the shape [2, 2]"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Embedding(4, 3, paddingIdx: 4))!.Message,
                    Does.Contain("paddingIdx = 4 is outside [-4, 4)"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Embedding(0, 3));
        using var x = Tensor.Zeros(new long[] { 2, 3 });
        Assert.Throws<ArgumentOutOfRangeException>(() => x.IndexSelect(2, new long[] { 0 }));

        // The C API checks too (a caller that skips the C# layer): the status names the index and position.
        using var table = Tensor.Zeros(new long[] { 4, 3 });
        using var y = Tensor.Zeros(new long[] { 2, 3 });
        using var ids = DeviceBuffer.Allocate(Device.Cpu, 2 * sizeof(long));
        ids.Write<long>(new long[] { 1, 9 });
        var native = Assert.Throws<KernelsArgumentException>(() => Ops.GatherRows(table.Buffer, 4, 3, ids, 2, y.Buffer))!;
        Assert.That(native.Message, Does.Contain("indices[1] = 9 is outside [0, 4)"));
        Assert.That(y.ToArray(), Is.All.EqualTo(0f), "y untouched after the error");
    }
}
