// ONNX export: our layers -> ONNX nodes (opset 17, IR version 8).
//   Dense                 Gemm on [N, in] (our weight [in, out] is Gemm's B as it is); MatMul (+ Add) on higher ranks
//   Conv2D                Conv (kernel_shape, strides, pads, dilations, group; bias optional)
//   MaxPool2D, AvgPool2D  MaxPool, AveragePool (count_include_pad); floor mode, as ours
//   GlobalAvgPool2D       GlobalAveragePool + Flatten (ours gives [N, C])
//   BatchNorm1D/2D        BatchNormalization with the running statistics and epsilon (inference form)
//   Activation            Relu, LeakyRelu (alpha), Sigmoid, Tanh, Softmax (axis -1), gelu as 0.5 x (1 + Erf(x / sqrt 2))
//   Dropout               Identity
//   Flatten, Reshape      Flatten (axis 1); Reshape to [0, sizes...] (the batch copied, -1 resolved at export)
//   Embedding             Gather (axis 0) on the int64 model input
//   SimpleRNN, LSTM, GRU  Transpose -> RNN / LSTM / GRU (gates reordered; GRU linear_before_reset = 1) -> Squeeze
//                         [-> Slice reversing the steps for goBackwards] -> Transpose
//   Bidirectional         one bidirectional RNN / LSTM / GRU; concat as Transpose + Reshape, sum / ave / mul as
//                         ReduceSum / ReduceMean / ReduceProd over the direction axis
//   Functional + and *    Add, Mul
// Refused (NotSupportedException naming the module path): any other Module subclass, a stateful recurrent
// layer, an Embedding that is not on the model input. Shapes that do not fit the layers (ShapeMismatchException,
// naming the layer) are found at export, before anything is written.
using System.Globalization;
using Google.Protobuf;
using Kernels.Nn.OnnxProto;

namespace Kernels.Nn;

/// <summary>
/// ONNX, the exchange format of trained networks: <see cref="Export"/> writes a model for ONNX Runtime,
/// TensorRT, OpenVINO and the other runtimes (and Netron, to look at it); the importer reads one back.
/// </summary>
public static partial class Onnx
{
    /// <summary>The operator-set version exported: 17, the newest that Debian's onnx 1.12 checker knows
    /// (ONNX Runtime 1.20 runs up to 21).</summary>
    public const int ExportOpset = 17;

    /// <summary>The IR (file format) version written: 8, ONNX 1.10 to 1.12's.</summary>
    public const int ExportIrVersion = 8;

    /// <summary>
    /// Writes <paramref name="model"/> (a <see cref="Sequential"/>, a <see cref="Functional"/> or a single
    /// layer) as an ONNX model in inference form: dropout is the identity and batch normalization uses its
    /// running statistics, whatever the module's training mode. The graph input is named "input", the output
    /// "output"; the batch dimension is symbolic ("N"), so any batch size runs. A Functional model's sample
    /// shape comes from its <see cref="Symbolic.Input"/>; any other module needs <paramref name="sampleShape"/>
    /// (the shape of one sample, without the batch dimension). A model whose first layer is an
    /// <see cref="Embedding"/> takes int64 token ids.
    /// <para>
    /// Weights become initializers named as in <see cref="Module.NamedState"/> ("0.weight"), each node is
    /// named after its module's path. The file is written to a temporary beside <paramref name="path"/> and
    /// renamed over it when complete. A layer with no ONNX form gives a <see cref="NotSupportedException"/>
    /// naming its path and type, and nothing is written.
    /// </para>
    /// </summary>
    public static void Export(Module model, string path, long[]? sampleShape = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var bytes = ToBytes(model, sampleShape);
        AtomicFile.Write(path, "ONNX model", stream => stream.Write(bytes));
    }

    /// <summary>The ONNX model of <paramref name="model"/> as the bytes <see cref="Export"/> writes.</summary>
    public static byte[] ExportToBytes(Module model, long[]? sampleShape = null) => ToBytes(model, sampleShape);

    /// <summary>Same as <see cref="Onnx.Export"/>.</summary>
    public static void ExportOnnx(this Module model, string path, long[]? sampleShape = null) => Export(model, path, sampleShape);

    /// <summary>Exports the model's network (see <see cref="Onnx.Export"/>).</summary>
    public static void ExportOnnx(this Model model, string path, long[]? sampleShape = null) =>
        Export((model ?? throw new ArgumentNullException(nameof(model))).Network, path, sampleShape);

    private static byte[] ToBytes(Module model, long[]? sampleShape)
    {
        var proto = BuildModel(model, sampleShape);
        // Protocol buffers stop at 2 GiB; larger models need ONNX's external-data files, not written here.
        long size = proto.CalculateSize();
        if (size > int.MaxValue)
            throw new NotSupportedException($"ONNX export: the model needs {size} bytes, beyond protobuf's 2 GiB limit (external data files are not written)");
        return proto.ToByteArray();
    }

    /// <summary>The ONNX ModelProto of <paramref name="model"/> (see <see cref="Export"/>).</summary>
    internal static ModelProto BuildModel(Module model, long[]? sampleShape)
    {
        ArgumentNullException.ThrowIfNull(model);
        var builder = new OnnxGraphBuilder(model);
        builder.Build(sampleShape);
        var proto = new ModelProto
        {
            IrVersion = ExportIrVersion,
            ProducerName = "Kernels.Nn",
            ProducerVersion = typeof(Onnx).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = builder.Graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = ExportOpset });
        return proto;
    }
}

/// <summary>
/// Walks a module tree and writes its ONNX graph: one call per layer, which adds the layer's nodes and
/// returns the name of its output value. Shapes are followed at export time (batch = -1, the symbolic N)
/// so that a layer that needs them (Dense on higher ranks, Reshape) knows them and a model whose shapes
/// do not fit fails here, naming the layer, rather than in the runtime.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private const long Batch = -1;
    private readonly Module root;
    private readonly Dictionary<Tensor, string> stateNames = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<string> initializers = new();
    private readonly HashSet<string> nodeNames = new();

    public OnnxGraphBuilder(Module root)
    {
        this.root = root;
        foreach (var (name, tensor) in root.NamedState()) stateNames.TryAdd(tensor, name);
    }

    public GraphProto Graph { get; } = new() { Name = "main" };

    /// <summary>A value of the graph: its name and its shape (dimension 0 is the batch, -1).</summary>
    private readonly record struct Value(string Name, long[] Shape, bool Int64 = false);

    public void Build(long[]? sampleShape)
    {
        long[] sample;
        if (root is Functional functional)
        {
            var declared = functional.InputNode.SampleShape!;
            if (sampleShape is not null && !sampleShape.AsSpan().SequenceEqual(declared))
                throw new ArgumentException($"ONNX export: sampleShape [{string.Join(", ", sampleShape)}] differs from the model's input [{string.Join(", ", declared)}]", nameof(sampleShape));
            sample = declared;
        }
        else
        {
            sample = sampleShape ?? throw new ArgumentException(
                $"ONNX export of a {root.GetType().Name} needs sampleShape, the shape of one input sample without the batch dimension (a Functional model knows it from its Input)", nameof(sampleShape));
            foreach (var d in sample)
                if (d <= 0) throw new ArgumentException($"ONNX export: sampleShape [{string.Join(", ", sample)}] must have positive sizes", nameof(sampleShape));
        }

        bool ids = TakesTokenIds(root);
        var input = new Value("input", new[] { Batch }.Concat(sample).ToArray(), ids);
        Graph.Input.Add(ValueInfo(input));
        var output = Emit(root, "", input);
        if (output.Int64)
            throw new NotSupportedException("ONNX export: the model's output is its int64 input (no layer)");
        // The graph output is "output": rename the value the last node writes (or copy the input through).
        var last = Graph.Node.LastOrDefault(n => n.Output.Contains(output.Name));
        if (last is null || output.Name == "input")
            Node("Identity", "output", new[] { output.Name }, "output");
        else
            for (int i = 0; i < last.Output.Count; i++)
                if (last.Output[i] == output.Name) last.Output[i] = "output";
        Graph.Output.Add(ValueInfo(output with { Name = "output" }));
    }

    /// <summary>Whether the model's first layer is an Embedding (the input is then int64 token ids).</summary>
    private static bool TakesTokenIds(Module module) => module switch
    {
        Embedding => true,
        Sequential s => s.Layers.Count > 0 && TakesTokenIds(s.Layers[0]),
        Functional f => f.Nodes.Any(n => n.Inputs.Length == 1 && ReferenceEquals(n.Inputs[0], f.InputNode) && n.Layer is Embedding),
        _ => false,
    };

    // ---- Layers ------------------------------------------------------------------------------------

    private Value Emit(Module module, string path, Value x)
    {
        string name = path.Length == 0 ? module.GetType().Name : path;
        // A layer used twice (a shared layer of a Functional graph) gets a second scope, "path_1", so that
        // its nodes and values stay distinct (ONNX values are assigned once).
        if (module is not (Sequential or Functional)) name = UniqueScope(name);
        if (x.Int64 && module is not (Embedding or Sequential or Functional))
            throw new NotSupportedException($"ONNX export: layer '{name}' ({module.GetType().Name}) receives the int64 token ids; only an Embedding can take them");
        switch (module)
        {
            case Sequential sequential:
            {
                var value = x;
                for (int i = 0; i < sequential.Layers.Count; i++)
                    value = Emit(sequential.Layers[i], Child(path, i), value);
                return value;
            }
            case Functional functional: return EmitFunctional(functional, path, x);
            case Dense dense: return EmitDense(dense, name, x);
            case Conv2D conv: return EmitConv(conv, name, x);
            case MaxPool2D pool: return EmitPool("MaxPool", name, x, pool.KernelSize, pool.Stride, pool.Padding, null);
            case AvgPool2D pool: return EmitPool("AveragePool", name, x, pool.KernelSize, pool.Stride, pool.Padding, pool.CountIncludePad);
            case GlobalAvgPool2D:
            {
                RequireRank(name, module, x, 4, "[batch, channels, height, width]");
                var pooled = Node("GlobalAveragePool", $"{name}/GlobalAveragePool", new[] { x.Name }, $"{name}/pooled");
                return new Value(Node("Flatten", $"{name}/Flatten", new[] { pooled }, name, Int("axis", 1)), new[] { Batch, x.Shape[1] });
            }
            case BatchNormBase norm: return EmitBatchNorm(norm, name, x);
            case Activation activation: return EmitActivation(activation, name, x);
            case Dropout: return x with { Name = Node("Identity", name, new[] { x.Name }, name) };
            case Flatten:
            {
                if (x.Shape.Length < 2) return x with { Name = Node("Identity", name, new[] { x.Name }, name) };
                return new Value(Node("Flatten", name, new[] { x.Name }, name, Int("axis", 1)), new[] { Batch, Product(x.Shape, 1) });
            }
            case Reshape reshape: return EmitReshape(reshape, name, x);
            case Embedding embedding: return EmitEmbedding(embedding, name, x);
            case RecurrentLayer recurrent: return EmitRecurrent(new[] { recurrent }, null, name, path, x);
            case Bidirectional bidirectional: return EmitRecurrent(new[] { bidirectional.Forwards, bidirectional.Backwards }, bidirectional.MergeMode, name, path, x);
            default:
                throw new NotSupportedException($"ONNX export: layer '{name}' is a {module.GetType().Name}, which has no ONNX form here; supported: Sequential, Functional, Dense, Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, BatchNorm1D, BatchNorm2D, Activation, Dropout, Flatten, Reshape, Embedding, SimpleRNN, LSTM, GRU, Bidirectional");
        }
    }

    private static string Child(string path, int index) =>
        path.Length == 0 ? index.ToString(CultureInfo.InvariantCulture) : $"{path}.{index.ToString(CultureInfo.InvariantCulture)}";

    private Value EmitFunctional(Functional functional, string path, Value x)
    {
        // Functional registers each distinct layer once, numbered in the order the graph first uses it.
        var index = new Dictionary<Module, int>(ReferenceEqualityComparer.Instance);
        var values = new Dictionary<Symbolic, Value>(ReferenceEqualityComparer.Instance) { [functional.InputNode] = x };
        int merges = 0;
        foreach (var node in functional.Nodes)
        {
            if (ReferenceEquals(node, functional.InputNode)) continue;
            var args = node.Inputs.Select(i => values[i]).ToArray();
            if (node.Layer is not null)
            {
                if (!index.TryGetValue(node.Layer, out int i)) index[node.Layer] = i = index.Count;
                values[node] = Emit(node.Layer, Child(path, i), args[0]);
            }
            else
            {
                string op = node.Name switch
                {
                    "add" => "Add",
                    "mul" => "Mul",
                    _ => throw new NotSupportedException($"ONNX export: merge '{node.Name}' in '{(path.Length == 0 ? "Functional" : path)}' has no ONNX form"),
                };
                string name = $"{(path.Length == 0 ? "" : path + ".")}{node.Name}{merges++}";
                if (!args[0].Shape.AsSpan().SequenceEqual(args[1].Shape))
                    throw new ShapeMismatchException($"ONNX export: '{name}' adds or multiplies [{Dims(args[0].Shape)}] and [{Dims(args[1].Shape)}]; the shapes must be equal");
                values[node] = new Value(Node(op, name, new[] { args[0].Name, args[1].Name }, name), args[0].Shape);
            }
        }
        return values[functional.OutputNode];
    }

    private Value EmitDense(Dense dense, string name, Value x)
    {
        if (x.Shape.Length < 2 || x.Shape[^1] != dense.Inputs)
            throw new ShapeMismatchException($"ONNX export: Dense '{name}' ({dense.Inputs} -> {dense.Outputs}) gets [{Dims(x.Shape)}]; its last dimension must be {dense.Inputs}");
        var shape = x.Shape.ToArray();
        shape[^1] = dense.Outputs;
        string weight = Weight(dense.Weight);
        if (x.Shape.Length == 2)
        {
            // Gemm: x [N, in] times W [in, out] (our layout is already B, no transB), plus the bias row.
            var inputs = dense.Bias is null ? new[] { x.Name, weight } : new[] { x.Name, weight, Weight(dense.Bias) };
            return new Value(Node("Gemm", name, inputs, name), shape);
        }
        // Higher ranks: MatMul broadcasts W over the leading dimensions (Gemm takes matrices only).
        if (dense.Bias is null) return new Value(Node("MatMul", name, new[] { x.Name, weight }, name), shape);
        var product = Node("MatMul", $"{name}/MatMul", new[] { x.Name, weight }, $"{name}/product");
        return new Value(Node("Add", $"{name}/Add", new[] { product, Weight(dense.Bias) }, name), shape);
    }

    private Value EmitConv(Conv2D conv, string name, Value x)
    {
        RequireRank(name, conv, x, 4, $"[batch, {conv.InChannels}, height, width]");
        if (x.Shape[1] != conv.InChannels)
            throw new ShapeMismatchException($"ONNX export: Conv2D '{name}' ({conv.InChannels} -> {conv.OutChannels}) gets [{Dims(x.Shape)}]; it needs {conv.InChannels} channels");
        // The library's own geometry rule gives the output size (and refuses what the layer would refuse).
        var (height, width) = new Conv2DGeometry(1, conv.InChannels, x.Shape[2], x.Shape[3], conv.OutChannels,
            conv.KernelSize.Height, conv.KernelSize.Width, conv.Stride.Height, conv.Stride.Width, conv.Padding.Height,
            conv.Padding.Width, conv.Dilation.Height, conv.Dilation.Width, conv.Groups).OutputSize();
        var inputs = conv.Bias is null ? new[] { x.Name, Weight(conv.Weight) } : new[] { x.Name, Weight(conv.Weight), Weight(conv.Bias) };
        var output = Node("Conv", name, inputs, name,
            Ints("kernel_shape", conv.KernelSize.Height, conv.KernelSize.Width),
            Ints("strides", conv.Stride.Height, conv.Stride.Width),
            Ints("pads", conv.Padding.Height, conv.Padding.Width, conv.Padding.Height, conv.Padding.Width),
            Ints("dilations", conv.Dilation.Height, conv.Dilation.Width),
            Int("group", conv.Groups));
        return new Value(output, new[] { Batch, conv.OutChannels, height, width });
    }

    private Value EmitPool(string op, string name, Value x, Size2 kernel, Size2 stride, Size2 padding, bool? countIncludePad)
    {
        RequireRank(name, null, x, 4, "[batch, channels, height, width]");
        var (height, width) = new Pool2DGeometry(1, x.Shape[1], x.Shape[2], x.Shape[3], kernel.Height, kernel.Width,
            stride.Height, stride.Width, padding.Height, padding.Width, countIncludePad ?? true).OutputSize();
        var attributes = new List<AttributeProto>
        {
            Ints("kernel_shape", kernel.Height, kernel.Width),
            Ints("strides", stride.Height, stride.Width),
            Ints("pads", padding.Height, padding.Width, padding.Height, padding.Width),
        };
        if (countIncludePad is bool include) attributes.Add(Int("count_include_pad", include ? 1 : 0));
        return new Value(Node(op, name, new[] { x.Name }, name, attributes.ToArray()), new[] { Batch, x.Shape[1], height, width });
    }

    private Value EmitBatchNorm(BatchNormBase norm, string name, Value x)
    {
        string layer = norm.GetType().Name;
        bool fits = norm is BatchNorm2D ? x.Shape.Length == 4 : x.Shape.Length is 2 or 3;
        if (!fits || x.Shape[1] != norm.Features)
            throw new ShapeMismatchException($"ONNX export: {layer} '{name}' ({norm.Features}) gets [{Dims(x.Shape)}]");
        // Inference form: (x - running_mean) / sqrt(running_var + eps) * weight + bias.
        var inputs = new[] { x.Name, Weight(norm.Gamma), Weight(norm.Beta), Weight(norm.RunningMean), Weight(norm.RunningVar) };
        return x with { Name = Node("BatchNormalization", name, inputs, name, Float("epsilon", norm.Eps), Float("momentum", 1 - norm.Momentum)) };
    }

    private Value EmitActivation(Activation activation, string name, Value x)
    {
        switch (activation.Name)
        {
            case "relu": return x with { Name = Node("Relu", name, new[] { x.Name }, name) };
            case "leaky_relu": return x with { Name = Node("LeakyRelu", name, new[] { x.Name }, name, Float("alpha", activation.Slope)) };
            case "sigmoid": return x with { Name = Node("Sigmoid", name, new[] { x.Name }, name) };
            case "tanh": return x with { Name = Node("Tanh", name, new[] { x.Name }, name) };
            case "softmax": return x with { Name = Node("Softmax", name, new[] { x.Name }, name, Int("axis", -1)) };
            case "gelu":
            {
                // Opset 17 has no Gelu (it came in 20): the exact form 0.5 x (1 + erf(x / sqrt 2)).
                string sqrt2 = Constant($"{name}/sqrt2", MathF.Sqrt(2f));
                string one = Constant($"{name}/one", 1f);
                string half = Constant($"{name}/half", 0.5f);
                var scaled = Node("Div", $"{name}/Div", new[] { x.Name, sqrt2 }, $"{name}/scaled");
                var erf = Node("Erf", $"{name}/Erf", new[] { scaled }, $"{name}/erf");
                var plusOne = Node("Add", $"{name}/Add", new[] { erf, one }, $"{name}/plus_one");
                var times = Node("Mul", $"{name}/Mul", new[] { x.Name, plusOne }, $"{name}/times_x");
                return x with { Name = Node("Mul", $"{name}/Half", new[] { times, half }, name) };
            }
            default:
                throw new NotSupportedException($"ONNX export: activation '{activation.Name}' of layer '{name}' has no ONNX form here");
        }
    }

    private Value EmitReshape(Reshape reshape, string name, Value x)
    {
        // Resolve the per-sample shape (one -1 at most) here, so the file holds plain sizes; the batch
        // stays "copy dimension 0" (ONNX's 0 in a Reshape shape), so any batch size runs.
        long count = Product(x.Shape, 1);
        var target = reshape.Shape.ToArray();
        int inferred = Array.IndexOf(target, -1L);
        long known = 1;
        for (int i = 0; i < target.Length; i++) if (i != inferred) known *= target[i];
        if (inferred >= 0 && known > 0 && count % known == 0) target[inferred] = count / known;
        if (Product(target, 0) != count || target.Any(d => d <= 0))
            throw new ShapeMismatchException($"ONNX export: Reshape '{name}' cannot make [{Dims(x.Shape)}] into [N, {Dims(reshape.Shape.ToArray())}]");
        string shape = Int64Constant($"{name}/shape", new long[] { 0 }.Concat(target).ToArray());
        return new Value(Node("Reshape", name, new[] { x.Name, shape }, name), new[] { Batch }.Concat(target).ToArray());
    }

    private Value EmitEmbedding(Embedding embedding, string name, Value x)
    {
        if (!x.Int64)
            throw new NotSupportedException($"ONNX export: Embedding '{name}' is not the model's first layer; ONNX export supports an Embedding only on the (int64) model input");
        // Gather rows of the table by id; the ids' shape gains the embedding dimension, as here.
        var output = Node("Gather", name, new[] { Weight(embedding.Weight), x.Name }, name, Int("axis", 0));
        return new Value(output, x.Shape.Append(embedding.EmbeddingDim).ToArray());
    }

    /// <summary>
    /// SimpleRNN, LSTM, GRU (one layer) or a Bidirectional pair as one ONNX RNN / LSTM / GRU node. Our layers
    /// are batch-first [B, T, I] and ONNX's are time-major [T, B, I], so Transposes go around the node (ONNX's
    /// layout = 1 would avoid them, but ONNX Runtime 1.20's CPU kernels refuse it: "Batchwise recurrent
    /// operations (layout == 1) are not supported", checked). Our gate blocks follow PyTorch
    /// (LSTM i, f, g, o; GRU r, z, n) and ONNX's do not (LSTM i, o, f, c; GRU z, r, h): the weights are
    /// reordered into new initializers ("path.W", "path.R", "path.B"). PyTorch's GRU applies the reset
    /// gate after the recurrent product: linear_before_reset = 1. goBackwards is direction "reverse",
    /// whose output sequence ONNX gives in time order; ours (Keras) is in processed order, so it is
    /// reversed back. Bidirectional's backward output is in time order already, as ONNX's is.
    /// </summary>
    private Value EmitRecurrent(RecurrentLayer[] layers, string? mergeMode, string name, string path, Value x)
    {
        // The reordered weights are named after the module path (not the scope): a shared layer stores them once.
        string weights = path.Length == 0 ? (layers.Length == 2 ? "Bidirectional" : layers[0].Kind) : path;
        var first = layers[0];
        string layer = mergeMode is null ? first.Kind : $"Bidirectional({first.Kind})";
        if (x.Shape.Length != 3 || x.Shape[2] != first.InputSize)
            throw new ShapeMismatchException($"ONNX export: {layer} '{name}' ({first.InputSize} -> {first.Units}) gets [{Dims(x.Shape)}]; it needs [batch, time, {first.InputSize}]");
        if (first.Stateful)
            throw new NotSupportedException($"ONNX export: {layer} '{name}' is stateful (it carries its state from one batch to the next); an ONNX graph starts every run from zero states: build the layer with stateful: false to export it");
        var (op, order) = first switch
        {
            LSTM => ("LSTM", new[] { 0, 3, 1, 2 }),   // ONNX's i, o, f, c from our i, f, g, o
            GRU => ("GRU", new[] { 1, 0, 2 }),        // ONNX's z, r, h from our r, z, n
            _ => ("RNN", new[] { 0 }),
        };
        long hidden = first.Units, input = first.InputSize, steps = x.Shape[1];
        int directions = layers.Length;
        long gates = first.GateCount * hidden;
        var w = new List<float>();
        var r = new List<float>();
        var b = new List<float>();
        foreach (var l in layers)
        {
            w.AddRange(ReorderGates(l.WeightIh.ToArray(), order, hidden, input));
            r.AddRange(ReorderGates(l.WeightHh.ToArray(), order, hidden, hidden));
            if (l.BiasIh is not null)
            {
                b.AddRange(ReorderGates(l.BiasIh.ToArray(), order, hidden, 1));
                b.AddRange(ReorderGates(l.BiasHh!.ToArray(), order, hidden, 1));
            }
        }
        var inputs = new List<string>
        {
            Transposed(x.Name, $"{name}/time_major", new long[] { 1, 0, 2 }),
            Initializer($"{weights}.W", w.ToArray(), new[] { directions, gates, input }),
            Initializer($"{weights}.R", r.ToArray(), new[] { directions, gates, hidden }),
        };
        if (first.BiasIh is not null) inputs.Add(Initializer($"{weights}.B", b.ToArray(), new[] { directions, 2 * gates }));
        var attributes = new List<AttributeProto>
        {
            Int("hidden_size", hidden),
            String("direction", directions == 2 ? "bidirectional" : first.GoBackwards ? "reverse" : "forward"),
        };
        if (op == "GRU") attributes.Add(Int("linear_before_reset", 1));
        bool sequences = first.ReturnSequences;
        // Outputs: Y [T, D, B, H] (every step, time order) and Y_h [D, B, H] (the last state of each direction).
        string y = $"{name}/Y", yh = $"{name}/Y_h";
        NodeOutputs(op, $"{name}/{op}", inputs.ToArray(), sequences ? new[] { y } : new[] { "", yh }, attributes.ToArray());

        if (!sequences)
        {
            // [D, B, H] -> [B, H] (one direction) or the merge of the two final states.
            if (directions == 1)
                return new Value(Node("Squeeze", $"{name}/Squeeze", new[] { yh, Int64Constant($"{name}/axis0", new long[] { 0 }) }, name), new[] { Batch, hidden });
            return MergeDirections(mergeMode!, name, yh, 0, new[] { Batch, hidden });
        }
        if (directions == 1)
        {
            // [T, 1, B, H] -> [T, B, H] -> [B, T, H]; goBackwards wants the steps in processed (reversed) order.
            var squeezed = Node("Squeeze", $"{name}/Squeeze", new[] { y, Int64Constant($"{name}/axis1", new long[] { 1 }) }, $"{name}/steps");
            if (first.GoBackwards) squeezed = ReversedTime(squeezed, name);
            return new Value(Node("Transpose", $"{name}/batch_major", new[] { squeezed }, name, Ints("perm", 1, 0, 2)), new[] { Batch, steps, hidden });
        }
        // [T, 2, B, H] -> [B, T, 2, H], then concatenate or combine the two directions.
        var batchMajor = Node("Transpose", $"{name}/batch_major", new[] { y }, $"{name}/batch_major", Ints("perm", 2, 0, 1, 3));
        return MergeDirections(mergeMode!, name, batchMajor, 2, new[] { Batch, steps, hidden });
    }

    /// <summary>Our merge of the two directions along <paramref name="axis"/> (of size 2) of <paramref name="value"/>.</summary>
    private Value MergeDirections(string mode, string name, string value, int axis, long[] shape)
    {
        if (mode == "concat")
        {
            // Forward first, then backward: the two H-blocks side by side, as Tensor.Concatenate(.., -1) puts them.
            var before = axis == 0 ? Node("Transpose", $"{name}/directions_last", new[] { value }, $"{name}/directions_last", Ints("perm", 1, 0, 2)) : value;
            var concatShape = shape.ToArray();
            concatShape[^1] *= 2;
            var target = Int64Constant($"{name}/concat_shape", concatShape.Select((d, i) => i == concatShape.Length - 1 ? d : 0L).ToArray());
            return new Value(Node("Reshape", $"{name}/Concat", new[] { before, target }, name), concatShape);
        }
        string output = mode switch
        {
            // ReduceSum takes its axes as an input from opset 13; ReduceProd and ReduceMean as an attribute until 18.
            "sum" => Node("ReduceSum", $"{name}/Sum", new[] { value, Int64Constant($"{name}/directions_axis", new long[] { axis }) }, name, Int("keepdims", 0)),
            "mul" => Node("ReduceProd", $"{name}/Mul", new[] { value }, name, Ints("axes", axis), Int("keepdims", 0)),
            "ave" => Node("ReduceMean", $"{name}/Ave", new[] { value }, name, Ints("axes", axis), Int("keepdims", 0)),
            _ => throw new NotSupportedException($"ONNX export: Bidirectional '{name}' merge mode '{mode}' has no ONNX form here"),
        };
        return new Value(output, shape);
    }

    /// <summary>[T, ...] with the time axis reversed (a Slice with step -1).</summary>
    private string ReversedTime(string value, string name)
    {
        var inputs = new[]
        {
            value,
            Int64Constant($"{name}/reverse_starts", new long[] { -1 }),
            Int64Constant($"{name}/reverse_ends", new long[] { long.MinValue }),
            Int64Constant($"{name}/reverse_axes", new long[] { 0 }),
            Int64Constant($"{name}/reverse_steps", new long[] { -1 }),
        };
        return Node("Slice", $"{name}/Reverse", inputs, $"{name}/processed_order");
    }

    private string Transposed(string value, string name, long[] perm) => Node("Transpose", name, new[] { value }, name, Ints("perm", perm));

    /// <summary>The gate blocks of a [G*H, columns] matrix (or [G*H] vector: columns = 1) in ONNX's order.</summary>
    private static float[] ReorderGates(float[] values, int[] order, long hidden, long columns)
    {
        var result = new float[values.Length];
        long block = hidden * columns;
        for (int g = 0; g < order.Length; g++)
            Array.Copy(values, order[g] * block, result, g * block, block);
        return result;
    }

    // ---- Graph pieces ------------------------------------------------------------------------------

    private static void RequireRank(string name, Module? module, Value x, int rank, string expected)
    {
        if (x.Shape.Length != rank)
            throw new ShapeMismatchException($"ONNX export: layer '{name}'{(module is null ? "" : $" ({module.GetType().Name})")} gets [{Dims(x.Shape)}]; it needs {expected}");
    }

    private static long Product(long[] shape, int from)
    {
        long p = 1;
        for (int i = from; i < shape.Length; i++) p *= shape[i];
        return p;
    }

    private static string Dims(long[] shape) => string.Join(", ", shape.Select(d => d == Batch ? "N" : d.ToString(CultureInfo.InvariantCulture)));

    /// <summary>Adds a node with one output; returns the output's name.</summary>
    private string Node(string op, string name, string[] inputs, string output, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = UniqueNodeName(name) };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return output;
    }

    /// <summary>Adds a node with several outputs ("" for an optional output not wanted).</summary>
    private void NodeOutputs(string op, string name, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = UniqueNodeName(name) };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
    }

    private readonly HashSet<string> scopes = new();

    private string UniqueScope(string name)
    {
        if (scopes.Add(name)) return name;
        for (int i = 1; ; i++)
            if (scopes.Add($"{name}_{i}")) return $"{name}_{i}";
    }

    /// <summary>Node names are unique too (a merge's name could meet a layer's scope).</summary>
    private string UniqueNodeName(string name)
    {
        if (nodeNames.Add(name)) return name;
        for (int i = 1; ; i++)
            if (nodeNames.Add($"{name}_{i}")) return $"{name}_{i}";
    }

    /// <summary>The initializer of a parameter or buffer, named as in the state (added once).</summary>
    private string Weight(Tensor tensor)
    {
        if (!stateNames.TryGetValue(tensor, out var name))
            throw new InvalidOperationException("ONNX export: a layer's weight is not in the model's state");
        if (initializers.Add(name)) Graph.Initializer.Add(OnnxTensors.FromTensor(name, tensor));
        return name;
    }

    private string Constant(string name, float value)
    {
        if (initializers.Add(name)) Graph.Initializer.Add(OnnxTensors.FromFloats(name, new[] { value }, ReadOnlySpan<long>.Empty));
        return name;
    }

    private string Initializer(string name, float[] values, long[] dims)
    {
        if (initializers.Add(name)) Graph.Initializer.Add(OnnxTensors.FromFloats(name, values, dims));
        return name;
    }

    private string Int64Constant(string name, long[] values)
    {
        if (initializers.Add(name)) Graph.Initializer.Add(OnnxTensors.FromInt64s(name, values, new long[] { values.Length }));
        return name;
    }

    private static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static AttributeProto Float(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    private static AttributeProto String(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    private static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private static ValueInfoProto ValueInfo(Value value)
    {
        var shape = new TensorShapeProto();
        foreach (var d in value.Shape)
            shape.Dim.Add(d == Batch ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        var elem = value.Int64 ? TensorProto.Types.DataType.Int64 : TensorProto.Types.DataType.Float;
        return new ValueInfoProto
        {
            Name = value.Name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)elem, Shape = shape } },
        };
    }
}
