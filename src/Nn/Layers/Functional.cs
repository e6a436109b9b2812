namespace Kernels.Nn;

/// <summary>
/// A placeholder in the functional style (Keras's functional API): apply layers to an
/// <see cref="Input"/> to describe a graph, then build a <see cref="Functional"/> module from the
/// input and the output. Branches and merges (residual connections) are allowed:
/// <code>
/// var x = Symbolic.Input(784);
/// var h = new Dense(784, 256).Call(x);
/// var y = new Dense(256, 10).Call(Activation.Relu().Call(h));
/// var network = new Functional(x, y);
/// </code>
/// </summary>
public sealed class Symbolic
{
    internal Symbolic(Module? layer, Func<Tensor[], Tensor>? merge, string name, params Symbolic[] inputs)
    {
        Layer = layer;
        Merge = merge;
        Name = name;
        Inputs = inputs;
    }

    internal Module? Layer { get; }
    internal Func<Tensor[], Tensor>? Merge { get; }
    internal Symbolic[] Inputs { get; }

    /// <summary>What produced this value (a layer type, a merge, or "input").</summary>
    public string Name { get; }

    /// <summary>The model input; <paramref name="sampleShape"/> is the shape of one sample, without the batch dimension.</summary>
    public static Symbolic Input(params long[] sampleShape)
    {
        var s = new Symbolic(null, null, "input") { SampleShape = Tensor.CheckShape(sampleShape) };
        return s;
    }

    /// <summary>The per-sample shape declared by <see cref="Input"/> (null for computed values).</summary>
    public long[]? SampleShape { get; private init; }

    /// <summary>Elementwise sum of two branches (a residual connection).</summary>
    public static Symbolic operator +(Symbolic a, Symbolic b) => new(null, t => t[0].Add(t[1]), "add", a, b);

    /// <summary>Elementwise product of two branches (gating).</summary>
    public static Symbolic operator *(Symbolic a, Symbolic b) => new(null, t => t[0].Mul(t[1]), "mul", a, b);
}


/// <summary>A module made of a graph of layers built in the functional style.</summary>
public sealed class Functional : Module
{
    private readonly Symbolic input;
    private readonly Symbolic output;
    private readonly List<Symbolic> order = new();

    /// <summary>Builds the module computing <paramref name="output"/> from <paramref name="input"/>.</summary>
    public Functional(Symbolic input, Symbolic output)
    {
        this.input = input ?? throw new ArgumentNullException(nameof(input));
        this.output = output ?? throw new ArgumentNullException(nameof(output));
        if (input.SampleShape is null) throw new ArgumentException("the input must come from Symbolic.Input", nameof(input));
        var visited = new HashSet<Symbolic>(ReferenceEqualityComparer.Instance);
        var registered = new HashSet<Module>(ReferenceEqualityComparer.Instance);
        Visit(output, visited);
        if (!visited.Contains(input)) throw new ArgumentException("the output does not depend on the given input", nameof(output));
        foreach (var node in order)
            if (node.Layer is not null && registered.Add(node.Layer))
                RegisterModule($"{registered.Count - 1}", node.Layer);
    }

    /// <summary>The graph's input placeholder.</summary>
    internal Symbolic InputNode => input;

    /// <summary>The graph's output.</summary>
    internal Symbolic OutputNode => output;

    /// <summary>Every node, inputs before the nodes that use them (the order <see cref="Forward"/> runs them in).</summary>
    internal IReadOnlyList<Symbolic> Nodes => order;

    /// <summary>Depth-first post-order from <paramref name="root"/> (each node after its inputs, inputs in
    /// order) with an explicit stack: a deep graph (an imported ONNX file of 100,000 nodes) must not
    /// overflow the call stack, which would end the process.</summary>
    private void Visit(Symbolic root, HashSet<Symbolic> visited)
    {
        var stack = new Stack<(Symbolic Node, bool InputsDone)>();
        stack.Push((root, false));
        while (stack.Count > 0)
        {
            var (node, inputsDone) = stack.Pop();
            if (inputsDone)
            {
                order.Add(node);
                continue;
            }
            if (!visited.Add(node)) continue;
            if (node.Inputs.Length == 0 && !ReferenceEquals(node, input))
                throw new ArgumentException("the graph has an input other than the one given to Functional", nameof(root));
            stack.Push((node, true));
            for (int i = node.Inputs.Length - 1; i >= 0; i--)
                if (!visited.Contains(node.Inputs[i])) stack.Push((node.Inputs[i], false));
        }
    }

    internal override bool MovesActivations => true;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        var expected = input.SampleShape!;
        if (x.Rank != expected.Length + 1 || !x.ShapeArray.AsSpan(1).SequenceEqual(expected))
            throw new ShapeMismatchException($"the model expects inputs [N, {string.Join(", ", expected)}] but got {Tensor.FormatShape(x.ShapeArray)}");
        var values = new Dictionary<Symbolic, Tensor>(ReferenceEqualityComparer.Instance) { [input] = x };
        foreach (var node in order)
        {
            if (ReferenceEquals(node, input)) continue;
            var args = node.Inputs.Select(i => values[i]).ToArray();
            // Model parallelism: a layer gets its input on its own device; a merge takes its operands on
            // the first one's (differentiable copies, no-ops when everything is on one device).
            if (node.Layer is not null)
            {
                if (node.Layer.InputDevice is { } device && !ReferenceEquals(args[0].Device, device)) args[0] = args[0].To(device);
                values[node] = node.Layer.Forward(args[0]);
                continue;
            }
            for (int k = 1; k < args.Length; k++)
                if (!ReferenceEquals(args[k].Device, args[0].Device)) args[k] = args[k].To(args[0].Device);
            values[node] = node.Merge!(args);
        }
        return values[output];
    }
}
