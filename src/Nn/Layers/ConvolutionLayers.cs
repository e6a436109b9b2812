namespace Kernels.Nn;

/// <summary>
/// 2-D convolution layer over [batch, channels, height, width] inputs (NCHW, as PyTorch). Weights are
/// [outChannels, inChannels / groups, kh, kw], He-uniform by default (fan-in = inChannels / groups * kh * kw,
/// suited to the ReLU networks convolutions usually sit in); bias starts at zero.
/// </summary>
public sealed class Conv2D : Module
{
    /// <summary>
    /// A convolution from <paramref name="inChannels"/> to <paramref name="outChannels"/> channels.
    /// <paramref name="groups"/> splits the channels into independent groups; groups = inChannels is depthwise.
    /// </summary>
    public Conv2D(long inChannels, long outChannels, Size2 kernelSize, Size2? stride = null, Size2? padding = null,
                  Size2? dilation = null, int groups = 1, bool bias = true, Initializer? weightInit = null, int seed = 0,
                  Device? device = null)
    {
        if (inChannels <= 0 || outChannels <= 0)
            throw new ArgumentOutOfRangeException(nameof(inChannels), $"Conv2D needs positive channel counts; got {inChannels} -> {outChannels}");
        if (groups < 1 || inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"Conv2D: in_channels = {inChannels} and out_channels = {outChannels} must both be divisible by groups = {groups}", nameof(groups));
        if (kernelSize.Height < 1 || kernelSize.Width < 1)
            throw new ArgumentOutOfRangeException(nameof(kernelSize), $"Conv2D: kernel size {kernelSize} must be >= 1");
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride ?? 1;
        Padding = padding ?? 0;
        Dilation = dilation ?? 1;
        Groups = groups;
        long taps = (long)kernelSize.Height * kernelSize.Width;
        var init = weightInit ?? Initializer.HeUniform;
        Weight = RegisterParameter("weight", init.Create(new[] { outChannels, inChannels / groups, kernelSize.Height, kernelSize.Width },
                                                         inChannels / groups * taps, outChannels / groups * taps, seed, device ?? Device.Cpu));
        if (bias) Bias = RegisterParameter("bias", Tensor.Zeros(new[] { outChannels }, device));
    }

    /// <summary>Input channels.</summary>
    public long InChannels { get; }
    /// <summary>Output channels.</summary>
    public long OutChannels { get; }
    /// <summary>Kernel height and width.</summary>
    public Size2 KernelSize { get; }
    /// <summary>Stride.</summary>
    public Size2 Stride { get; }
    /// <summary>Zero padding on each side.</summary>
    public Size2 Padding { get; }
    /// <summary>Spacing between kernel taps.</summary>
    public Size2 Dilation { get; }
    /// <summary>Channel groups.</summary>
    public int Groups { get; }
    /// <summary>[outChannels, inChannels / groups, kh, kw]</summary>
    public Tensor Weight { get; }
    /// <summary>[outChannels], or null without bias.</summary>
    public Tensor? Bias { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4 || input.Shape[1] != InChannels)
            throw new ShapeMismatchException($"Conv2D({InChannels} -> {OutChannels}, kernel {KernelSize}) got an input of shape {Tensor.FormatShape(input.ShapeArray)}; it needs [batch, {InChannels}, height, width]");
        return input.Conv2D(Weight, Bias, Stride, Padding, Dilation, Groups);
    }
}

/// <summary>Max pooling layer over [batch, channels, height, width]; stride defaults to the kernel size.</summary>
public sealed class MaxPool2D : Module
{
    /// <summary>Windows of <paramref name="kernelSize"/>, moved by <paramref name="stride"/> (default: the kernel size).</summary>
    public MaxPool2D(Size2 kernelSize, Size2? stride = null, Size2? padding = null)
    {
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding ?? 0;
    }

    /// <summary>Window size.</summary>
    public Size2 KernelSize { get; }
    /// <summary>Window step.</summary>
    public Size2 Stride { get; }
    /// <summary>Implicit -infinity padding on each side (at most half the kernel).</summary>
    public Size2 Padding { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => (input ?? throw new ArgumentNullException(nameof(input))).MaxPool2D(KernelSize, Stride, Padding);
}

/// <summary>Average pooling layer over [batch, channels, height, width]; stride defaults to the kernel size.</summary>
public sealed class AvgPool2D : Module
{
    /// <summary>Windows of <paramref name="kernelSize"/>; with padding, <paramref name="countIncludePad"/> divides by the full window.</summary>
    public AvgPool2D(Size2 kernelSize, Size2? stride = null, Size2? padding = null, bool countIncludePad = true)
    {
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding ?? 0;
        CountIncludePad = countIncludePad;
    }

    /// <summary>Window size.</summary>
    public Size2 KernelSize { get; }
    /// <summary>Window step.</summary>
    public Size2 Stride { get; }
    /// <summary>Zero padding on each side (at most half the kernel).</summary>
    public Size2 Padding { get; }
    /// <summary>Whether padded positions count in the divisor.</summary>
    public bool CountIncludePad { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) =>
        (input ?? throw new ArgumentNullException(nameof(input))).AvgPool2D(KernelSize, Stride, Padding, CountIncludePad);
}

/// <summary>Mean over height and width: [batch, channels, height, width] to [batch, channels].</summary>
public sealed class GlobalAvgPool2D : Module
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => (input ?? throw new ArgumentNullException(nameof(input))).GlobalAvgPool2D();
}

/// <summary>
/// Batch normalization over the channel axis 1, shared by <see cref="BatchNorm1D"/> and
/// <see cref="BatchNorm2D"/>: learnable scale (gamma, starts at 1) and shift (beta, starts at 0),
/// and running mean / variance (buffers, saved with the weights) used in evaluation mode.
/// </summary>
public abstract class BatchNormBase : Module
{
    private protected BatchNormBase(long features, float momentum, float eps, Device? device)
    {
        if (features <= 0) throw new ArgumentOutOfRangeException(nameof(features), $"batch normalization needs features > 0; got {features}");
        if (!(momentum >= 0 && momentum <= 1)) throw new ArgumentOutOfRangeException(nameof(momentum), $"momentum {momentum} must be in [0, 1]");
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), $"eps {eps} must be > 0");
        Features = features;
        Momentum = momentum;
        Eps = eps;
        Gamma = RegisterParameter("weight", Tensor.Ones(new[] { features }, device));
        Beta = RegisterParameter("bias", Tensor.Zeros(new[] { features }, device));
        RunningMean = RegisterBuffer("running_mean", Tensor.Zeros(new[] { features }, device));
        RunningVar = RegisterBuffer("running_var", Tensor.Ones(new[] { features }, device));
    }

    /// <summary>Channels (features) normalised.</summary>
    public long Features { get; }
    /// <summary>How far the running statistics move towards each batch's (PyTorch's convention: 0.1).</summary>
    public float Momentum { get; }
    /// <summary>Added to the variance before the square root.</summary>
    public float Eps { get; }
    /// <summary>Scale, [features].</summary>
    public Tensor Gamma { get; }
    /// <summary>Shift, [features].</summary>
    public Tensor Beta { get; }
    /// <summary>Running mean, [features].</summary>
    public Tensor RunningMean { get; }
    /// <summary>Running (unbiased) variance, [features].</summary>
    public Tensor RunningVar { get; }

    /// <summary>
    /// Adds PyTorch's num_batches_tracked (an int64 scalar) to the exchange view. Kernels does not count
    /// batches: PyTorch reads the count only when momentum is None (a cumulative average), which Kernels does
    /// not offer. It is written as 0 so that PyTorch's strict load_state_dict accepts our files, and accepted
    /// and ignored on load.
    /// </summary>
    internal override IEnumerable<ExchangeTensor> ExchangeState() =>
        base.ExchangeState().Append(new ExchangeTensor("num_batches_tracked", null, false));

    private protected Tensor Normalize(Tensor input, string layer)
    {
        long values = input.Shape[0];
        for (int a = 2; a < input.Rank; a++) values *= input.Shape[a];
        if (Training && values <= 1)
            throw new ShapeMismatchException($"{layer} in training mode needs more than one value per channel to estimate a variance; got an input of shape {Tensor.FormatShape(input.ShapeArray)}");
        return input.BatchNorm(Gamma, Beta, RunningMean, RunningVar, Training, Momentum, Eps);
    }
}

/// <summary>Batch normalization of [batch, features] or [batch, features, length] inputs.</summary>
public sealed class BatchNorm1D : BatchNormBase
{
    /// <summary>Normalises <paramref name="features"/> channels.</summary>
    public BatchNorm1D(long features, float momentum = 0.1f, float eps = 1e-5f, Device? device = null) : base(features, momentum, eps, device) { }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if ((input.Rank != 2 && input.Rank != 3) || input.Shape[1] != Features)
            throw new ShapeMismatchException($"BatchNorm1D({Features}) got an input of shape {Tensor.FormatShape(input.ShapeArray)}; it needs [batch, {Features}] or [batch, {Features}, length]");
        return Normalize(input, "BatchNorm1D");
    }
}

/// <summary>Batch normalization of [batch, channels, height, width] inputs, per channel.</summary>
public sealed class BatchNorm2D : BatchNormBase
{
    /// <summary>Normalises <paramref name="channels"/> channels.</summary>
    public BatchNorm2D(long channels, float momentum = 0.1f, float eps = 1e-5f, Device? device = null) : base(channels, momentum, eps, device) { }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4 || input.Shape[1] != Features)
            throw new ShapeMismatchException($"BatchNorm2D({Features}) got an input of shape {Tensor.FormatShape(input.ShapeArray)}; it needs [batch, {Features}, height, width]");
        return Normalize(input, "BatchNorm2D");
    }
}
