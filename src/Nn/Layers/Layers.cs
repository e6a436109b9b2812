namespace Kernels.Nn;

/// <summary>A fully connected layer: y = x W + b, W of shape [in, out] (so the product needs no
/// transpose), b of shape [out].</summary>
public sealed class Dense : Module
{
    /// <summary>A dense layer with Glorot-uniform weights and zero bias (Keras's defaults).</summary>
    public Dense(long inputs, long outputs, bool bias = true, Initializer? weightInit = null, int seed = 0, Device? device = null)
    {
        if (inputs <= 0 || outputs <= 0)
            throw new ArgumentOutOfRangeException(nameof(inputs), $"Dense needs positive sizes; got {inputs} -> {outputs}");
        Inputs = inputs;
        Outputs = outputs;
        var init = weightInit ?? Initializer.GlorotUniform;
        Weight = RegisterParameter("weight", init.Create(new[] { inputs, outputs }, inputs, outputs, seed, device ?? Device.Cpu));
        if (bias) Bias = RegisterParameter("bias", Tensor.Zeros(new[] { outputs }, device));
    }

    /// <summary>Input features.</summary>
    public long Inputs { get; }
    /// <summary>Output features.</summary>
    public long Outputs { get; }
    /// <summary>[in, out]</summary>
    public Tensor Weight { get; }
    /// <summary>[out], or null without bias.</summary>
    public Tensor? Bias { get; }

    /// <summary>PyTorch's Linear keeps its weight as [out, in]: transposed in the exchange view.</summary>
    internal override IEnumerable<ExchangeTensor> ExchangeState() =>
        base.ExchangeState().Select(e => ReferenceEquals(e.Tensor, Weight) ? e with { Transposed = true } : e);

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Forward(input, UnaryOp.Scale, 1f);

    /// <summary>act(x W + b) as one fused op (<see cref="Tensor.Linear(Tensor, Tensor?, UnaryOp, float)"/>):
    /// <see cref="Sequential"/> passes the activation of an <see cref="Activation"/> layer that follows.</summary>
    internal Tensor Forward(Tensor input, UnaryOp activation, float alpha)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank < 1 || input.Shape[^1] != Inputs)
            throw new ShapeMismatchException($"Dense({Inputs} -> {Outputs}) got an input of shape {Tensor.FormatShape(input.ShapeArray)}; its last dimension must be {Inputs}");
        var x = input.Rank == 2 ? input : input.Reshape(-1, Inputs);
        var y = x.Linear(Weight, Bias, activation, alpha);
        if (input.Rank != 2)
        {
            var outShape = input.ShapeArray.ToArray();
            outShape[^1] = Outputs;
            y = y.Reshape(outShape);
        }
        return y;
    }
}

/// <summary>An elementwise activation as a layer.</summary>
public sealed class Activation : Module
{
    private readonly Func<Tensor, Tensor> function;

    private Activation(string name, Func<Tensor, Tensor> function, float slope = 0, UnaryOp? elementwise = null)
    {
        Name = name;
        Slope = slope;
        this.function = function;
        Elementwise = elementwise;
    }

    /// <summary>The unary op this activation is (with <see cref="Slope"/> as its parameter), which a
    /// preceding <see cref="Dense"/> can apply in its GEMM's write-out; null for softmax.</summary>
    internal UnaryOp? Elementwise { get; }

    /// <summary>The activation's name: relu, leaky_relu, sigmoid, tanh, gelu or softmax.</summary>
    public string Name { get; }

    /// <summary>The negative-side slope of leaky_relu (0 for the others).</summary>
    public float Slope { get; }

    /// <summary>The activation called <paramref name="name"/> (one of <see cref="Name"/>'s values), for model
    /// files and importers; <paramref name="slope"/> is used by leaky_relu only.</summary>
    public static Activation FromName(string name, float slope = 0.01f) => name switch
    {
        "relu" => Relu(),
        "leaky_relu" => LeakyRelu(slope),
        "sigmoid" => Sigmoid(),
        "tanh" => Tanh(),
        "gelu" => Gelu(),
        "softmax" => Softmax(),
        _ => throw new ArgumentException($"unknown activation '{name}'; known: relu, leaky_relu, sigmoid, tanh, gelu, softmax", nameof(name)),
    };

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => function(input);

    /// <summary>max(x, 0)</summary>
    public static Activation Relu() => new("relu", x => x.Relu(), 0, UnaryOp.Relu);
    /// <summary>x, or slope * x below 0</summary>
    public static Activation LeakyRelu(float slope = 0.01f) => new("leaky_relu", x => x.LeakyRelu(slope), slope, UnaryOp.LeakyRelu);
    /// <summary>1 / (1 + e^-x)</summary>
    public static Activation Sigmoid() => new("sigmoid", x => x.Sigmoid(), 0, UnaryOp.Sigmoid);
    /// <summary>tanh x</summary>
    public static Activation Tanh() => new("tanh", x => x.Tanh(), 0, UnaryOp.Tanh);
    /// <summary>exact GELU</summary>
    public static Activation Gelu() => new("gelu", x => x.Gelu(), 0, UnaryOp.Gelu);
    /// <summary>softmax over the last axis</summary>
    public static Activation Softmax() => new("softmax", x => x.Softmax());
}

/// <summary>[N, ...] -> [N, prod(...)].</summary>
public sealed class Flatten : Module
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.Flatten();
}

/// <summary>Reshapes each sample: [N, ...] -> [N, shape...].</summary>
public sealed class Reshape : Module
{
    private readonly long[] shape;

    /// <summary>The per-sample target shape (without the batch dimension).</summary>
    public Reshape(params long[] shape) => this.shape = (long[])shape.Clone();

    /// <summary>The per-sample target shape.</summary>
    public IReadOnlyList<long> Shape => shape;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => input.Reshape(new[] { input.Shape[0] }.Concat(shape).ToArray());
}

/// <summary>
/// Dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p);
/// in evaluation, the identity. The mask comes from a counter-based generator (Philox) keyed by the
/// seed and advanced by each call, so it is reproducible, needs no storage (backward regenerates it)
/// and is the same on every device.
/// </summary>
public sealed class Dropout : Module
{
    private long offset;

    /// <summary>Dropout with drop probability p in [0, 1).</summary>
    public Dropout(float p = 0.5f, long seed = 0)
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), $"dropout probability {p} must be in [0, 1)");
        P = p;
        Seed = seed;
    }

    /// <summary>Drop probability.</summary>
    public float P { get; }

    /// <summary>Seed of the mask stream.</summary>
    public long Seed { get; }

    /// <summary>How far into its mask stream this layer is (elements drawn so far): with <see cref="Seed"/>, the
    /// random state a checkpoint keeps so resumed training draws the masks it would have drawn.</summary>
    internal long StreamOffset { get => offset; set => offset = value; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (!Training || P == 0) return input;
        long n = input.Count, callOffset = offset, seed = Seed;
        float p = P;
        offset += n;
        var y = Tensor.Empty(input.ShapeArray, input.Device);
        if (n > 0) Ops.Dropout(input.Buffer, y.Buffer, n, p, seed, callOffset);
        return Tensor.Record(y, "Dropout", new[] { input }, g => new Tensor?[] { Gradients.Dropout(g, p, seed, callOffset) });
    }
}
