using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>Every differentiable operation against float64 finite differences (see <see cref="GradCheck"/>).</summary>
[TestFixture]
public class GradientTests
{
    private static readonly long[] Shape = { 3, 5 };

    public static IEnumerable<TestCaseData> UnaryCases()
    {
        // name, tensor op, float64 reference, input range (inside the domain, away from kinks)
        yield return Case("neg", x => x.Neg(), v => -v);
        yield return Case("abs", x => x.Abs(), Math.Abs, 0.1, 1);
        yield return Case("abs_negative", x => x.Abs(), Math.Abs, -1, -0.1);
        yield return Case("exp", x => x.Exp(), Math.Exp);
        yield return Case("log", x => x.Log(), Math.Log, 0.2, 3);
        yield return Case("sqrt", x => x.Sqrt(), Math.Sqrt, 0.2, 3);
        yield return Case("rsqrt", x => x.Rsqrt(), v => 1 / Math.Sqrt(v), 0.3, 3);
        yield return Case("square", x => x.Square(), v => v * v);
        yield return Case("reciprocal", x => x.Reciprocal(), v => 1 / v, 0.3, 2);
        yield return Case("tanh", x => x.Tanh(), Math.Tanh, -2, 2);
        yield return Case("sigmoid", x => x.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), -3, 3);
        yield return Case("relu_positive", x => x.Relu(), v => Math.Max(v, 0), 0.1, 1);
        yield return Case("relu_negative", x => x.Relu(), v => Math.Max(v, 0), -1, -0.1);
        yield return Case("leaky_relu", x => x.LeakyRelu(0.1f), v => v > 0 ? v : 0.1 * v, -1, -0.1);
        yield return Case("gelu", x => x.Gelu(), v => 0.5 * v * (1 + Erf(v / Math.Sqrt(2))), -2, 2);
        yield return Case("elu", x => x.Elu(0.7f), v => v > 0 ? v : 0.7 * (Math.Exp(v) - 1), -2, -0.1);
        yield return Case("softplus", x => x.Softplus(), v => Math.Log(1 + Math.Exp(v)), -3, 3);
        yield return Case("sin", x => x.Sin(), Math.Sin, -3, 3);
        yield return Case("cos", x => x.Cos(), Math.Cos, -3, 3);
        yield return Case("scale", x => x.Mul(-2.5f), v => -2.5 * v);
        yield return Case("add_scalar", x => x.Add(1.5f), v => v + 1.5);
        yield return Case("pow_scalar", x => x.Pow(2.5f), v => Math.Pow(v, 2.5), 0.2, 2);
    }

    private static TestCaseData Case(string name, Func<Tensor, Tensor> op, Func<double, double> reference, double low = -1, double high = 1) =>
        new TestCaseData(op, reference, low, high).SetName($"Unary_{name}_matches_float64_finite_differences");

    [TestCaseSource(nameof(UnaryCases))]
    public void Unary(Func<Tensor, Tensor> op, Func<double, double> reference, double low, double high) =>
        Check(t => op(t[0]), x => Map(x[0], reference), new[] { (Random(15, 1, low, high), Shape) });

    public static IEnumerable<TestCaseData> BinaryCases()
    {
        var shapes = new (long[] A, long[] B)[]
        {
            (new long[] { 3, 4 }, new long[] { 3, 4 }),
            (new long[] { 3, 4 }, new long[] { 4 }),
            (new long[] { 3, 1 }, new long[] { 1, 4 }),
            (new long[] { 2, 1, 3 }, new long[] { 4, 1 }),
            (new long[] { 5 }, Array.Empty<long>()),
        };
        var ops = new (string Name, Func<Tensor, Tensor, Tensor> Op, Func<double, double, double> Ref, double Low, double High)[]
        {
            ("add", (a, b) => a + b, (a, b) => a + b, -1, 1),
            ("sub", (a, b) => a - b, (a, b) => a - b, -1, 1),
            ("mul", (a, b) => a * b, (a, b) => a * b, -1, 1),
            ("div", (a, b) => a / b, (a, b) => a / b, 0.5, 2),
            ("pow", (a, b) => a.Pow(b), Math.Pow, 0.5, 2),
            ("maximum", (a, b) => a.Maximum(b), Math.Max, -1, 1),
            ("minimum", (a, b) => a.Minimum(b), Math.Min, -1, 1),
        };
        foreach (var (name, op, reference, low, high) in ops)
            foreach (var (a, b) in shapes)
                yield return new TestCaseData(op, reference, a, b, low, high)
                    .SetName($"Binary_{name}_{Tensor.FormatShape(a)}_{Tensor.FormatShape(b)}_reduces_broadcast_gradients");
    }

    [TestCaseSource(nameof(BinaryCases))]
    public void Binary(Func<Tensor, Tensor, Tensor> op, Func<double, double, double> reference, long[] a, long[] b, double low, double high)
    {
        long na = a.Aggregate(1L, (p, d) => p * d), nb = b.Aggregate(1L, (p, d) => p * d);
        Check(t => op(t[0], t[1]), x => Broadcast(x[0], a, x[1], b, reference),
              new[] { (Random(na, 2, low, high), a), (Random(nb, 3, low, high), b) });
    }

    [TestCase(1, 3, 4, 5, false)]
    [TestCase(1, 1, 7, 1, false)]
    [TestCase(2, 3, 4, 5, false)]
    [TestCase(3, 2, 5, 4, true)]
    public void MatMul_matches_float64_finite_differences(int batch, int m, int k, int n, bool sharedB)
    {
        long[] aShape = batch == 1 ? new long[] { m, k } : new long[] { batch, m, k };
        long[] bShape = batch == 1 || sharedB ? new long[] { k, n } : new long[] { batch, k, n };
        Check(t => t[0].MatMul(t[1]), x => MatMul(x[0], x[1], batch, m, k, n, sharedB || batch == 1),
              new[] { (Random(batch * m * k, 4), aShape), (Random(bShape.Aggregate(1L, (p, d) => p * d), 5), bShape) });
    }

    [Test]
    public void Sum_all_and_over_each_axis()
    {
        var input = new[] { (Random(24, 6), new long[] { 2, 3, 4 }) };
        Check(t => t[0].Sum(), x => new[] { x[0].Sum() }, input);
        Check(t => t[0].Sum(1), x => Reduce(x[0], 2, 3, 4, v => v.Sum()), input);
        Check(t => t[0].Sum(0, keepDim: true), x => Reduce(x[0], 1, 2, 12, v => v.Sum()), input);
        Check(t => t[0].Sum(-1), x => Reduce(x[0], 6, 4, 1, v => v.Sum()), input);
    }

    [Test]
    public void Mean_max_min_route_gradients_correctly()
    {
        var input = new[] { (Random(24, 7), new long[] { 2, 3, 4 }) };
        Check(t => t[0].Mean(), x => new[] { x[0].Average() }, input);
        Check(t => t[0].Mean(2), x => Reduce(x[0], 6, 4, 1, v => v.Average()), input);
        Check(t => t[0].Max(1), x => Reduce(x[0], 2, 3, 4, v => v.Max()), input);
        Check(t => t[0].Min(), x => new[] { x[0].Min() }, input);
    }

    [Test]
    public void Softmax_and_log_softmax()
    {
        var input = new[] { (Random(20, 8, -3, 3), new long[] { 4, 5 }) };
        Check(t => t[0].Softmax(), x => Softmax(x[0], 5, false), input);
        Check(t => t[0].LogSoftmax(), x => Softmax(x[0], 5, true), input);
    }

    [Test]
    public void Reshape_and_flatten_pass_gradients_through()
    {
        var input = new[] { (Random(12, 9), new long[] { 2, 6 }) };
        Check(t => t[0].Reshape(3, -1).Square(), x => Map(x[0], v => v * v), input);
        Check(t => t[0].Reshape(2, 3, 2).Flatten().Exp(), x => Map(x[0], Math.Exp), input);
    }

    [Test]
    public void A_tensor_used_twice_accumulates_both_paths()
    {
        var input = new[] { (Random(6, 10), new long[] { 6 }) };
        Check(t => t[0].Mul(t[0]).Add(t[0].Exp()), x => Map(x[0], v => v * v + Math.Exp(v)), input);
    }

    [Test]
    public void Losses_match_float64_finite_differences()
    {
        var logits = (Random(12, 11, -2, 2), new long[] { 4, 3 });
        long[] labels = { 2, 0, 1, 2 };
        Check(t => Losses.SparseCategoricalCrossEntropy(t[0], labels),
              x =>
              {
                  var ls = Softmax(x[0], 3, true);
                  return new[] { -Enumerable.Range(0, 4).Average(r => ls[r * 3 + labels[r]]) };
              }, new[] { logits });

        var target = Random(12, 12, 0, 1);
        Check(t => Losses.BinaryCrossEntropyWithLogits(t[0], Tensor.FromArray(target.Select(v => (float)v).ToArray(), new long[] { 4, 3 })),
              x => new[] { x[0].Select((v, i) => Math.Max(v, 0) - v * target[i] + Math.Log(1 + Math.Exp(-Math.Abs(v)))).Average() },
              new[] { logits });
        Check(t => Losses.BinaryCrossEntropy(t[0].Sigmoid(), Tensor.FromArray(target.Select(v => (float)v).ToArray(), new long[] { 4, 3 })),
              x => new[] { -x[0].Select((v, i) => { double p = 1 / (1 + Math.Exp(-v)); return target[i] * Math.Log(p) + (1 - target[i]) * Math.Log(1 - p); }).Average() },
              new[] { logits });
        Check(t => Losses.MeanSquaredError(t[0], Tensor.FromArray(target.Select(v => (float)v).ToArray(), new long[] { 4, 3 })),
              x => new[] { x[0].Select((v, i) => (v - target[i]) * (v - target[i])).Average() }, new[] { logits });
        var onehot = new double[12];
        for (int r = 0; r < 4; r++) onehot[r * 3 + labels[r]] = 1;
        Check(t => Losses.CategoricalCrossEntropy(t[0], Tensor.FromArray(onehot.Select(v => (float)v).ToArray(), new long[] { 4, 3 })),
              x => { var ls = Softmax(x[0], 3, true); return new[] { -Enumerable.Range(0, 4).Average(r => ls[r * 3 + labels[r]]) }; },
              new[] { logits });
    }

    [Test]
    public void Dense_layer_gradients_for_weight_bias_and_input()
    {
        // y = x W + b through the layer's own parameters: check via an explicit float64 reference.
        using var layer = new Dense(4, 3, seed: 5);
        var w = layer.Weight.ToArray().Select(v => (double)v).ToArray();
        Check(t => layer.Forward(t[0]), x =>
        {
            var y = MatMul(x[0], w, 1, 2, 4, 3, true);
            return y;   // bias is zero-initialised
        }, new[] { (Random(8, 13), new long[] { 2, 4 }) });
        Assert.That(layer.Weight.Grad, Is.Not.Null, "the weight received a gradient");
        Assert.That(layer.Bias!.Grad, Is.Not.Null, "the bias received a gradient");
    }

    private static double[] Reduce(double[] x, long outer, long reduce, long inner, Func<IEnumerable<double>, double> f)
    {
        var y = new double[outer * inner];
        for (long o = 0; o < outer; o++)
            for (long i = 0; i < inner; i++)
                y[o * inner + i] = f(Enumerable.Range(0, (int)reduce).Select(r => x[(o * reduce + r) * inner + i]));
        return y;
    }
}
