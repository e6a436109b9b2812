namespace Kernels.Nn;

public sealed partial class Tensor
{
    /// <summary>
    /// A dense layer's product: this [m, k] times <paramref name="weight"/> [k, n] plus
    /// <paramref name="bias"/> [n] (optional), as one kernel call (on the CPU the bias is added inside
    /// the GEMM's write-out) and one autograd node. Same values as <c>MatMul(weight).Add(bias)</c>.
    /// </summary>
    public Tensor Linear(Tensor weight, Tensor? bias = null) => Linear(weight, bias, UnaryOp.Scale, 1f);

    /// <summary>
    /// act(this W + b) with the activation fused into the GEMM's write-out and its derivative into the
    /// bias gradient's pass: <paramref name="activation"/> with its parameter <paramref name="alpha"/>,
    /// <see cref="UnaryOp.Scale"/> with alpha 1 being the identity. An activation whose derivative
    /// needs its input (GELU) while gradients are recorded is applied as a separate op (its input is
    /// then kept for the backward); the values are the same either way.
    /// </summary>
    internal Tensor Linear(Tensor weight, Tensor? bias, UnaryOp activation, float alpha)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (Rank != 2 || weight.Rank != 2 || weight.shape[0] != shape[1])
            throw new ShapeMismatchException($"Linear: input {FormatShape(shape)} times weight {FormatShape(weight.shape)}: needs [m, k] x [k, n]");
        long m = shape[0], k = shape[1], n = weight.shape[1];
        if (bias is not null && (bias.Rank != 1 || bias.shape[0] != n))
            throw new ShapeMismatchException($"Linear: bias has shape {FormatShape(bias.ShapeArray)} but the weight {FormatShape(weight.shape)} needs [{n}]");
        if (weight.Device != Device || (bias is not null && bias.Device != Device))
            throw new DeviceMismatchException($"Linear: input {FormatShape(shape)} is on {Device.Name} but weight {FormatShape(weight.shape)} is on {weight.Device.Name}" +
                                              (bias is null ? "" : $" and bias {FormatShape(bias.ShapeArray)} on {bias.Device.Name}"));
        bool identity = activation == UnaryOp.Scale && alpha == 1f;
        // The backward gets the derivative from the output y: directly for the ops whose rule says so,
        // and for relu / leaky relu (alpha >= 0) because y keeps x's sign. Others need the
        // pre-activation, which a fused forward does not keep: they run after the product.
        bool fromY = identity || Ops.UnaryBackwardUsesOutput(activation) || activation == UnaryOp.Relu ||
                     (activation == UnaryOp.LeakyRelu && alpha >= 0);
        var x = this;
        var inputs = bias is null ? new[] { x, weight } : new[] { x, weight, bias };
        if (!fromY && WillRecord(inputs))
            return Linear(weight, bias, UnaryOp.Scale, 1f).ActivationOf(activation, alpha);

        DeviceBuffer xData = Float32Buffer("Linear"), wData = weight.Float32Buffer("Linear");
        DeviceBuffer? bData = bias?.Float32Buffer("Linear");
        var y = Empty(new[] { m, n }, Device);
        if (y.Count > 0) Ops.Linear(Kernels.Transpose.NoTranspose, m, n, k, xData, wData, bData, activation, alpha, y.Buffer);
        return Record(y, "Linear", inputs, g => Gradients.Linear(x, weight, bias, y, activation, alpha, g));
    }

    private Tensor ActivationOf(UnaryOp op, float alpha) => Unary(op, this, alpha);
}
