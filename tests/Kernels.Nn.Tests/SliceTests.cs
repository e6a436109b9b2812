using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// Narrow / Select / Slice, Concatenate / Stack, Split / Chunk (the strided-copy kernel, reading and
/// writing through strides) on every backend: values against the index formulas written here (exact:
/// copies), gradients against float64 finite differences, awkward shapes (1, primes, empty parts,
/// tiles), and bad input. No PyTorch comparison: /usr/bin/python3 has no torch on this machine, so
/// the references are the plain index formulas below. A backend that is absent is skipped with its
/// reason, or fails when KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1 says it must be there.
/// </summary>
[TestFixture]
public class SliceTests
{
    // ---- references ---------------------------------------------------------------------------------

    private static long Size(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    private static long[] RowMajorStrides(long[] shape)
    {
        var s = new long[shape.Length];
        long stride = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            s[d] = stride;
            stride *= shape[d];
        }
        return s;
    }

    /// <summary>The elements start, start + step, ... (length of them) along d, in row-major order.</summary>
    private static double[] SliceRef(double[] x, long[] shape, int d, long start, long length, long step = 1)
    {
        var outShape = (long[])shape.Clone();
        outShape[d] = length;
        var strides = RowMajorStrides(shape);
        var y = new double[Size(outShape)];
        for (long i = 0; i < y.Length; i++)
        {
            long rest = i, source = 0;
            for (int k = shape.Length - 1; k >= 0; k--)
            {
                long c = rest % outShape[k];
                rest /= outShape[k];
                source += (k == d ? start + c * step : c) * strides[k];
            }
            y[i] = x[source];
        }
        return y;
    }

    /// <summary>Concatenation along d: for each index of the dimensions before d, each part's block in turn.</summary>
    private static double[] ConcatRef(double[][] parts, long[][] shapes, int d)
    {
        long outer = Size(shapes[0][..d]);
        var y = new List<double>();
        for (long o = 0; o < outer; o++)
            for (int p = 0; p < parts.Length; p++)
            {
                long block = Size(shapes[p][d..]);
                y.AddRange(parts[p].Skip((int)(o * block)).Take((int)block));
            }
        return y.ToArray();
    }

    /// <summary>Stacking along d is the concatenation of the parts with a dimension of 1 inserted at d.</summary>
    private static double[] StackRef(double[][] parts, long[] shape, int d)
    {
        var inserted = shape.Take(d).Append(1L).Concat(shape.Skip(d)).ToArray();
        return ConcatRef(parts, parts.Select(_ => inserted).ToArray(), d);
    }

    private static float[] F(double[] v) => v.Select(x => (float)x).ToArray();
    private static double[] D(float[] v) => v.Select(x => (double)x).ToArray();

    private static (Tensor Tensor, double[] Values) Input(long[] shape, int seed, Device device)
    {
        var values = F(Random(Size(shape), seed, -3, 3));
        return (Tensor.FromArray(values, shape, device), D(values));
    }

    // ---- values -------------------------------------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Narrow_Select_and_Slice_match_the_index_formula_exactly(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        // (shape, dim, start, length, step): primes, 1, length 0, negative dims, a slice wide enough for tiles.
        var cases = new (long[] Shape, int Dim, long Start, long Length, long Step)[]
        {
            (new long[] { 5, 7, 3 }, 1, 2, 4, 1),
            (new long[] { 5, 7, 3 }, -1, 2, 1, 1),
            (new long[] { 5, 7, 3 }, 0, 0, 5, 1),
            (new long[] { 5, 7, 3 }, 1, 3, 0, 1),
            (new long[] { 1 }, 0, 0, 1, 1),
            (new long[] { 13 }, 0, 1, 4, 3),
            (new long[] { 2, 11, 5 }, 1, 0, 6, 2),
            (new long[] { 67, 129 }, 1, 31, 70, 1),
            (new long[] { 67, 129 }, 0, 1, 33, 2),
        };
        foreach (var (shape, dim, start, length, step) in cases)
        {
            using var scope = new DisposeScope();
            var (x, values) = Input(shape, 11, device);
            int d = dim < 0 ? dim + shape.Length : dim;
            var want = SliceRef(values, shape, d, start, length, step);
            var wantShape = (long[])shape.Clone();
            wantShape[d] = length;
            string what = $"[{string.Join(", ", shape)}] dim {dim} start {start} length {length} step {step} on {name}";
            var y = step == 1 ? x.Narrow(dim, start, length) : x.Slice(dim, start, start + (length - 1) * step + 1, step);
            Assert.That(y.ShapeArray, Is.EqualTo(wantShape), what + ": shape");
            Assert.That(D(y.ToArray()), Is.EqualTo(want), what);
            if (length == 1)
            {
                var s = x.Select(dim, start);
                Assert.That(s.ShapeArray, Is.EqualTo(shape.Where((_, i) => i != d).ToArray()), what + ": Select shape");
                Assert.That(D(s.ToArray()), Is.EqualTo(want), what + ": Select");
            }
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Negative_indices_and_python_slice_bounds(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        var (x, values) = Input(new long[] { 4, 9 }, 12, device);
        long[] shape = { 4, 9 };
        Assert.That(D(x.Narrow(1, -3, 2).ToArray()), Is.EqualTo(SliceRef(values, shape, 1, 6, 2)), "Narrow start -3");
        Assert.That(D(x.Select(0, -1).ToArray()), Is.EqualTo(SliceRef(values, shape, 0, 3, 1)), "Select index -1");
        Assert.That(D(x.Slice(1, -5, -1).ToArray()), Is.EqualTo(SliceRef(values, shape, 1, 4, 4)), "Slice [-5:-1]");
        Assert.That(D(x.Slice(1, 1, 100, 3).ToArray()), Is.EqualTo(SliceRef(values, shape, 1, 1, 3, 3)), "Slice [1:100:3] clamps the end");
        Assert.That(x.Slice(1, 7, 2).ShapeArray, Is.EqualTo(new long[] { 4, 0 }), "Slice [7:2] is empty");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Concatenate_and_Stack_match_the_index_formula_exactly(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        // Concatenate: (shapes, dim), with an empty part, primes, rank 1, the last dimension, and tiles.
        var concatCases = new (long[][] Shapes, int Dim)[]
        {
            (new[] { new long[] { 2, 3, 4 }, new long[] { 2, 0, 4 }, new long[] { 2, 5, 4 } }, 1),
            (new[] { new long[] { 3, 2 }, new long[] { 3, 7 } }, -1),
            (new[] { new long[] { 7 }, new long[] { 1 }, new long[] { 11 } }, 0),
            (new[] { new long[] { 1, 5 }, new long[] { 4, 5 } }, 0),
            (new[] { new long[] { 33, 65 }, new long[] { 33, 40 } }, 1),
        };
        foreach (var (shapes, dim) in concatCases)
        {
            using var scope = new DisposeScope();
            var inputs = shapes.Select((s, k) => Input(s, 20 + k, device)).ToArray();
            int d = dim < 0 ? dim + shapes[0].Length : dim;
            var y = Tensor.Concatenate(inputs.Select(i => i.Tensor).ToArray(), dim);
            var wantShape = (long[])shapes[0].Clone();
            wantShape[d] = shapes.Sum(s => s[d]);
            string what = $"Concatenate({string.Join(", ", shapes.Select(s => $"[{string.Join(", ", s)}]"))}, {dim}) on {name}";
            Assert.That(y.ShapeArray, Is.EqualTo(wantShape), what + ": shape");
            Assert.That(D(y.ToArray()), Is.EqualTo(ConcatRef(inputs.Select(i => i.Values).ToArray(), shapes, d)), what);
        }
        // Stack: three [5, 3] at every position, and scalars into a vector.
        foreach (int dim in new[] { 0, 1, 2, -1, -3 })
        {
            using var scope = new DisposeScope();
            long[] shape = { 5, 3 };
            var inputs = Enumerable.Range(0, 3).Select(k => Input(shape, 30 + k, device)).ToArray();
            int d = dim < 0 ? dim + 3 : dim;
            var y = Tensor.Stack(inputs.Select(i => i.Tensor).ToArray(), dim);
            var wantShape = shape.Take(d).Append(3L).Concat(shape.Skip(d)).ToArray();
            Assert.That(y.ShapeArray, Is.EqualTo(wantShape), $"Stack dim {dim} on {name}: shape");
            Assert.That(D(y.ToArray()), Is.EqualTo(StackRef(inputs.Select(i => i.Values).ToArray(), shape, d)), $"Stack dim {dim} on {name}");
        }
        using (var scope = new DisposeScope())
        {
            var scalars = new[] { 1.5f, -2f, 7f, 0.25f }.Select(v => Tensor.Scalar(v, device)).ToArray();
            var v = Tensor.Stack(scalars);
            Assert.That(v.ShapeArray, Is.EqualTo(new long[] { 4 }));
            Assert.That(v.ToArray(), Is.EqualTo(new[] { 1.5f, -2f, 7f, 0.25f }), $"Stack of scalars on {name}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Split_and_Chunk_cut_like_pytorch_and_concatenate_back(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var scope = new DisposeScope();
        long[] shape = { 3, 7, 2 };
        var (x, values) = Input(shape, 40, device);
        var sized = x.Split(new long[] { 2, 0, 5 }, 1);
        Assert.That(sized.Select(p => p.ShapeArray[1]), Is.EqualTo(new long[] { 2, 0, 5 }), "Split by sizes");
        Assert.That(D(sized[2].ToArray()), Is.EqualTo(SliceRef(values, shape, 1, 2, 5)), "Split by sizes: part 2");
        Assert.That(x.Split(3, -2).Select(p => p.ShapeArray[1]), Is.EqualTo(new long[] { 3, 3, 1 }), "Split(3) of 7");
        Assert.That(x.Chunk(3, 1).Select(p => p.ShapeArray[1]), Is.EqualTo(new long[] { 3, 3, 1 }), "Chunk(3) of 7");
        Assert.That(x.Chunk(4, 1).Select(p => p.ShapeArray[1]), Is.EqualTo(new long[] { 2, 2, 2, 1 }), "Chunk(4) of 7");
        Assert.That(x.Chunk(5, 0).Select(p => p.ShapeArray[0]), Is.EqualTo(new long[] { 1, 1, 1 }), "Chunk(5) of 3: fewer parts");
        var back = Tensor.Concatenate(x.Chunk(4, 1), 1);
        Assert.That(back.ToArray(), Is.EqualTo(x.ToArray()), "Concatenate(Chunk(x)) == x");
    }

    // ---- gradients ----------------------------------------------------------------------------------

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Slice_gradients_match_float64_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] shape = { 3, 7, 2 };
        var x = new[] { (Random(42, 50), shape) };
        // Square after the slice, so each gradient element depends on where it came from; the elements
        // outside the slice must get exactly 0.
        Check(t => t[0].Narrow(1, 2, 4).Square(), v => Map(SliceRef(v[0], shape, 1, 2, 4), a => a * a), x, device);
        Check(t => t[0].Select(-1, 1).Square(), v => Map(SliceRef(v[0], shape, 2, 1, 1), a => a * a), x, device);
        Check(t => t[0].Slice(1, 1, 7, 2).Exp(), v => Map(SliceRef(v[0], shape, 1, 1, 3, 2), Math.Exp), x, device);
        Check(t => t[0].Narrow(0, 2, 1).Square(), v => Map(SliceRef(v[0], shape, 0, 2, 1), a => a * a), x, device);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Join_gradients_match_float64_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] a = { 2, 3, 5 }, b = { 2, 1, 5 };
        var ab = new[] { (Random(30, 51), a), (Random(10, 52), b) };
        Check(t => Tensor.Concatenate(new[] { t[0], t[1] }, 1).Square(),
              v => Map(ConcatRef(v, new[] { a, b }, 1), x => x * x), ab, device);
        // The same tensor twice: its gradient is the sum of both slices of g.
        Check(t => Tensor.Concatenate(new[] { t[0], t[0].Exp() }, -1).Square(),
              v => Map(ConcatRef(new[] { v[0], Map(v[0], Math.Exp) }, new[] { a, a }, 2), x => x * x),
              new[] { (Random(30, 53), a) }, device);
        long[] s = { 3, 2 };
        var three = new[] { (Random(6, 54), s), (Random(6, 55), s), (Random(6, 56), s) };
        foreach (int dim in new[] { 0, 1, -1 })
        {
            int d = dim < 0 ? dim + 3 : dim;
            Check(t => Tensor.Stack(t, dim).Square(), v => Map(StackRef(v, s, d), x => x * x), three, device);
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Split_gradients_match_float64_finite_differences(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        long[] shape = { 2, 6, 3 };
        var x = new[] { (Random(36, 60), shape) };
        // Part 1 unused: its slice of the gradient must be 0; parts 2 and 0 reordered and transformed.
        Check(t =>
              {
                  var p = t[0].Split(new long[] { 2, 1, 3 }, 1);
                  return Tensor.Concatenate(new[] { p[2].Square(), p[0].Exp() }, 1);
              },
              v => ConcatRef(new[] { Map(SliceRef(v[0], shape, 1, 3, 3), a => a * a), Map(SliceRef(v[0], shape, 1, 0, 2), Math.Exp) },
                             new[] { new long[] { 2, 3, 3 }, new long[] { 2, 2, 3 } }, 1),
              x, device);
        Check(t => t[0].Chunk(2, -1)[1].Square(), v => Map(SliceRef(v[0], shape, 2, 2, 1), a => a * a), x, device);
    }

    [Test]
    public void Joins_give_no_gradient_to_parts_that_need_none()
    {
        using var scope = new DisposeScope();
        var a = Tensor.FromArray(new[] { 1f, 2f, 3f, 4f }, new long[] { 2, 2 });
        var b = Tensor.FromArray(new[] { 5f, 6f }, new long[] { 1, 2 });
        a.RequiresGrad = true;
        Tensor.Concatenate(new[] { b, a }, 0).Square().Sum().Backward();
        Assert.That(a.Grad!.ToArray(), Is.EqualTo(new[] { 2f, 4f, 6f, 8f }), "d/da sum(cat(b, a)^2) = 2a");
        Assert.That(b.Grad, Is.Null, "b does not require gradients");
        var c = Tensor.FromArray(new[] { 7f, 8f }, new long[] { 2 });
        var d = Tensor.FromArray(new[] { 1f, -1f }, new long[] { 2 });
        d.RequiresGrad = true;
        Tensor.Stack(new[] { c, d }, 1).Mul(3f).Sum().Backward();
        Assert.That(d.Grad!.ToArray(), Is.EqualTo(new[] { 3f, 3f }));
        Assert.That(c.Grad, Is.Null);
    }

    // ---- bad input ----------------------------------------------------------------------------------

    [Test]
    public void Bad_slices_name_the_shape_and_the_bounds()
    {
        using var scope = new DisposeScope();
        var x = Tensor.Zeros(new long[] { 4, 6 });
        var past = Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(1, 4, 3))!;
        Assert.That(past.Message, Does.Contain("Narrow(1, 4, 3)").And.Contain("[4, 6]").And.Contain("6 elements"));
        Assert.That(past.ParamName, Is.EqualTo("length"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(0, -5, 1))!.ParamName, Is.EqualTo("start"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(0, 0, -1))!.ParamName, Is.EqualTo("length"));
        var dim = Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(2, 0, 1))!;
        Assert.That(dim.Message, Does.Contain("dimension 2 of a tensor of rank 2 [4, 6]").And.Contain("-2..1"));
        var select = Assert.Throws<ArgumentOutOfRangeException>(() => x.Select(0, 4))!;
        Assert.That(select.Message, Does.Contain("Select(0, 4)").And.Contain("indices -4..3"));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.Select(-3, 0));
        var step = Assert.Throws<ArgumentOutOfRangeException>(() => x.Slice(1, 0, 6, 0))!;
        Assert.That(step.Message, Does.Contain("step must be positive"));
        var scalar = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Scalar(1f).Narrow(0, 0, 1))!;
        Assert.That(scalar.Message, Does.Contain("rank 0"));
        Assert.That(x.Narrow(-1, 1, 2).ShapeArray, Is.EqualTo(new long[] { 4, 2 }), "the tensor stays usable");
    }

    [Test]
    public void Bad_joins_and_splits_name_the_shapes()
    {
        using var scope = new DisposeScope();
        var a = Tensor.Zeros(new long[] { 2, 3 });
        var b = Tensor.Zeros(new long[] { 3, 3 });
        var concat = Assert.Throws<ShapeMismatchException>(() => Tensor.Concatenate(new[] { a, b }, 1))!;
        Assert.That(concat.Message, Does.Contain("Concatenate along dimension 1").And.Contain("[2, 3], [3, 3]"));
        var rank = Assert.Throws<ShapeMismatchException>(() => Tensor.Concatenate(new[] { a, Tensor.Zeros(new long[] { 2 }) }, 0))!;
        Assert.That(rank.Message, Does.Contain("[2, 3], [2]"));
        Assert.That(Tensor.Concatenate(new[] { a, b }, 0).ShapeArray, Is.EqualTo(new long[] { 5, 3 }), "dimension 0 may differ");
        var empty = Assert.Throws<ArgumentException>(() => Tensor.Concatenate(Array.Empty<Tensor>()))!;
        Assert.That(empty.Message, Does.Contain("no tensors given"));
        Assert.Throws<ArgumentNullException>(() => Tensor.Concatenate(new[] { a, null! }));
        var stack = Assert.Throws<ShapeMismatchException>(() => Tensor.Stack(new[] { a, b }))!;
        Assert.That(stack.Message, Does.Contain("Stack").And.Contain("[2, 3], [3, 3]"));
        var stackDim = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Stack(new[] { a, a }, 3))!;
        Assert.That(stackDim.Message, Does.Contain("-3..2"));
        var split = Assert.Throws<ArgumentException>(() => b.Split(new long[] { 1, 1 }, 0))!;
        Assert.That(split.Message, Does.Contain("(1, 1)").And.Contain("add up to 3").And.Contain("[3, 3]"));
        Assert.Throws<ArgumentException>(() => b.Split(new long[] { 4, -1 }, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => b.Split(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => b.Chunk(0, 0));
        if (Device.TryGet("opencl:0", out var other))
        {
            var elsewhere = Tensor.Zeros(new long[] { 2, 3 }, other);
            var devices = Assert.Throws<DeviceMismatchException>(() => Tensor.Concatenate(new[] { a, elsewhere }))!;
            Assert.That(devices.Message, Does.Contain("cpu").And.Contain("opencl:0"));
        }
    }

    [Test]
    public void A_view_copy_that_would_write_an_element_twice_is_refused_by_the_library()
    {
        using var scope = new DisposeScope();
        var x = Tensor.Ones(new long[] { 2, 2 });
        var y = Tensor.Zeros(new long[] { 4 });
        var overlap = Assert.Throws<KernelsArgumentException>(
            () => Ops.StridedCopy(x.Buffer, 0, new long[] { 2, 1 }, y.Buffer, 0, new long[] { 1, 1 }, new long[] { 2, 2 }))!;
        Assert.That(overlap.Message, Does.Contain("more than once").And.Contain("y_strides [1, 1]"));
        var past = Assert.Throws<ShapeMismatchException>(
            () => Ops.StridedCopy(x.Buffer, 0, new long[] { 2, 1 }, y.Buffer, 1, new long[] { 2, 1 }, new long[] { 2, 2 }))!;
        Assert.That(past.Message, Does.Contain("y_offset = 1"));
        Assert.That(y.ToArray(), Is.EqualTo(new float[4]), "nothing was written");
    }
}
