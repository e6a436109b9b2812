using NUnit.Framework;
using static Kernels.Nn.Tests.GradCheck;

namespace Kernels.Nn.Tests;

/// <summary>
/// Convolution, pooling and batch normalization: autograd against float64 finite differences of C#
/// references (see <see cref="GradCheck"/>) over the shapes that break tiling, the layers' behaviour
/// (train/eval, running statistics, save/load), and bad input.
/// </summary>
[TestFixture]
public class ConvolutionTests
{
    // ---- float64 references (NCHW) ------------------------------------------------------------------

    internal static double[] Conv2DReference(double[] x, double[] w, double[]? b, Conv2DGeometry g)
    {
        long cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups, oh = g.OutHeight, ow = g.OutWidth;
        var y = new double[g.Batch * g.OutChannels * oh * ow];
        for (long n = 0; n < g.Batch; n++)
        for (long o = 0; o < g.OutChannels; o++)
        {
            long group = o / og;
            for (long i = 0; i < oh; i++)
            for (long j = 0; j < ow; j++)
            {
                double s = b is null ? 0 : b[o];
                for (long c = 0; c < cg; c++)
                for (long kh = 0; kh < g.KernelHeight; kh++)
                for (long kw = 0; kw < g.KernelWidth; kw++)
                {
                    long ih = i * g.StrideHeight - g.PadHeight + kh * g.DilationHeight;
                    long iw = j * g.StrideWidth - g.PadWidth + kw * g.DilationWidth;
                    if (ih < 0 || ih >= g.InHeight || iw < 0 || iw >= g.InWidth) continue;
                    s += x[((n * g.InChannels + group * cg + c) * g.InHeight + ih) * g.InWidth + iw] *
                         w[((o * cg + c) * g.KernelHeight + kh) * g.KernelWidth + kw];
                }
                y[((n * g.OutChannels + o) * oh + i) * ow + j] = s;
            }
        }
        return y;
    }

    internal static double[] Pool2DReference(double[] x, Pool2DGeometry g, bool max)
    {
        long oh = g.OutHeight, ow = g.OutWidth;
        var y = new double[g.Batch * g.Channels * oh * ow];
        for (long plane = 0; plane < g.Batch * g.Channels; plane++)
        for (long i = 0; i < oh; i++)
        for (long j = 0; j < ow; j++)
        {
            double best = double.NegativeInfinity, sum = 0;
            long real = 0;
            for (long kh = 0; kh < g.KernelHeight; kh++)
            for (long kw = 0; kw < g.KernelWidth; kw++)
            {
                long ih = i * g.StrideHeight - g.PadHeight + kh, iw = j * g.StrideWidth - g.PadWidth + kw;
                if (ih < 0 || ih >= g.InHeight || iw < 0 || iw >= g.InWidth) continue;
                double v = x[(plane * g.InHeight + ih) * g.InWidth + iw];
                best = Math.Max(best, v);
                sum += v;
                real++;
            }
            y[(plane * oh + i) * ow + j] = max ? best : sum / (g.CountIncludePad ? g.KernelHeight * g.KernelWidth : real);
        }
        return y;
    }

    internal static double[] BatchNormReference(double[] x, double[] gamma, double[] beta, long batch, long channels, long spatial,
                                                double eps, double[]? mean = null, double[]? variance = null)
    {
        var y = new double[x.Length];
        for (long c = 0; c < channels; c++)
        {
            double mu = 0, v = 0;
            if (mean is null)
            {
                for (long n = 0; n < batch; n++) for (long s = 0; s < spatial; s++) mu += x[(n * channels + c) * spatial + s];
                mu /= batch * spatial;
                for (long n = 0; n < batch; n++) for (long s = 0; s < spatial; s++) { double d = x[(n * channels + c) * spatial + s] - mu; v += d * d; }
                v /= batch * spatial;
            }
            else
            {
                mu = mean[c];
                v = variance![c];
            }
            double inv = 1 / Math.Sqrt(v + eps);
            for (long n = 0; n < batch; n++)
            for (long s = 0; s < spatial; s++)
            {
                long k = (n * channels + c) * spatial + s;
                y[k] = (x[k] - mu) * inv * gamma[c] + beta[c];
            }
        }
        return y;
    }

    // ---- gradient checks -----------------------------------------------------------------------------

    public static IEnumerable<TestCaseData> ConvCases()
    {
        // batch, in, h, w, out, kh, kw, stride, pad, dilation, groups
        yield return ConvCase("3x2_kernel_no_padding", new(2, 3, 5, 4, 4, 3, 2));
        yield return ConvCase("padding_larger_than_half_kernel_stride_2", new(1, 1, 7, 7, 2, 3, 3, 2, 2, 2, 2));
        yield return ConvCase("dilation_2_groups_2", new(2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 1, 2, 2, 2));
        yield return ConvCase("depthwise", new(2, 3, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3));
        yield return ConvCase("1x1", new(3, 5, 3, 4, 3, 1, 1));
        yield return ConvCase("stride_larger_than_kernel_prime_sizes", new(1, 2, 11, 7, 3, 2, 2, 3, 3));
        yield return ConvCase("single_pixel_output", new(2, 2, 3, 3, 2, 3, 3));
    }

    private static TestCaseData ConvCase(string name, Conv2DGeometry g) =>
        new TestCaseData(g).SetName($"Conv2D_{name}_matches_float64_finite_differences");

    [TestCaseSource(nameof(ConvCases))]
    public void Conv2D(Conv2DGeometry g)
    {
        long[] xs = { g.Batch, g.InChannels, g.InHeight, g.InWidth };
        long[] ws = { g.OutChannels, g.InChannels / g.Groups, g.KernelHeight, g.KernelWidth };
        Check(t => t[0].Conv2D(t[1], t[2], ((int)g.StrideHeight, (int)g.StrideWidth), ((int)g.PadHeight, (int)g.PadWidth),
                               ((int)g.DilationHeight, (int)g.DilationWidth), (int)g.Groups),
              x => Conv2DReference(x[0], x[1], x[2], g),
              new[] { (Random(g.InputElements, 11), xs), (Random(g.WeightElements, 12), ws), (Random(g.OutChannels, 13), new[] { g.OutChannels }) });
    }

    [Test]
    public void Conv2D_without_bias_matches_float64_finite_differences()
    {
        var g = new Conv2DGeometry(2, 2, 4, 5, 3, 2, 3, PadHeight: 1);
        Check(t => t[0].Conv2D(t[1], padding: (1, 0)), x => Conv2DReference(x[0], x[1], null, g),
              new[] { (Random(g.InputElements, 21), new[] { 2L, 2, 4, 5 }), (Random(g.WeightElements, 22), new[] { 3L, 2, 2, 3 }) });
    }

    public static IEnumerable<TestCaseData> PoolCases()
    {
        yield return PoolCase("max_2x2", true, new(2, 3, 6, 5, 2, 2, 2, 2));
        yield return PoolCase("max_overlapping_3x3_stride_1_padded", true, new(1, 2, 5, 5, 3, 3, 1, 1, 1, 1));
        yield return PoolCase("max_stride_larger_than_kernel", true, new(2, 1, 7, 8, 2, 2, 3, 3));
        yield return PoolCase("avg_overlapping_padded_count_include_pad", false, new(2, 2, 5, 4, 3, 3, 2, 1, 1, 1, true));
        yield return PoolCase("avg_padded_excluding_pad", false, new(1, 2, 5, 5, 3, 2, 2, 2, 1, 1, false));
        yield return PoolCase("avg_non_square", false, new(2, 3, 4, 6, 2, 3, 2, 3));
    }

    private static TestCaseData PoolCase(string name, bool max, Pool2DGeometry g) =>
        new TestCaseData(max, g).SetName($"Pool2D_{name}_matches_float64_finite_differences");

    [TestCaseSource(nameof(PoolCases))]
    public void Pool2D(bool max, Pool2DGeometry g)
    {
        Size2 k = ((int)g.KernelHeight, (int)g.KernelWidth), s = ((int)g.StrideHeight, (int)g.StrideWidth), p = ((int)g.PadHeight, (int)g.PadWidth);
        Check(t => max ? t[0].MaxPool2D(k, s, p) : t[0].AvgPool2D(k, s, p, g.CountIncludePad),
              x => Pool2DReference(x[0], g, max),
              new[] { (Random(g.InputElements, 31), new[] { g.Batch, g.Channels, g.InHeight, g.InWidth }) });
    }

    [Test]
    public void GlobalAvgPool2D_matches_float64_finite_differences()
    {
        var g = new Pool2DGeometry(2, 3, 4, 5, 4, 5, 1, 1);
        Check(t => t[0].GlobalAvgPool2D(), x => Pool2DReference(x[0], g, max: false),
              new[] { (Random(g.InputElements, 41), new[] { 2L, 3, 4, 5 }) });
    }

    [TestCase(3, 4, 5, true)]
    [TestCase(4, 3, 1, true)]
    [TestCase(2, 2, 7, false)]
    [TestCase(5, 1, 1, false)]
    public void BatchNorm_matches_float64_finite_differences(long batch, long channels, long spatial, bool training)
    {
        double[] mean = Random(channels, 51), variance = Random(channels, 52, 0.5, 2);
        using var runningMean = Tensor.FromArray(mean.Select(v => (float)v).ToArray(), new[] { channels });
        using var runningVar = Tensor.FromArray(variance.Select(v => (float)v).ToArray(), new[] { channels });
        Check(t => t[0].BatchNorm(t[1], t[2], training ? null : runningMean, training ? null : runningVar, training),
              x => BatchNormReference(x[0], x[1], x[2], batch, channels, spatial, 1e-5, training ? null : mean, training ? null : variance),
              new[] { (Random(batch * channels * spatial, 53, -2, 2), new[] { batch, channels, spatial }),
                      (Random(channels, 54, 0.5, 1.5), new[] { channels }), (Random(channels, 55), new[] { channels }) });
    }

    // ---- layers -----------------------------------------------------------------------------------------

    [Test]
    public void BatchNorm2D_updates_running_statistics_and_uses_them_in_eval()
    {
        using var layer = new BatchNorm2D(2, momentum: 0.25f);
        double[] x = Random(3 * 2 * 4, 61, 5, 9);   // mean ~7, far from the initial running mean 0
        using (var input = Tensor.FromArray(x.Select(v => (float)v).ToArray(), new long[] { 3, 2, 2, 2 }))
        using (var y = layer.Forward(input)) { }
        var rm = layer.RunningMean.ToArray();
        var rv = layer.RunningVar.ToArray();
        for (int c = 0; c < 2; c++)
        {
            var values = Enumerable.Range(0, 3).SelectMany(n => Enumerable.Range(0, 4).Select(s => x[(n * 2 + c) * 4 + s])).ToArray();
            double mu = values.Average(), unbiased = values.Sum(v => (v - mu) * (v - mu)) / (values.Length - 1);
            Assert.That(rm[c], Is.EqualTo(0.25 * mu).Within(1e-5 * Math.Abs(mu) + 1e-6), $"running mean of channel {c}");
            Assert.That(rv[c], Is.EqualTo(0.75 + 0.25 * unbiased).Within(1e-5), $"running variance of channel {c} (unbiased batch variance)");
        }
        layer.Eval();
        using var probe = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }, new long[] { 1, 2, 2, 2 });
        using var evalOut = layer.Forward(probe);
        var expected = BatchNormReference(probe.ToArray().Select(v => (double)v).ToArray(), new double[] { 1, 1 }, new double[] { 0, 0 },
                                          1, 2, 4, 1e-5, rm.Select(v => (double)v).ToArray(), rv.Select(v => (double)v).ToArray());
        Assert.That(evalOut.ToArray(), Is.EqualTo(expected.Select(v => (float)v).ToArray()).Within(1e-5), "eval mode normalises with the running statistics");
        Assert.That(layer.RunningMean.ToArray(), Is.EqualTo(rm), "eval mode leaves the running statistics alone");
    }

    [Test]
    public void Conv_network_trains_and_saves_running_statistics()
    {
        using var network = new Sequential(
            new Conv2D(1, 4, 3, padding: 1, seed: 1), new BatchNorm2D(4), Activation.Relu(), new MaxPool2D(2),
            new Conv2D(4, 4, 3, groups: 2, seed: 2), new GlobalAvgPool2D(), new Dense(4, 2, seed: 3));
        // Class 0: bright top half; class 1: bright bottom half (8x8 images).
        var r = new Random(5);
        int count = 64;
        var x = new float[count * 64];
        var y = new float[count];
        for (int i = 0; i < count; i++)
        {
            y[i] = i % 2;
            for (int p = 0; p < 64; p++)
                x[i * 64 + p] = (float)(((p / 8 < 4) == (i % 2 == 0) ? 1.0 : 0.0) + 0.3 * r.NextDouble());
        }
        var data = new ArrayDataset(x, new long[] { 1, 8, 8 }, y);
        using var model = new Model(network);
        model.Compile(new Adam(network.Parameters(), 0.02f), Losses.SparseCategoricalCrossEntropy, new Accuracy());
        var history = model.Fit(data, epochs: 8, batchSize: 16, verbose: 0);
        Assert.That(history["loss"][^1], Is.LessThan(history["loss"][0] * 0.5), "the loss falls");
        Assert.That(model.Evaluate(data)["accuracy"], Is.GreaterThanOrEqualTo(0.95));

        var names = network.NamedState().Select(s => s.Name).ToArray();
        Assert.That(names, Does.Contain("1.running_mean").And.Contain("1.running_var"), "running statistics are part of the saved state");
        string path = Path.Combine(Path.GetTempPath(), $"kernels-cnn-{Environment.ProcessId}.bin");
        try
        {
            WeightsFile.Save(network, path);
            var bn = (BatchNorm2D)network.Layers[1];
            var saved = bn.RunningVar.ToArray();
            bn.RunningVar.Buffer.Fill(42f, 0, 4);
            WeightsFile.Load(network, path);
            Assert.That(bn.RunningVar.ToArray(), Is.EqualTo(saved), "Load restores the running variance");
        }
        finally
        {
            File.Delete(path);
        }
    }

    // ---- bad input ----------------------------------------------------------------------------------------

    [Test]
    public void Bad_convolution_input_names_the_shapes()
    {
        using var conv = new Conv2D(3, 4, 3);
        using var wrongChannels = Tensor.Zeros(new long[] { 1, 2, 8, 8 });
        var e = Assert.Throws<ShapeMismatchException>(() => conv.Forward(wrongChannels))!;
        Assert.That(e.Message, Does.Contain("[1, 2, 8, 8]").And.Contain("3"));

        using var tiny = Tensor.Zeros(new long[] { 1, 3, 2, 2 });
        e = Assert.Throws<ShapeMismatchException>(() => conv.Forward(tiny))!;
        // The message is libkernels' (kn_conv2d_output_size), the one rule for convolution geometry.
        Assert.That(e.Message, Does.Contain("[1, 3, 2, 2]").And.Contain("padded input is only 2x2"));

        var ge = Assert.Throws<ArgumentException>(() => new Conv2D(6, 4, 3, groups: 4))!;
        Assert.That(ge.Message, Does.Contain("divisible by groups = 4"));

        using var x = Tensor.Zeros(new long[] { 1, 4, 5, 5 });
        using var w = Tensor.Zeros(new long[] { 2, 3, 3, 3 });
        e = Assert.Throws<ShapeMismatchException>(() => x.Conv2D(w))!;
        Assert.That(e.Message, Does.Contain("[2, 3, 3, 3]").And.Contain("[1, 4, 5, 5]"));

        using var ok = Tensor.Zeros(new long[] { 1, 3, 5, 5 });
        using var y = conv.Forward(ok);
        Assert.That(y.Shape, Is.EqualTo(new long[] { 1, 4, 3, 3 }), "the layer still works after the errors");
    }

    // Tensor shapes come from libkernels' rule (Conv2DGeometry.OutputSize = kn_conv2d_output_size): the
    // tensor's shape, the query and the size worked by hand must agree.
    [TestCase(9, 11, 3, 2, 1, 1, 5, 6, TestName = "Conv2D shape 9x11 k3 s2 p1 -> 5x6")]
    [TestCase(8, 8, 3, 1, 0, 2, 4, 4, TestName = "Conv2D shape 8x8 k3 dilation 2 -> 4x4")]
    [TestCase(6, 7, 2, 3, 2, 1, 3, 4, TestName = "Conv2D shape 6x7 k2 s3 p2 -> 3x4")]
    public void Conv2D_output_shape_is_the_native_rule(int h, int w, int k, int stride, int padding, int dilation,
                                                       long wantH, long wantW)
    {
        using var x = Tensor.Zeros(new long[] { 2, 4, h, w });
        using var weight = Tensor.Zeros(new long[] { 6, 2, k, k });
        using var y = x.Conv2D(weight, stride: stride, padding: padding, dilation: dilation, groups: 2);
        var g = new Conv2DGeometry(2, 4, h, w, 6, k, k, stride, stride, padding, padding, dilation, dilation, 2);
        Assert.That(g.OutputSize(), Is.EqualTo((wantH, wantW)));
        Assert.That(y.Shape, Is.EqualTo(new[] { 2, 6, wantH, wantW }));
    }

    [TestCase(7, 9, 3, 2, 1, 4, 5, TestName = "MaxPool2D shape 7x9 k3 s2 p1 -> 4x5")]
    [TestCase(6, 6, 2, 2, 0, 3, 3, TestName = "MaxPool2D shape 6x6 k2 s2 -> 3x3")]
    [TestCase(5, 8, 4, 3, 2, 2, 3, TestName = "MaxPool2D shape 5x8 k4 s3 p2 -> 2x3")]
    public void Pool2D_output_shape_is_the_native_rule(int h, int w, int k, int stride, int padding, long wantH, long wantW)
    {
        using var x = Tensor.Zeros(new long[] { 1, 3, h, w });
        using var y = x.MaxPool2D(k, stride, padding);
        using var a = x.AvgPool2D(k, stride, padding);
        var g = new Pool2DGeometry(1, 3, h, w, k, k, stride, stride, padding, padding);
        Assert.That(g.OutputSize(), Is.EqualTo((wantH, wantW)));
        Assert.That(y.Shape, Is.EqualTo(new[] { 1, 3, wantH, wantW }));
        Assert.That(a.Shape, Is.EqualTo(new[] { 1, 3, wantH, wantW }));
    }

    [Test]
    public void Bad_pooling_and_batch_norm_input_is_refused_clearly()
    {
        using var x = Tensor.Zeros(new long[] { 1, 1, 3, 3 });
        // Geometry errors come from libkernels' rule (kn_pool2d_output_size) and name the input's shape.
        Assert.That(Assert.Throws<ShapeMismatchException>(() => x.MaxPool2D(4))!.Message,
                    Does.Contain("larger than the padded input 3x3").And.Contain("x [1, 1, 3, 3]"));
        Assert.That(Assert.Throws<KernelsArgumentException>(() => x.MaxPool2D(2, padding: 2))!.Message,
                    Does.Contain("more than half the kernel").And.Contain("padding 2x2"));
        using var flat = Tensor.Zeros(new long[] { 4, 9 });
        Assert.That(Assert.Throws<ShapeMismatchException>(() => flat.MaxPool2D(2))!.Message, Does.Contain("[4, 9]"));

        using var bn = new BatchNorm1D(3);
        using var wrong = Tensor.Zeros(new long[] { 4, 5 });
        Assert.That(Assert.Throws<ShapeMismatchException>(() => bn.Forward(wrong))!.Message, Does.Contain("[4, 5]").And.Contain("BatchNorm1D(3)"));
        using var single = Tensor.Zeros(new long[] { 1, 3 });
        Assert.That(Assert.Throws<ShapeMismatchException>(() => bn.Forward(single))!.Message, Does.Contain("more than one value per channel"));
        bn.Eval();
        using var evalSingle = bn.Forward(single);
        Assert.That(evalSingle.Shape, Is.EqualTo(new long[] { 1, 3 }), "a batch of one is fine in eval mode");
    }
}
