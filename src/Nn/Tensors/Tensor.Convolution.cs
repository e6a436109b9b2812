namespace Kernels.Nn;

/// <summary>
/// A height and width pair (kernel size, stride, padding, dilation). An int converts to a square
/// pair and a tuple to a rectangular one: <c>kernelSize: 3</c>, <c>stride: (2, 1)</c>.
/// </summary>
public readonly record struct Size2(int Height, int Width)
{
    /// <summary>The same value for height and width.</summary>
    public static implicit operator Size2(int size) => new(size, size);

    /// <summary>(height, width).</summary>
    public static implicit operator Size2((int Height, int Width) size) => new(size.Height, size.Width);

    /// <inheritdoc/>
    public override string ToString() => Height == Width ? $"{Height}" : $"({Height}, {Width})";
}

/// <summary>
/// Convolution, pooling and batch normalization on NCHW tensors ([batch, channels, height, width]),
/// the layout of PyTorch and ONNX, so weights ([out, in / groups, kh, kw]) move between them as they
/// are. Each op checks shapes here, so its error names the tensors' shapes, then runs one fused kernel
/// of libkernels; the backward rules are in <see cref="Gradients"/>.
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// 2-D convolution of this [N, C, H, W] tensor with <paramref name="weight"/> [O, C / groups, kh, kw]
    /// plus <paramref name="bias"/> [O] (optional). Stride defaults to 1, padding (zeros) to 0, dilation to 1.
    /// </summary>
    public Tensor Conv2D(Tensor weight, Tensor? bias = null, Size2? stride = null, Size2? padding = null,
                         Size2? dilation = null, int groups = 1)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var s = stride ?? 1;
        var p = padding ?? 0;
        var d = dilation ?? 1;
        if (Rank != 4)
            throw new ShapeMismatchException($"Conv2D expects an input of shape [batch, channels, height, width]; got {FormatShape(shape)}");
        if (weight.Rank != 4)
            throw new ShapeMismatchException($"Conv2D expects weights of shape [out_channels, in_channels / groups, kh, kw]; got {FormatShape(weight.ShapeArray)}");
        if (groups < 1)
            throw new ArgumentOutOfRangeException(nameof(groups), $"Conv2D: groups = {groups} must be >= 1");
        long outChannels = weight.shape[0];
        if (weight.shape[1] * groups != shape[1] || outChannels % groups != 0)
            throw new ShapeMismatchException($"Conv2D: input {FormatShape(shape)} has {shape[1]} channels but weights {FormatShape(weight.ShapeArray)} with groups = {groups} expect {weight.shape[1] * groups} (and out_channels divisible by groups)");
        if (bias is not null && (bias.Rank != 1 || bias.shape[0] != outChannels))
            throw new ShapeMismatchException($"Conv2D: bias has shape {FormatShape(bias.ShapeArray)} but the weights {FormatShape(weight.ShapeArray)} need [{outChannels}]");
        var g = new Conv2DGeometry(shape[0], shape[1], shape[2], shape[3], outChannels, weight.shape[2], weight.shape[3],
                                   s.Height, s.Width, p.Height, p.Width, d.Height, d.Width, groups);
        // The library's rule validates strides, padding, dilation and the kernel's extent and gives the
        // output size (its messages name x's and w's shapes).
        var (outHeight, outWidth) = g.OutputSize();

        var y = Empty(new[] { g.Batch, outChannels, outHeight, outWidth }, Device);
        Ops.Conv2D(Buffer, weight.Buffer, bias?.Buffer, y.Buffer, g);
        var x = this;
        var inputs = bias is null ? new[] { x, weight } : new[] { x, weight, bias };
        return Record(y, "Conv2D", inputs, grad => Gradients.Conv2D(x, weight, bias, grad, g));
    }

    /// <summary>Max pooling over [N, C, H, W]; stride defaults to the kernel size, padding to 0 (at most half the kernel).</summary>
    public Tensor MaxPool2D(Size2 kernelSize, Size2? stride = null, Size2? padding = null) =>
        Pool2D(PoolOp.Max, kernelSize, stride, padding, countIncludePad: true);

    /// <summary>
    /// Average pooling over [N, C, H, W]; stride defaults to the kernel size, padding to 0. With
    /// padding, <paramref name="countIncludePad"/> (PyTorch's default) divides by the full window size.
    /// </summary>
    public Tensor AvgPool2D(Size2 kernelSize, Size2? stride = null, Size2? padding = null, bool countIncludePad = true) =>
        Pool2D(PoolOp.Avg, kernelSize, stride, padding, countIncludePad);

    private Tensor Pool2D(PoolOp op, Size2 k, Size2? stride, Size2? padding, bool countIncludePad)
    {
        var s = stride ?? k;
        var p = padding ?? 0;
        string name = op == PoolOp.Max ? "MaxPool2D" : "AvgPool2D";
        if (Rank != 4)
            throw new ShapeMismatchException($"{name} expects an input of shape [batch, channels, height, width]; got {FormatShape(shape)}");
        var g = new Pool2DGeometry(shape[0], shape[1], shape[2], shape[3], k.Height, k.Width, s.Height, s.Width,
                                   p.Height, p.Width, countIncludePad);
        // The library's rule validates kernel, stride and padding (at most half the kernel) and gives the
        // output size (its messages name x's shape and the window).
        var (outHeight, outWidth) = g.OutputSize();
        var y = Empty(new[] { g.Batch, g.Channels, outHeight, outWidth }, Device);
        var x = this;
        bool record = WillRecord(x);
        // Max pooling's backward needs the forward's winners (int32, one per output). They live in a
        // tensor of the output's shape (4-byte elements) so the dispose scope that owns y owns them too.
        var indices = op == PoolOp.Max && record ? Empty(y.ShapeArray, Device) : null;
        Ops.Pool2D(op, Float32Buffer(name), y.Buffer, indices?.Buffer, g);
        if (!record) return y;
        return Record(y, name, new[] { x }, grad => new Tensor?[] { Gradients.Pool2D(op, indices, grad, g, x.Device) });
    }

    /// <summary>Mean over height and width: [N, C, H, W] to [N, C].</summary>
    public Tensor GlobalAvgPool2D()
    {
        if (Rank != 4)
            throw new ShapeMismatchException($"GlobalAvgPool2D expects an input of shape [batch, channels, height, width]; got {FormatShape(shape)}");
        return Reshape(shape[0], shape[1], shape[2] * shape[3]).Mean(2);
    }

    /// <summary>
    /// Batch normalization of [N, C] or [N, C, ...] over every axis but the channel axis 1:
    /// y = (x - mean) / sqrt(var + eps) * gamma + beta. In training, mean and (biased) var come from
    /// the batch and the running statistics (when given) move towards them by momentum; otherwise the
    /// running statistics are used. Used by <see cref="BatchNorm1D"/> and <see cref="BatchNorm2D"/>.
    /// </summary>
    public Tensor BatchNorm(Tensor gamma, Tensor beta, Tensor? runningMean, Tensor? runningVar, bool training,
                            float momentum = 0.1f, float eps = 1e-5f)
    {
        ArgumentNullException.ThrowIfNull(gamma);
        ArgumentNullException.ThrowIfNull(beta);
        if (Rank < 2)
            throw new ShapeMismatchException($"BatchNorm expects an input of shape [batch, channels, ...]; got {FormatShape(shape)}");
        long batch = shape[0], channels = shape[1], spatial = 1;
        for (int a = 2; a < Rank; a++) spatial *= shape[a];
        foreach (var (name, t) in new[] { ("gamma", gamma), ("beta", beta), ("running_mean", runningMean), ("running_var", runningVar) })
            if (t is not null && (t.Rank != 1 || t.shape[0] != channels))
                throw new ShapeMismatchException($"BatchNorm: {name} has shape {FormatShape(t.ShapeArray)} but the input {FormatShape(shape)} has {channels} channels");
        if (training && batch * spatial == 0)
            throw new ShapeMismatchException($"BatchNorm in training mode needs at least one value per channel; got an input of shape {FormatShape(shape)}");
        if (!training && (runningMean is null || runningVar is null))
            throw new InvalidOperationException("BatchNorm in evaluation mode needs running statistics");

        var y = Empty(shape, Device);
        var x = this;
        bool record = WillRecord(x, gamma, beta);
        var saveMean = record ? Empty(new[] { channels }, Device) : null;
        var saveInvStd = record ? Empty(new[] { channels }, Device) : null;
        Ops.BatchNorm(Buffer, y.Buffer, gamma.Buffer, beta.Buffer, runningMean?.Buffer, runningVar?.Buffer,
                      saveMean?.Buffer, saveInvStd?.Buffer, batch, channels, spatial, eps, momentum, training);
        if (!record) return y;
        return Record(y, "BatchNorm", new[] { x, gamma, beta },
                      grad => Gradients.BatchNorm(x, gamma, beta, saveMean!, saveInvStd!, grad, batch, channels, spatial, training));
    }
}
