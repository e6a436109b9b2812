namespace Kernels;

/// <summary>
/// The geometry of a 2-D convolution over NCHW tensors: x is [Batch, InChannels, InHeight, InWidth],
/// the weights are [OutChannels, InChannels / Groups, KernelHeight, KernelWidth] (PyTorch's layout),
/// y is [Batch, OutChannels, OutHeight, OutWidth]. The native library validates it and its messages
/// name every size.
/// </summary>
public readonly record struct Conv2DGeometry(
    long Batch, long InChannels, long InHeight, long InWidth,
    long OutChannels, long KernelHeight, long KernelWidth,
    long StrideHeight = 1, long StrideWidth = 1, long PadHeight = 0, long PadWidth = 0,
    long DilationHeight = 1, long DilationWidth = 1, long Groups = 1)
{
    /// <summary>
    /// (OutHeight, OutWidth) from the library's own rule, kn_conv2d_output_size:
    /// (InHeight + 2 PadHeight - DilationHeight (KernelHeight - 1) - 1) / StrideHeight + 1, likewise the width.
    /// It validates the geometry as <see cref="Ops.Conv2D"/> does and throws what that call would
    /// (<see cref="ShapeMismatchException"/> or <see cref="KernelsArgumentException"/>, same message).
    /// </summary>
    public unsafe (long Height, long Width) OutputSize()
    {
        long height, width;
        Ensure.Success(NativeMethods.kn_conv2d_output_size(Batch, InChannels, InHeight, InWidth, OutChannels,
            KernelHeight, KernelWidth, StrideHeight, StrideWidth, PadHeight, PadWidth, DilationHeight, DilationWidth,
            Groups, &height, &width));
        return (height, width);
    }

    /// <summary>Output height (see <see cref="OutputSize"/>; throws for a geometry the library refuses).</summary>
    public long OutHeight => OutputSize().Height;

    /// <summary>Output width (see <see cref="OutputSize"/>; throws for a geometry the library refuses).</summary>
    public long OutWidth => OutputSize().Width;

    /// <summary>Elements of x.</summary>
    public long InputElements => Batch * InChannels * InHeight * InWidth;
    /// <summary>Elements of the weights.</summary>
    public long WeightElements => OutChannels * (Groups > 0 ? InChannels / Groups : 0) * KernelHeight * KernelWidth;
    /// <summary>Elements of y.</summary>
    public long OutputElements
    {
        get { var (height, width) = OutputSize(); return Batch * OutChannels * height * width; }
    }

    /// <summary>Multiply-adds times two: 2 * Batch * OutChannels * OutHeight * OutWidth * (InChannels / Groups) * KernelHeight * KernelWidth.</summary>
    public double Flops => 2.0 * OutputElements * (Groups > 0 ? InChannels / Groups : 0) * KernelHeight * KernelWidth;
}

/// <summary>
/// The geometry of 2-D pooling over NCHW tensors: x is [Batch, Channels, InHeight, InWidth], y is
/// [Batch, Channels, OutHeight, OutWidth]. Padding is at most half the kernel, as in PyTorch.
/// </summary>
public readonly record struct Pool2DGeometry(
    long Batch, long Channels, long InHeight, long InWidth, long KernelHeight, long KernelWidth,
    long StrideHeight, long StrideWidth, long PadHeight = 0, long PadWidth = 0, bool CountIncludePad = true)
{
    /// <summary>
    /// (OutHeight, OutWidth) from the library's own rule, kn_pool2d_output_size:
    /// (InHeight + 2 PadHeight - KernelHeight) / StrideHeight + 1, likewise the width. It validates the
    /// geometry as <see cref="Ops.Pool2D"/> does and throws what that call would (same message).
    /// </summary>
    public unsafe (long Height, long Width) OutputSize()
    {
        long height, width;
        Ensure.Success(NativeMethods.kn_pool2d_output_size(Batch, Channels, InHeight, InWidth, KernelHeight, KernelWidth,
            StrideHeight, StrideWidth, PadHeight, PadWidth, &height, &width));
        return (height, width);
    }

    /// <summary>Output height (see <see cref="OutputSize"/>; throws for a geometry the library refuses).</summary>
    public long OutHeight => OutputSize().Height;

    /// <summary>Output width (see <see cref="OutputSize"/>; throws for a geometry the library refuses).</summary>
    public long OutWidth => OutputSize().Width;

    /// <summary>Elements of x.</summary>
    public long InputElements => Batch * Channels * InHeight * InWidth;
    /// <summary>Elements of y.</summary>
    public long OutputElements
    {
        get { var (height, width) = OutputSize(); return Batch * Channels * height * width; }
    }
}

public static unsafe partial class Ops
{
    /// <summary>y = conv2d(x, w) + bias over NCHW tensors (bias may be null). See <see cref="Conv2DGeometry"/>.</summary>
    public static void Conv2D(DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y, in Conv2DGeometry g) =>
        SafeNativeMethods.kn_conv2d_f32(x, w, bias, y,
            g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.KernelHeight, g.KernelWidth,
            g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.DilationHeight, g.DilationWidth, g.Groups);

    /// <summary>dx = the gradient of <see cref="Conv2D"/> with respect to x, from dy; dx is overwritten.</summary>
    public static void Conv2DBackwardData(DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx, in Conv2DGeometry g) =>
        SafeNativeMethods.kn_conv2d_backward_data_f32(dy, w, dx,
            g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.KernelHeight, g.KernelWidth,
            g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.DilationHeight, g.DilationWidth, g.Groups);

    /// <summary>
    /// dw = the gradient with respect to the weights, summed over the batch, and dbias (may be null)
    /// = dy summed over batch, height and width. Both are overwritten.
    /// </summary>
    public static void Conv2DBackwardWeights(DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? dbias, in Conv2DGeometry g) =>
        SafeNativeMethods.kn_conv2d_backward_weights_f32(x, dy, dw, dbias,
            g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.KernelHeight, g.KernelWidth,
            g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.DilationHeight, g.DilationWidth, g.Groups);

    /// <summary>
    /// Max or average pooling. For <see cref="PoolOp.Max"/>, <paramref name="indices"/> (int32, one per
    /// output) receives each window's winner as ih * InWidth + iw, for the backward pass; it may be null.
    /// </summary>
    public static void Pool2D(PoolOp op, DeviceBuffer x, DeviceBuffer y, DeviceBuffer? indices, in Pool2DGeometry g) =>
        SafeNativeMethods.kn_pool2d_f32(op, x, y, indices, g.Batch, g.Channels, g.InHeight, g.InWidth,
            g.KernelHeight, g.KernelWidth, g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.CountIncludePad ? 1 : 0);

    /// <summary>The backward of <see cref="Pool2D"/>; max pooling needs the forward call's indices. dx is overwritten.</summary>
    public static void Pool2DBackward(PoolOp op, DeviceBuffer dy, DeviceBuffer? indices, DeviceBuffer dx, in Pool2DGeometry g) =>
        SafeNativeMethods.kn_pool2d_backward_f32(op, dy, indices, dx, g.Batch, g.Channels, g.InHeight, g.InWidth,
            g.KernelHeight, g.KernelWidth, g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.CountIncludePad ? 1 : 0);

    /// <summary>
    /// Batch normalization of x ([batch, channels, spatial]) per channel. Training: batch statistics
    /// (two-pass variance), running statistics updated with <paramref name="momentum"/> when given, and
    /// mean / inverse standard deviation saved for the backward pass. Inference: running statistics.
    /// </summary>
    public static void BatchNorm(DeviceBuffer x, DeviceBuffer y, DeviceBuffer gamma, DeviceBuffer beta,
        DeviceBuffer? runningMean, DeviceBuffer? runningVar, DeviceBuffer? saveMean, DeviceBuffer? saveInvStd,
        long batch, long channels, long spatial, float eps, float momentum, bool training) =>
        SafeNativeMethods.kn_batch_norm_f32(x, y, gamma, beta, runningMean, runningVar, saveMean, saveInvStd,
            batch, channels, spatial, eps, momentum, training ? 1 : 0);

    /// <summary>
    /// The backward of <see cref="BatchNorm"/> from its saved mean and inverse standard deviation:
    /// dgamma = sum(dy * xhat), dbeta = sum(dy), and dx (may be null) in training or inference form.
    /// </summary>
    public static void BatchNormBackward(DeviceBuffer x, DeviceBuffer dy, DeviceBuffer gamma, DeviceBuffer saveMean,
        DeviceBuffer saveInvStd, DeviceBuffer? dx, DeviceBuffer dgamma, DeviceBuffer dbeta,
        long batch, long channels, long spatial, bool training) =>
        SafeNativeMethods.kn_batch_norm_backward_f32(x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta,
            batch, channels, spatial, training ? 1 : 0);
}
