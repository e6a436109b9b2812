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
    public static void Conv2D(DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y, in Conv2DGeometry g)
    {
        using BufferLease lx = BufferLease.Required(x, nameof(x)), lw = BufferLease.Required(w, nameof(w)),
                          lb = BufferLease.Optional(bias, nameof(bias)), ly = BufferLease.Required(y, nameof(y));
        Ensure.Success(NativeMethods.kn_conv2d_f32(lx.Handle, lw.Handle, lb.Handle, ly.Handle,
            g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.KernelHeight, g.KernelWidth,
            g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.DilationHeight, g.DilationWidth, g.Groups));
    }

    /// <summary>dx = the gradient of <see cref="Conv2D"/> with respect to x, from dy; dx is overwritten.</summary>
    public static void Conv2DBackwardData(DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx, in Conv2DGeometry g)
    {
        using BufferLease ldy = BufferLease.Required(dy, nameof(dy)), lw = BufferLease.Required(w, nameof(w)),
                          ldx = BufferLease.Required(dx, nameof(dx));
        Ensure.Success(NativeMethods.kn_conv2d_backward_data_f32(ldy.Handle, lw.Handle, ldx.Handle,
            g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.KernelHeight, g.KernelWidth,
            g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.DilationHeight, g.DilationWidth, g.Groups));
    }

    /// <summary>
    /// dw = the gradient with respect to the weights, summed over the batch, and dbias (may be null)
    /// = dy summed over batch, height and width. Both are overwritten.
    /// </summary>
    public static void Conv2DBackwardWeights(DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? dbias, in Conv2DGeometry g)
    {
        using BufferLease lx = BufferLease.Required(x, nameof(x)), ldy = BufferLease.Required(dy, nameof(dy)),
                          ldw = BufferLease.Required(dw, nameof(dw)), ldb = BufferLease.Optional(dbias, nameof(dbias));
        Ensure.Success(NativeMethods.kn_conv2d_backward_weights_f32(lx.Handle, ldy.Handle, ldw.Handle, ldb.Handle,
            g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.KernelHeight, g.KernelWidth,
            g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth, g.DilationHeight, g.DilationWidth, g.Groups));
    }

    /// <summary>
    /// Max or average pooling. For <see cref="PoolOp.Max"/>, <paramref name="indices"/> (int32, one per
    /// output) receives each window's winner as ih * InWidth + iw, for the backward pass; it may be null.
    /// </summary>
    public static void Pool2D(PoolOp op, DeviceBuffer x, DeviceBuffer y, DeviceBuffer? indices, in Pool2DGeometry g)
    {
        using BufferLease lx = BufferLease.Required(x, nameof(x)), ly = BufferLease.Required(y, nameof(y)),
                          li = BufferLease.Optional(indices, nameof(indices));
        Ensure.Success(NativeMethods.kn_pool2d_f32(op, lx.Handle, ly.Handle, li.Handle, g.Batch, g.Channels, g.InHeight,
            g.InWidth, g.KernelHeight, g.KernelWidth, g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth,
            g.CountIncludePad ? 1 : 0));
    }

    /// <summary>The backward of <see cref="Pool2D"/>; max pooling needs the forward call's indices. dx is overwritten.</summary>
    public static void Pool2DBackward(PoolOp op, DeviceBuffer dy, DeviceBuffer? indices, DeviceBuffer dx, in Pool2DGeometry g)
    {
        using BufferLease ldy = BufferLease.Required(dy, nameof(dy)), li = BufferLease.Optional(indices, nameof(indices)),
                          ldx = BufferLease.Required(dx, nameof(dx));
        Ensure.Success(NativeMethods.kn_pool2d_backward_f32(op, ldy.Handle, li.Handle, ldx.Handle, g.Batch, g.Channels,
            g.InHeight, g.InWidth, g.KernelHeight, g.KernelWidth, g.StrideHeight, g.StrideWidth, g.PadHeight, g.PadWidth,
            g.CountIncludePad ? 1 : 0));
    }

    /// <summary>
    /// Batch normalization of x ([batch, channels, spatial]) per channel. Training: batch statistics
    /// (two-pass variance), running statistics updated with <paramref name="momentum"/> when given, and
    /// mean / inverse standard deviation saved for the backward pass. Inference: running statistics.
    /// </summary>
    public static void BatchNorm(DeviceBuffer x, DeviceBuffer y, DeviceBuffer gamma, DeviceBuffer beta,
        DeviceBuffer? runningMean, DeviceBuffer? runningVar, DeviceBuffer? saveMean, DeviceBuffer? saveInvStd,
        long batch, long channels, long spatial, float eps, float momentum, bool training)
    {
        using BufferLease lx = BufferLease.Required(x, nameof(x)), ly = BufferLease.Required(y, nameof(y)),
                          lg = BufferLease.Required(gamma, nameof(gamma)), lb = BufferLease.Required(beta, nameof(beta)),
                          lrm = BufferLease.Optional(runningMean, nameof(runningMean)),
                          lrv = BufferLease.Optional(runningVar, nameof(runningVar)),
                          lsm = BufferLease.Optional(saveMean, nameof(saveMean)),
                          lsi = BufferLease.Optional(saveInvStd, nameof(saveInvStd));
        Ensure.Success(NativeMethods.kn_batch_norm_f32(lx.Handle, ly.Handle, lg.Handle, lb.Handle, lrm.Handle, lrv.Handle,
            lsm.Handle, lsi.Handle, batch, channels, spatial, eps, momentum, training ? 1 : 0));
    }

    /// <summary>
    /// The backward of <see cref="BatchNorm"/> from its saved mean and inverse standard deviation:
    /// dgamma = sum(dy * xhat), dbeta = sum(dy), and dx (may be null) in training or inference form.
    /// </summary>
    public static void BatchNormBackward(DeviceBuffer x, DeviceBuffer dy, DeviceBuffer gamma, DeviceBuffer saveMean,
        DeviceBuffer saveInvStd, DeviceBuffer? dx, DeviceBuffer dgamma, DeviceBuffer dbeta,
        long batch, long channels, long spatial, bool training)
    {
        using BufferLease lx = BufferLease.Required(x, nameof(x)), ldy = BufferLease.Required(dy, nameof(dy)),
                          lg = BufferLease.Required(gamma, nameof(gamma)), lsm = BufferLease.Required(saveMean, nameof(saveMean)),
                          lsi = BufferLease.Required(saveInvStd, nameof(saveInvStd)), ldx = BufferLease.Optional(dx, nameof(dx)),
                          ldg = BufferLease.Required(dgamma, nameof(dgamma)), ldb = BufferLease.Required(dbeta, nameof(dbeta));
        Ensure.Success(NativeMethods.kn_batch_norm_backward_f32(lx.Handle, ldy.Handle, lg.Handle, lsm.Handle, lsi.Handle,
            ldx.Handle, ldg.Handle, ldb.Handle, batch, channels, spatial, training ? 1 : 0));
    }
}
