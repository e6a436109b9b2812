using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// Permute and Transpose (the strided-copy kernel) on every backend: the values against the index
/// formula written here (exact: a copy), gradients against float64 finite differences, and bad orders.
/// A backend that is absent is skipped with its reason, or fails when KERNELS_REQUIRE_CUDA=1 /
/// KERNELS_REQUIRE_OPENCL=1 says it must be there.
/// </summary>
[TestFixture]
public class PermuteTests
{

    // Shapes that break tiling: empty, 1, primes, ragged tiles, a batch of transposes, rank 5 and 0.
    private static readonly (long[] Shape, int[] Order)[] Cases =
    {
        (new long[] { 0, 3 }, new[] { 1, 0 }),
        (new long[] { 7 }, new[] { 0 }),
        (new long[] { 3, 5 }, new[] { 1, 0 }),
        (new long[] { 67, 129 }, new[] { 1, 0 }),
        (new long[] { 3, 33, 65 }, new[] { 0, 2, 1 }),
        (new long[] { 5, 1, 37 }, new[] { 2, 0, 1 }),
        (new long[] { 4, 6, 10 }, new[] { 1, 0, 2 }),
        (new long[] { 2, 3, 1, 5, 7 }, new[] { 4, 0, 3, 2, 1 }),
        (Array.Empty<long>(), Array.Empty<int>()),
    };

    /// <summary>y[i] = x[the index of i with its coordinates put back in x's order], row-major.</summary>
    private static float[] Reference(float[] x, long[] shape, int[] order)
    {
        int rank = shape.Length;
        var outShape = order.Select(d => shape[d]).ToArray();
        var y = new float[x.Length];
        var index = new long[rank];
        for (long i = 0; i < x.Length; i++)
        {
            long rest = i;
            for (int d = rank - 1; d >= 0; d--)
            {
                index[d] = rest % outShape[d];
                rest /= outShape[d];
            }
            long source = 0;
            for (int d = 0; d < rank; d++)
            {
                long coordinate = index[Array.IndexOf(order, d)];
                source = source * shape[d] + coordinate;
            }
            y[i] = x[source];
        }
        return y;
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Permute_matches_the_index_formula_exactly(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        foreach (var (shape, order) in Cases)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var values = Random(count, 5, -3, 3).Select(v => (float)v).ToArray();
            using var x = Tensor.FromArray(values, shape, device);
            using var y = x.Permute(order);
            string what = $"Permute([{string.Join(", ", shape)}], ({string.Join(", ", order)})) on {name}";
            Assert.That(y.ShapeArray, Is.EqualTo(order.Select(d => shape[d]).ToArray()), what + ": shape");
            Assert.That(y.ToArray(), Is.EqualTo(Reference(values, shape, order)), what);
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Transpose_swaps_two_dimensions_and_counts_negative_ones_from_the_end(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        var values = Random(2 * 3 * 4, 6).Select(v => (float)v).ToArray();
        using var x = Tensor.FromArray(values, new long[] { 2, 3, 4 }, device);
        using var y = x.Transpose(-1, 0);
        Assert.That(y.ShapeArray, Is.EqualTo(new long[] { 4, 3, 2 }));
        Assert.That(y.ToArray(), Is.EqualTo(Reference(values, new long[] { 2, 3, 4 }, new[] { 2, 1, 0 })));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Permute_gradient_matches_float64_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] shape = { 2, 3, 5 };
        int[] order = { 2, 0, 1 };
        // Square after the permute, so the gradient depends on where each element went.
        Check(t => t[0].Permute(order).Square(),
              x => PermutedDouble(x[0], shape, order).Select(v => v * v).ToArray(),
              new[] { (Random(30, 7), shape) }, device);
        Check(t => t[0].Transpose(0, 1).Exp(),
              x => PermutedDouble(x[0], new long[] { 3, 5 }, new[] { 1, 0 }).Select(Math.Exp).ToArray(),
              new[] { (Random(15, 8), new long[] { 3, 5 }) }, device);
    }

    /// <summary>The float64 permute of the reference side (the same formula as <see cref="Reference"/>).</summary>
    private static double[] PermutedDouble(double[] x, long[] shape, int[] order)
    {
        var positions = Reference(Enumerable.Range(0, x.Length).Select(i => (float)i).ToArray(), shape, order);
        return positions.Select(p => x[(int)p]).ToArray();
    }

    [Test]
    public void Bad_orders_name_the_order_and_the_shape()
    {
        using var x = Tensor.Zeros(new long[] { 2, 3 });
        var wrongLength = Assert.Throws<ArgumentException>(() => x.Permute(0))!;
        Assert.That(wrongLength.Message, Does.Contain("1 dimensions given for a tensor of rank 2"));
        var repeated = Assert.Throws<ArgumentException>(() => x.Permute(1, 1))!;
        Assert.That(repeated.Message, Does.Contain("(1, 1) is not an order of the dimensions of [2, 3]"));
        var outOfRange = Assert.Throws<ArgumentException>(() => x.Permute(0, 2))!;
        Assert.That(outOfRange.Message, Does.Contain("(0, 2)"));
        var transpose = Assert.Throws<ArgumentOutOfRangeException>(() => x.Transpose(0, 2))!;
        Assert.That(transpose.Message, Does.Contain("dimensions -2..1"));
        Assert.That(x.Permute(-1, 0).ShapeArray, Is.EqualTo(new long[] { 3, 2 }), "the tensor stays usable");
    }
}
