using Google.Protobuf;
using Kernels.Nn.OnnxProto;

namespace Kernels.Nn;

public static partial class Onnx
{
    /// <summary>
    /// Reads the ONNX model in <paramref name="path"/> into a <see cref="Functional"/> model made of this
    /// library's layers (Dense, Conv2D, pooling, BatchNorm1D/2D, activations, Embedding, merges), with the
    /// file's weights on <paramref name="device"/> (the CPU by default). The model comes back in evaluation
    /// mode, as ONNX describes inference; call <see cref="Module.Train"/> to fine-tune it: its weights are
    /// ordinary parameters. An operator or attribute outside the supported set throws
    /// <see cref="NotSupportedException"/> naming the op type, the node and the reason; a malformed file
    /// throws <see cref="InvalidDataException"/> naming the file and the node or tensor.
    /// </summary>
    public static Functional Import(string path, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new InvalidDataException($"{path}: cannot be read: {e.Message}", e);
        }
        return Import(bytes, device, path);
    }

    /// <summary>Reads an ONNX model from a stream (read to its end); see <see cref="Import(string, Device?)"/>.</summary>
    public static Functional Import(Stream stream, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return Import(copy.ToArray(), device, "<stream>");
    }

    /// <summary>Reads an ONNX model held in memory; <paramref name="source"/> names it in error messages.</summary>
    public static Functional Import(byte[] model, Device? device = null, string source = "<bytes>")
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(model);
        }
        // Google.Protobuf's own error is InvalidProtocolBufferException, but on some malformed inputs its parser
        // throws others: IndexOutOfRangeException for a length prefix near 2^31 (protocolbuffers/protobuf#26856,
        // open; our fuzzer found it), and ArgumentException / InvalidOperationException in older releases (#5513).
        // All of them mean the bytes are not a protobuf ModelProto.
        catch (Exception e) when (e is InvalidProtocolBufferException or IndexOutOfRangeException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{source}: not a valid ONNX file (protobuf: {e.Message})", e);
        }
        return new OnnxImporter(proto, source, device ?? Device.Cpu).Build();
    }
}

// What the importer reads (default ONNX domain; checked with opset 17 files and Gelu at 20, Softmax and
// Dropout also in their pre-13 / pre-12 forms; float32 weights, int32/int64 shape tensors):
//   Gemm (transA 0, transB 0/1, alpha = beta = 1, bias [out] or [1, out])   -> Dense (weight transposed to [in, out] for transB 1)
//   MatMul by a constant [in, out], and MatMul + Add of a constant [out]    -> Dense (without / with bias)
//   Conv 2-D (symmetric pads, auto_pad NOTSET/VALID, strides, dilations, group, bias) -> Conv2D
//   MaxPool (no dilation), AveragePool (count_include_pad 0/1), ceil_mode 0   -> MaxPool2D, AvgPool2D
//   Pad (constant 0, H/W only) whose one consumer is an AveragePool           -> that AvgPool2D's padding, counted
//   GlobalAveragePool                                                         -> GlobalAvgPool2D (+ Reshape [C, 1, 1] unless a Flatten follows)
//   BatchNormalization (inference; training_mode 0) on [N, C(, L)] / [N, C, H, W] -> BatchNorm1D / BatchNorm2D with running statistics
//   Relu, LeakyRelu, Sigmoid, Tanh, Softmax (last axis), Gelu (exact; opset 20)  -> Activation
//   Div(sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5) (GELU before opset 20)  -> Activation gelu
//   Dropout (ratio kept for fine-tuning), Identity                            -> Dropout, nothing
//   Flatten (axis 1), Reshape to a constant shape keeping axis 0 (0 or -1)    -> Flatten, Reshape
//   Add, Mul of two computed values of one shape                              -> Functional merges
//   Gather (axis 0) of a constant [V, D] table by the computed ids            -> Embedding
//   RNN / LSTM / GRU (layout 0, forward / reverse / bidirectional, default activations, no clip, no peepholes,
//     no sequence_lens, zero initial states, GRU linear_before_reset 1) with the Transpose / Squeeze / Slice /
//     Reshape / Reduce* patterns that our exporter and PyTorch write around them -> SimpleRNN / LSTM / GRU / Bidirectional
//   Constant, Shape, Gather / Unsqueeze / Concat of integer constants, ConstantOfShape(0): folded at import time
// Everything else (op types, attributes, a second graph input or output, computed weights, broadcasting
// merges, external data, float16 / double tensors) is refused with NotSupportedException naming the node,
// its op type and the reason; a malformed file is an InvalidDataException naming the file and the node or tensor.

/// <summary>
/// Turns one ONNX graph into layers. Walks the nodes in file order (ONNX requires topological order),
/// keeping for each value name either a constant (initializers, Constant nodes: read on the host) or a
/// placeholder of the functional graph with its per-sample shape, so each node's layer is sized and
/// checked when it is made, not at the first forward pass.
/// </summary>
internal sealed class OnnxImporter
{
    /// <summary>A value of the graph: a host constant, or a runtime value (Symbolic) with its per-sample shape.</summary>
    private sealed class Value
    {
        public OnnxConstant? Constant;
        public Symbolic? Node;
        public long[] Shape = Array.Empty<long>();
        /// <summary>The same value flattened to [N, C] when it came from GlobalAveragePool (ours gives [N, C]
        /// directly, ONNX [N, C, 1, 1]): a following Flatten then costs nothing.</summary>
        public Symbolic? Flat;
        /// <summary>A value that exists only as part of a pattern (a time-major Transpose before a recurrent
        /// node, zeros for its initial state): what it is, for the refusal when something else reads it.</summary>
        public string? Pending;
        /// <summary>For a time-major Transpose: the batch-major value it transposes.</summary>
        public Value? TimeMajorOf;
    }

    /// <summary>The batch size in shapes computed at import time (Shape of a runtime value): not known until run time.</summary>
    private const long Batch = long.MinValue;

    private readonly ModelProto model;
    private readonly string source;
    private readonly Device device;
    private readonly Dictionary<string, Value> values = new();
    private readonly Dictionary<string, List<NodeProto>> consumers = new();
    private readonly HashSet<NodeProto> fused = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<NodeProto, long[]> padsFromPadNode = new(ReferenceEqualityComparer.Instance);
    private readonly List<Module> created = new();
    /// <summary>Layers by the weights they read: nodes that share initializers (a layer applied twice,
    /// tied weights) share one layer, so the weights stay one set of parameters when fine-tuning.</summary>
    private readonly Dictionary<string, Module> sharedLayers = new();
    private long opset = 1;
    private GraphProto graph = null!;

    public OnnxImporter(ModelProto model, string source, Device device)
    {
        this.model = model;
        this.source = source;
        this.device = device;
    }

    public Functional Build()
    {
        try
        {
            return BuildGraph();
        }
        catch
        {
            // Layers made before the error own device memory: free them.
            foreach (var m in created) m.Dispose();
            throw;
        }
    }

    private Functional BuildGraph()
    {
        if (model.Graph is null) throw new InvalidDataException($"{source}: the model has no graph");
        graph = model.Graph;
        foreach (var o in model.OpsetImport)
            if (!o.HasDomain || o.Domain is "" or "ai.onnx") opset = o.Version;

        foreach (var t in graph.Initializer)
        {
            if (!t.HasName || t.Name.Length == 0) throw new InvalidDataException($"{source}: an initializer has no name");
            if (values.ContainsKey(t.Name)) throw new InvalidDataException($"{source}: initializer '{t.Name}' appears more than once");
            values[t.Name] = new Value { Constant = OnnxConstant.Read(t, source, $"initializer '{t.Name}'") };
        }

        var inputs = graph.Input.Where(i => !values.ContainsKey(i.Name)).ToList();
        if (inputs.Count != 1)
            throw new NotSupportedException($"{source}: the graph has {inputs.Count} inputs ({string.Join(", ", inputs.Select(i => $"'{i.Name}'"))}); only models with exactly one input can be imported");
        if (graph.Output.Count != 1)
            throw new NotSupportedException($"{source}: the graph has {graph.Output.Count} outputs ({string.Join(", ", graph.Output.Select(o => $"'{o.Name}'"))}); only models with exactly one output can be imported");
        var input = inputs[0];
        var inputNode = Symbolic.Input(SampleShape(input));
        values[input.Name] = new Value { Node = inputNode, Shape = inputNode.SampleShape!.ToArray() };

        foreach (var node in graph.Node)
            foreach (var name in node.Input)
                if (name.Length > 0)
                {
                    if (!consumers.TryGetValue(name, out var list)) consumers[name] = list = new();
                    list.Add(node);
                }

        // Constant nodes read nothing: evaluated first, so a pattern that looks ahead (a Squeeze's axes
        // after a recurrent node) finds them whatever their place in the file.
        for (int i = 0; i < graph.Node.Count; i++)
            if (graph.Node[i].OpType == "Constant" && (!graph.Node[i].HasDomain || graph.Node[i].Domain is "" or "ai.onnx"))
            {
                Import(graph.Node[i], i);
                fused.Add(graph.Node[i]);
            }
        for (int i = 0; i < graph.Node.Count; i++)
        {
            var node = graph.Node[i];
            if (fused.Contains(node)) continue;
            Import(node, i);
        }

        var outputName = graph.Output[0].Name;
        if (!values.TryGetValue(outputName, out var output))
            throw new InvalidDataException($"{source}: the graph output '{outputName}' is not produced by any node");
        if (output.Constant is not null)
            throw new NotSupportedException($"{source}: the graph output '{outputName}' is a constant, not computed from the input");
        if (output.Pending is not null)
            throw new NotSupportedException($"{source}: the graph output '{outputName}' is {output.Pending}; only a recurrent node reads that");
        var network = new Functional(inputNode, Materialize(output));
        // Layers of branches that do not reach the output are not part of the model: free them.
        var used = new HashSet<Module>(network.Nodes.Where(n => n.Layer is not null).Select(n => n.Layer!), ReferenceEqualityComparer.Instance);
        foreach (var m in created)
            if (!used.Contains(m)) m.Dispose();
        created.Clear();
        network.Eval();
        return network;
    }

    // ---- Shapes and values --------------------------------------------------------------------------

    /// <summary>The per-sample shape of the graph input: axis 0 is the batch (symbolic or fixed), the rest fixed.</summary>
    private long[] SampleShape(ValueInfoProto input)
    {
        var type = input.Type?.TensorType;
        if (type is null) throw new NotSupportedException($"{source}: graph input '{input.Name}' is not a tensor");
        var elem = (TensorProto.Types.DataType)type.ElemType;
        if (elem is not (TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int64 or TensorProto.Types.DataType.Int32))
            throw new NotSupportedException($"{source}: graph input '{input.Name}' has element type {elem}; float, int32 and int64 inputs are supported");
        if (type.Shape is null) throw new NotSupportedException($"{source}: graph input '{input.Name}' has no shape; the importer needs the sample shape");
        var dims = type.Shape.Dim;
        if (dims.Count < 1) throw new NotSupportedException($"{source}: graph input '{input.Name}' is a scalar; it needs a batch axis");
        if (dims.Count > 8) throw new InvalidDataException($"{source}: graph input '{input.Name}' has rank {dims.Count}");
        var shape = new long[dims.Count - 1];
        for (int a = 1; a < dims.Count; a++)
        {
            var d = dims[a];
            if (d.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue)
                throw new NotSupportedException($"{source}: graph input '{input.Name}' has a symbolic size '{d.DimParam}' at axis {a}; only the batch axis 0 may vary");
            if (d.DimValue <= 0 || d.DimValue > int.MaxValue)
                throw new InvalidDataException($"{source}: graph input '{input.Name}' has size {d.DimValue} at axis {a}");
            shape[a - 1] = d.DimValue;
        }
        return shape;
    }

    private Symbolic Materialize(Value v)
    {
        if (v.Node is null && v.Flat is not null)
            v.Node = Add(new Reshape(v.Shape)).Call(v.Flat);
        // Callers pass values that Runtime() checked: computed, not constants or pattern markers.
        return v.Node ?? throw new InvalidOperationException("ONNX import: a value without a graph node reached a layer");
    }

    private T Add<T>(T module) where T : Module
    {
        created.Add(module);
        return module;
    }

    private string Describe(NodeProto node, int index) =>
        $"node '{(node.Name.Length > 0 ? node.Name : $"#{index}")}' ({node.OpType})";

    private NotSupportedException Unsupported(NodeProto node, int index, string reason) =>
        new($"{source}: {Describe(node, index)} is not supported: {reason}");

    private InvalidDataException Bad(NodeProto node, int index, string reason) =>
        new($"{source}: {Describe(node, index)}: {reason}");

    private Value Get(NodeProto node, int index, int slot)
    {
        if (slot >= node.Input.Count || node.Input[slot].Length == 0)
            throw Bad(node, index, $"input {slot} is missing");
        var name = node.Input[slot];
        if (!values.TryGetValue(name, out var v))
            throw Bad(node, index, $"input '{name}' is not a graph input, an initializer or an earlier node's output");
        return v;
    }

    private bool HasInput(NodeProto node, int slot) => slot < node.Input.Count && node.Input[slot].Length > 0;

    private Value Runtime(NodeProto node, int index, int slot)
    {
        var v = Get(node, index, slot);
        if (v.Constant is not null)
            throw Unsupported(node, index, $"input '{node.Input[slot]}' is a constant; only a computed value is supported there");
        if (v.Pending is not null)
            throw Unsupported(node, index, $"input '{node.Input[slot]}' is {v.Pending}, supported only as a recurrent node's input");
        return v;
    }

    private OnnxConstant Constant(NodeProto node, int index, int slot, string role)
    {
        var v = Get(node, index, slot);
        if (v.Constant is null)
            throw Unsupported(node, index, $"the {role} '{node.Input[slot]}' is computed; it must be an initializer or a Constant");
        return v.Constant;
    }

    private float[] Floats(NodeProto node, int index, OnnxConstant c, string role, params long[] shape)
    {
        if (c.Floats is null) throw Bad(node, index, $"the {role} '{c.Name}' is {c.Type}, not float");
        if (shape.Length > 0 && !c.Dims.AsSpan().SequenceEqual(shape))
            throw Bad(node, index, $"the {role} '{c.Name}' has shape {Tensor.FormatShape(c.Dims)}; expected {Tensor.FormatShape(shape)}");
        return c.Floats;
    }

    private void Set(NodeProto node, int index, Value value)
    {
        if (node.Output.Count == 0 || node.Output[0].Length == 0) throw Bad(node, index, "it has no output");
        // Secondary outputs (MaxPool's indices, BatchNormalization's training statistics, Dropout's mask)
        // are not computed: refuse a graph that reads one.
        for (int o = 1; o < node.Output.Count; o++)
        {
            var extra = node.Output[o];
            if (extra.Length > 0 && (consumers.ContainsKey(extra) || graph.Output.Any(g => g.Name == extra)))
                throw Unsupported(node, index, $"its output {o} ('{extra}') is used; only the first output is supported");
        }
        if (values.ContainsKey(node.Output[0])) throw Bad(node, index, $"output '{node.Output[0]}' is defined twice");
        values[node.Output[0]] = value;
    }

    private Value Layer(Module module, Value input, long[] shape) =>
        new() { Node = Add(module).Call(Materialize(input)), Shape = shape };

    /// <summary>What identifies a weighted node's layer: its op, the initializers it reads and its attributes.</summary>
    private static string LayerKey(NodeProto node, string extra = "") =>
        $"{node.OpType}|{string.Join(",", node.Input.Skip(1))}|{extra}|{string.Join(";", node.Attribute.Select(a => a.ToString()))}";

    /// <summary>The layer made earlier for the same weights, applied to <paramref name="input"/>; or null.</summary>
    private Value? Reuse(string key, Value input, long[] shape) =>
        sharedLayers.TryGetValue(key, out var layer) ? new Value { Node = layer.Call(Materialize(input)), Shape = shape } : null;

    private Value Remember(string key, Module module, Value input, long[] shape)
    {
        sharedLayers[key] = module;
        return Layer(module, input, shape);
    }

    // ---- Attributes ---------------------------------------------------------------------------------

    private static AttributeProto? Attr(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name);

    private long Int(NodeProto node, string name, long fallback) => Attr(node, name) is { } a ? a.I : fallback;

    private float Float(NodeProto node, string name, float fallback) => Attr(node, name) is { } a ? a.F : fallback;

    private string Text(NodeProto node, string name, string fallback) => Attr(node, name) is { } a ? a.S.ToStringUtf8() : fallback;

    private long[]? Ints(NodeProto node, string name) => Attr(node, name) is { } a ? a.Ints.ToArray() : null;

    /// <summary>A 2-D window attribute (kernel_shape, strides, dilations): two values in int range.</summary>
    private Size2 Pair(NodeProto node, int index, string name, Size2 fallback)
    {
        var v = Ints(node, name);
        if (v is null) return fallback;
        if (v.Length != 2) throw Unsupported(node, index, $"{name} = [{string.Join(", ", v)}] is not 2-D; only 2-D windows are supported");
        if (v[0] < 1 || v[1] < 1 || v[0] > int.MaxValue || v[1] > int.MaxValue)
            throw Bad(node, index, $"{name} = [{string.Join(", ", v)}] must be positive");
        return new Size2((int)v[0], (int)v[1]);
    }

    /// <summary>ONNX pads [top, left, bottom, right]: ours pad both sides alike.</summary>
    private Size2 Pads(NodeProto node, int index, long[]? pads)
    {
        var autoPad = Text(node, "auto_pad", "NOTSET");
        if (autoPad is not ("NOTSET" or "VALID"))
            throw Unsupported(node, index, $"auto_pad = {autoPad}; only NOTSET (explicit pads) and VALID are supported");
        if (autoPad == "VALID" || pads is null) return 0;
        if (pads.Length != 4) throw Unsupported(node, index, $"pads = [{string.Join(", ", pads)}] is not 2-D");
        if (pads[0] != pads[2] || pads[1] != pads[3])
            throw Unsupported(node, index, $"pads = [{string.Join(", ", pads)}] are not symmetric (top = bottom and left = right are needed)");
        if (pads[0] < 0 || pads[1] < 0 || pads[0] > int.MaxValue || pads[1] > int.MaxValue)
            throw Bad(node, index, $"pads = [{string.Join(", ", pads)}] must be non-negative");
        return new Size2((int)pads[0], (int)pads[1]);
    }

    private long Window(NodeProto node, int index, long size, int kernel, int stride, int pad, int dilation, string axis)
    {
        long span = (long)dilation * (kernel - 1) + 1;
        long padded = size + 2L * pad;
        if (padded < span)
            throw Bad(node, index, $"the window ({span} with dilation) is larger than the padded {axis} {padded}");
        return (padded - span) / stride + 1;
    }

    private long[] Spatial(NodeProto node, int index, Value x)
    {
        if (x.Shape.Length != 3)
            throw Unsupported(node, index, $"its input has shape [N, {string.Join(", ", x.Shape)}]; only [N, C, H, W] inputs are supported");
        return x.Shape;
    }

    // ---- Nodes --------------------------------------------------------------------------------------

    private void Import(NodeProto node, int index)
    {
        if (node.HasDomain && node.Domain is not ("" or "ai.onnx"))
            throw Unsupported(node, index, $"operator domain '{node.Domain}' (only the default ONNX domain is supported)");
        switch (node.OpType)
        {
            case "Constant": ImportConstant(node, index); break;
            case "Identity": Set(node, index, Runtime(node, index, 0)); break;
            case "Dropout": ImportDropout(node, index); break;
            case "Relu": Activate(node, index, Activation.Relu()); break;
            case "Sigmoid": Activate(node, index, Activation.Sigmoid()); break;
            case "Tanh": Activate(node, index, Activation.Tanh()); break;
            case "LeakyRelu": Activate(node, index, Activation.LeakyRelu(Float(node, "alpha", 0.01f))); break;
            case "Gelu":
                if (Text(node, "approximate", "none") != "none")
                    throw Unsupported(node, index, $"approximate = {Text(node, "approximate", "")}; only the exact (erf) GELU is supported");
                Activate(node, index, Activation.Gelu());
                break;
            case "Softmax": ImportSoftmax(node, index); break;
            case "Flatten": ImportFlatten(node, index); break;
            case "Reshape": ImportReshape(node, index); break;
            case "Gemm": ImportGemm(node, index); break;
            case "MatMul": ImportMatMul(node, index); break;
            case "Add":
            case "Mul": ImportMerge(node, index); break;
            case "Conv": ImportConv(node, index); break;
            case "MaxPool":
            case "AveragePool": ImportPool(node, index); break;
            case "GlobalAveragePool": ImportGlobalAveragePool(node, index); break;
            case "BatchNormalization": ImportBatchNorm(node, index); break;
            case "Pad": ImportPad(node, index); break;
            case "Gather": ImportGather(node, index); break;
            case "Div" when TryImportGelu(node, index): break;
            case "Transpose": ImportTranspose(node, index); break;
            case "RNN":
            case "LSTM":
            case "GRU": ImportRecurrent(node, index); break;
            case "Shape": ImportShape(node, index); break;
            case "Unsqueeze": ImportUnsqueeze(node, index); break;
            case "Concat": ImportConcat(node, index); break;
            case "ConstantOfShape": ImportConstantOfShape(node, index); break;
            default:
                throw Unsupported(node, index, $"the operator {node.OpType} has no counterpart among this library's layers");
        }
    }

    /// <summary>The single node reading <paramref name="value"/> (and not a graph output), or null.</summary>
    private NodeProto? OnlyConsumer(string value) =>
        consumers.TryGetValue(value, out var list) && list.Count == 1 && !graph.Output.Any(o => o.Name == value) ? list[0] : null;

    private bool IsScalar(string name, float expected, float tolerance = 1e-6f) =>
        values.TryGetValue(name, out var v) && v.Constant is { Floats: { Length: 1 } f } && Math.Abs(f[0] - expected) <= tolerance;

    /// <summary>
    /// The exact GELU as opsets before 20 spell it (PyTorch's exporter and ours):
    /// Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5): one Gelu activation.
    /// </summary>
    private bool TryImportGelu(NodeProto div, int index)
    {
        if (div.Input.Count != 2 || div.Output.Count < 1 || !values.TryGetValue(div.Input[0], out var x) || x.Constant is not null
            || !IsScalar(div.Input[1], MathF.Sqrt(2f))) return false;
        var erf = OnlyConsumer(div.Output[0]);
        if (erf is not { OpType: "Erf" } || erf.Output.Count < 1) return false;
        var add = OnlyConsumer(erf.Output[0]);
        if (add is not { OpType: "Add" } || add.Input.Count != 2 || add.Output.Count < 1) return false;
        if (!IsScalar(add.Input[0] == erf.Output[0] ? add.Input[1] : add.Input[0], 1f)) return false;
        var times = OnlyConsumer(add.Output[0]);
        if (times is not { OpType: "Mul" } || times.Input.Count != 2 || times.Output.Count < 1
            || (times.Input[0] == add.Output[0] ? times.Input[1] : times.Input[0]) != div.Input[0]) return false;
        var half = OnlyConsumer(times.Output[0]);
        if (half is not { OpType: "Mul" } || half.Input.Count != 2 || half.Output.Count < 1 || half.Output[0].Length == 0
            || !IsScalar(half.Input[0] == times.Output[0] ? half.Input[1] : half.Input[0], 0.5f)) return false;
        // x feeds the Div and the first Mul: both are part of the pattern, so x may have other readers too.
        fused.UnionWith(new[] { erf, add, times, half });
        var gelu = Layer(Activation.Gelu(), x, x.Shape);
        if (values.ContainsKey(half.Output[0])) throw Bad(half, graph.Node.IndexOf(half), $"output '{half.Output[0]}' is defined twice");
        values[half.Output[0]] = gelu;
        return true;
    }

    private void ImportConstant(NodeProto node, int index)
    {
        OnnxConstant c;
        var what = $"Constant node '{node.Name}'";
        if (Attr(node, "value") is { } t && t.T is not null) c = OnnxConstant.Read(t.T, source, what);
        else if (Attr(node, "value_float") is { } f) c = new OnnxConstant(node.Output.FirstOrDefault() ?? "", Array.Empty<long>(), new[] { f.F }, null);
        else if (Attr(node, "value_floats") is { } fs) c = new OnnxConstant(node.Output.FirstOrDefault() ?? "", new long[] { fs.Floats.Count }, fs.Floats.ToArray(), null);
        else if (Attr(node, "value_int") is { } i) c = new OnnxConstant(node.Output.FirstOrDefault() ?? "", Array.Empty<long>(), null, new[] { i.I });
        else if (Attr(node, "value_ints") is { } iv) c = new OnnxConstant(node.Output.FirstOrDefault() ?? "", new long[] { iv.Ints.Count }, null, iv.Ints.ToArray());
        else throw Unsupported(node, index, "only value, value_float(s) and value_int(s) constants are supported");
        Set(node, index, new Value { Constant = c });
    }

    private void ImportDropout(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        float ratio = Float(node, "ratio", 0.5f);   // opset < 12: an attribute
        if (HasInput(node, 1))
        {
            var r = Constant(node, index, 1, "ratio");
            ratio = Floats(node, index, r, "ratio").FirstOrDefault(0.5f);
        }
        if (HasInput(node, 2))
        {
            var mode = Constant(node, index, 2, "training_mode");
            if (mode.Ints is not null && mode.Ints.Any(v => v != 0))
                throw Unsupported(node, index, "training_mode = true; the imported model is an inference graph");
        }
        if (!(ratio >= 0 && ratio < 1)) throw Bad(node, index, $"ratio {ratio} is not in [0, 1)");
        // Kept as our Dropout layer: the identity in evaluation, dropout again when fine-tuning.
        Set(node, index, Layer(new Dropout(ratio), x, x.Shape));
    }

    private void Activate(NodeProto node, int index, Activation activation)
    {
        Value x;
        try { x = Runtime(node, index, 0); }
        catch { activation.Dispose(); throw; }
        Set(node, index, Layer(activation, x, x.Shape));
    }

    private void ImportSoftmax(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        int rank = x.Shape.Length + 1;
        long axis = Int(node, "axis", opset >= 13 ? -1 : 1);
        if (axis < 0) axis += rank;
        // Before opset 13 Softmax flattens the axes from `axis` on; that is the last axis exactly when axis = rank - 1.
        if (axis != rank - 1)
            throw Unsupported(node, index, $"axis = {Int(node, "axis", opset >= 13 ? -1 : 1)} on a rank-{rank} input; only the last axis is supported");
        Set(node, index, Layer(Activation.Softmax(), x, x.Shape));
    }

    private void ImportFlatten(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        int rank = x.Shape.Length + 1;
        long axis = Int(node, "axis", 1);
        if (axis < 0) axis += rank;
        if (axis != 1) throw Unsupported(node, index, $"axis = {Int(node, "axis", 1)}; only axis 1 (keep the batch axis) is supported");
        long size = x.Shape.Aggregate(1L, (a, b) => a * b);
        if (x.Flat is not null) Set(node, index, new Value { Node = x.Flat, Shape = new[] { size } });
        else if (x.Shape.Length == 1) Set(node, index, x);
        else Set(node, index, Layer(new Flatten(), x, new[] { size }));
    }

    private void ImportReshape(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        var target = Constant(node, index, 1, "shape");
        if (target.Ints is null || target.Dims.Length != 1) throw Bad(node, index, $"the shape '{target.Name}' must be a 1-D int64 tensor");
        if (Int(node, "allowzero", 0) != 0 && target.Ints.Contains(0))
            throw Unsupported(node, index, "allowzero = 1 with a zero in the shape");
        var shape = target.Ints;
        if (shape.Length < 1 || shape.Length > 8) throw Bad(node, index, $"the shape [{string.Join(", ", shape)}] has rank {shape.Length}");
        long count = x.Shape.Aggregate(1L, (a, b) => a * b);
        // Axis 0 must stay the batch: 0 (copy), -1 with the rest fixed, and the per-sample part must keep the count.
        if (shape[0] == Batch) shape = new[] { 0L }.Concat(shape.Skip(1)).ToArray();   // from Shape: the batch itself
        if (shape.Skip(1).Contains(Batch)) throw Unsupported(node, index, "a shape with the batch size on an axis other than 0");
        if (shape[0] != 0 && shape[0] != -1)
            throw Unsupported(node, index, $"the shape [{string.Join(", ", shape)}] fixes the batch size at {shape[0]}; axis 0 must be 0 or -1 (the batch)");
        var sample = new long[shape.Length - 1];
        int unknown = -1;
        long known = 1;
        for (int a = 1; a < shape.Length; a++)
        {
            long d = shape[a];
            if (d == 0)
            {
                if (a - 1 >= x.Shape.Length) throw Bad(node, index, $"the shape [{string.Join(", ", shape)}] copies axis {a}, which the input lacks");
                d = x.Shape[a - 1];
            }
            if (d == -1)
            {
                if (unknown >= 0 || shape[0] == -1) throw Unsupported(node, index, $"the shape [{string.Join(", ", shape)}] has more than one -1 besides the batch");
                unknown = a - 1;
                continue;
            }
            if (d < 1) throw Bad(node, index, $"the shape [{string.Join(", ", shape)}] has size {d} at axis {a}");
            sample[a - 1] = d;
            known = checked(known * d);
        }
        if (unknown >= 0)
        {
            if (count % known != 0) throw Bad(node, index, $"cannot reshape [N, {string.Join(", ", x.Shape)}] to [{string.Join(", ", shape)}]");
            sample[unknown] = count / known;
        }
        else if (known != count)
            throw Bad(node, index, $"cannot reshape [N, {string.Join(", ", x.Shape)}] ({count} values per sample) to [{string.Join(", ", shape)}]");
        if (sample.AsSpan().SequenceEqual(x.Shape)) Set(node, index, x);
        else if (sample.Length == 1) ImportFlattenTo(node, index, x, sample);
        else Set(node, index, Layer(new Reshape(sample), x, sample));
    }

    private void ImportFlattenTo(NodeProto node, int index, Value x, long[] sample)
    {
        if (x.Flat is not null) Set(node, index, new Value { Node = x.Flat, Shape = sample });
        else Set(node, index, Layer(new Flatten(), x, sample));
    }

    /// <summary>A Dense layer with the given [in, out] weight and optional bias, checked against the input.</summary>
    private Value MakeDense(NodeProto node, int index, Value x, float[] weight, long inputs, long outputs, float[]? bias, string key)
    {
        if (x.Shape.Length < 1 || x.Shape[^1] != inputs)
            throw Bad(node, index, $"its input has shape [N, {string.Join(", ", x.Shape)}] but the weight expects {inputs} features");
        var shape = x.Shape.ToArray();
        shape[^1] = outputs;
        if (Reuse(key, x, shape) is { } again) return again;
        var dense = new Dense(inputs, outputs, bias is not null, device: device);
        var value = Remember(key, dense, x, shape);
        dense.Weight.Buffer.Write<float>(weight);
        if (bias is not null) dense.Bias!.Buffer.Write<float>(bias);
        return value;
    }

    /// <summary>A bias for <paramref name="outputs"/> features: [out] or [1, out] (a scalar is broadcast).</summary>
    private float[]? Bias(NodeProto node, int index, OnnxConstant c, long outputs, string role)
    {
        var values = Floats(node, index, c, role);
        if (c.Dims.Length == 0 || (c.Dims.Length == 1 && c.Dims[0] == 1)) return Enumerable.Repeat(values[0], (int)outputs).ToArray();
        bool vector = (c.Dims.Length == 1 && c.Dims[0] == outputs) || (c.Dims.Length == 2 && c.Dims[0] == 1 && c.Dims[1] == outputs);
        if (!vector) throw Unsupported(node, index, $"the {role} '{c.Name}' has shape {Tensor.FormatShape(c.Dims)}; only [{outputs}] or [1, {outputs}] broadcast as a bias");
        return values;
    }

    private void ImportGemm(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        if (Int(node, "transA", 0) != 0) throw Unsupported(node, index, "transA = 1; only transA = 0 is supported");
        float alpha = Float(node, "alpha", 1f), beta = Float(node, "beta", 1f);
        if (alpha != 1f || beta != 1f) throw Unsupported(node, index, $"alpha = {alpha}, beta = {beta}; only alpha = beta = 1 are supported");
        var b = Constant(node, index, 1, "weight B");
        if (b.Dims.Length != 2) throw Bad(node, index, $"the weight '{b.Name}' has shape {Tensor.FormatShape(b.Dims)}; Gemm needs a matrix");
        var w = Floats(node, index, b, "weight B");
        bool transB = Int(node, "transB", 0) != 0;
        long inputs = transB ? b.Dims[1] : b.Dims[0], outputs = transB ? b.Dims[0] : b.Dims[1];
        if (x.Shape.Length != 1) throw Unsupported(node, index, $"its input has shape [N, {string.Join(", ", x.Shape)}]; Gemm needs [N, features]");
        if (transB)
        {
            // ONNX (and PyTorch's Linear) store [out, in]; our Dense stores [in, out].
            var t = new float[w.Length];
            for (long o = 0; o < outputs; o++)
                for (long i = 0; i < inputs; i++)
                    t[i * outputs + o] = w[o * inputs + i];
            w = t;
        }
        float[]? bias = HasInput(node, 2) ? Bias(node, index, Constant(node, index, 2, "bias C"), outputs, "bias C") : null;
        Set(node, index, MakeDense(node, index, x, w, inputs, outputs, bias, LayerKey(node)));
    }

    private void ImportMatMul(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        var b = Constant(node, index, 1, "weight");
        if (b.Dims.Length != 2) throw Unsupported(node, index, $"the weight '{b.Name}' has shape {Tensor.FormatShape(b.Dims)}; only a matrix is supported");
        var w = Floats(node, index, b, "weight");
        long inputs = b.Dims[0], outputs = b.Dims[1];
        float[]? bias = null;
        // MatMul followed by Add of a constant vector is a Dense layer with bias (what exporters write for Linear).
        if (consumers.TryGetValue(node.Output.FirstOrDefault() ?? "", out var next) && next.Count == 1
            && next[0].OpType == "Add" && next[0].Input.Count == 2 && !graph.Output.Any(o => o.Name == node.Output[0]))
        {
            var add = next[0];
            var other = add.Input[0] == node.Output[0] ? add.Input[1] : add.Input[0];
            if (values.TryGetValue(other, out var c) && c.Constant is { Floats: not null } bc
                && (bc.Dims.Length == 1 && bc.Dims[0] == outputs || bc.Dims.Length == 2 && bc.Dims[0] == 1 && bc.Dims[1] == outputs))
            {
                bias = bc.Floats;
                fused.Add(add);
                var dense = MakeDense(node, index, x, w, inputs, outputs, bias, LayerKey(node, other));
                Set(node, index, dense);
                if (add.Output.Count < 1 || add.Output[0].Length == 0) throw Bad(add, graph.Node.IndexOf(add), "it has no output");
                if (values.ContainsKey(add.Output[0])) throw Bad(add, graph.Node.IndexOf(add), $"output '{add.Output[0]}' is defined twice");
                values[add.Output[0]] = dense;
                return;
            }
        }
        Set(node, index, MakeDense(node, index, x, w, inputs, outputs, null, LayerKey(node)));
    }

    private void ImportMerge(NodeProto node, int index)
    {
        if (node.Input.Count != 2) throw Bad(node, index, $"it has {node.Input.Count} inputs; {node.OpType} needs 2");
        var a = Get(node, index, 0);
        var b = Get(node, index, 1);
        if (a.Constant is not null || b.Constant is not null)
            throw Unsupported(node, index, $"{node.OpType} of the constant '{(a.Constant ?? b.Constant)!.Name}'; only {node.OpType} of two computed branches (or a MatMul's bias) is supported");
        a = Runtime(node, index, 0);   // refuses a value that exists only inside a pattern
        b = Runtime(node, index, 1);
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
            throw Unsupported(node, index, $"its inputs have shapes [N, {string.Join(", ", a.Shape)}] and [N, {string.Join(", ", b.Shape)}]; only equal shapes (no broadcasting) are supported");
        var sa = Materialize(a);
        var sb = Materialize(b);
        Set(node, index, new Value { Node = node.OpType == "Add" ? sa + sb : sa * sb, Shape = a.Shape });
    }

    private void ImportConv(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        var shape = Spatial(node, index, x);
        var wc = Constant(node, index, 1, "weight");
        if (wc.Dims.Length != 4) throw Unsupported(node, index, $"the weight '{wc.Name}' has shape {Tensor.FormatShape(wc.Dims)}; only 2-D convolutions are supported");
        var w = Floats(node, index, wc, "weight");
        long outChannels = wc.Dims[0], groupInputs = wc.Dims[1];
        if (wc.Dims[2] > int.MaxValue || wc.Dims[3] > int.MaxValue) throw Bad(node, index, $"the weight '{wc.Name}' has shape {Tensor.FormatShape(wc.Dims)}");
        var kernel = new Size2((int)wc.Dims[2], (int)wc.Dims[3]);
        if (Ints(node, "kernel_shape") is { } ks && (ks.Length != 2 || ks[0] != kernel.Height || ks[1] != kernel.Width))
            throw Bad(node, index, $"kernel_shape = [{string.Join(", ", ks)}] does not match the weight's {Tensor.FormatShape(wc.Dims)}");
        var stride = Pair(node, index, "strides", 1);
        var dilation = Pair(node, index, "dilations", 1);
        var padding = Pads(node, index, Ints(node, "pads"));
        long group = Int(node, "group", 1);
        if (group < 1 || group > int.MaxValue || groupInputs * group != shape[0] || outChannels % group != 0)
            throw Bad(node, index, $"the input has {shape[0]} channels but the weight {Tensor.FormatShape(wc.Dims)} with group = {group} expects {groupInputs * group}");
        float[]? bias = null;
        if (HasInput(node, 2)) bias = Floats(node, index, Constant(node, index, 2, "bias"), "bias", outChannels);
        long h = Window(node, index, shape[1], kernel.Height, stride.Height, padding.Height, dilation.Height, "height");
        long wd = Window(node, index, shape[2], kernel.Width, stride.Width, padding.Width, dilation.Width, "width");
        var outShape = new[] { outChannels, h, wd };
        if (Reuse(LayerKey(node), x, outShape) is { } again) { Set(node, index, again); return; }
        var conv = new Conv2D(shape[0], outChannels, kernel, stride, padding, dilation, (int)group, bias is not null, device: device);
        Set(node, index, Remember(LayerKey(node), conv, x, outShape));
        conv.Weight.Buffer.Write<float>(w);
        if (bias is not null) conv.Bias!.Buffer.Write<float>(bias);
    }

    private void ImportPool(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        var shape = Spatial(node, index, x);
        if (Attr(node, "kernel_shape") is null) throw Bad(node, index, "kernel_shape is missing");
        var kernel = Pair(node, index, "kernel_shape", 1);
        var stride = Pair(node, index, "strides", 1);   // ONNX's default stride is 1, not the kernel
        if (Pair(node, index, "dilations", 1) != new Size2(1, 1))
            throw Unsupported(node, index, $"dilations = [{string.Join(", ", Ints(node, "dilations")!)}]; only 1 is supported");
        if (Int(node, "ceil_mode", 0) != 0) throw Unsupported(node, index, "ceil_mode = 1; only ceil_mode = 0 (floor) is supported");
        var padding = Pads(node, index, Ints(node, "pads"));
        bool countIncludePad = Int(node, "count_include_pad", 0) != 0;
        if (padsFromPadNode.TryGetValue(node, out var explicitPads))
        {
            // A Pad node before the pooling (how PyTorch exports count_include_pad = True): zeros that count.
            if (padding != new Size2(0, 0)) throw Unsupported(node, index, "both a Pad node before it and its own pads");
            padding = new Size2((int)explicitPads[0], (int)explicitPads[1]);
            countIncludePad = true;
        }
        if (2 * padding.Height > kernel.Height || 2 * padding.Width > kernel.Width)
            throw Unsupported(node, index, $"padding {padding} is more than half the kernel {kernel}");
        long h = Window(node, index, shape[1], kernel.Height, stride.Height, padding.Height, 1, "height");
        long w = Window(node, index, shape[2], kernel.Width, stride.Width, padding.Width, 1, "width");
        Module pool = node.OpType == "MaxPool"
            ? new MaxPool2D(kernel, stride, padding)
            : new AvgPool2D(kernel, stride, padding, countIncludePad);
        Set(node, index, Layer(pool, x, new[] { shape[0], h, w }));
    }

    /// <summary>Pad is supported where it feeds an AveragePool without pads: zero padding that the average counts.</summary>
    private void ImportPad(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        Spatial(node, index, x);
        if (Text(node, "mode", "constant") != "constant") throw Unsupported(node, index, $"mode = {Text(node, "mode", "")}; only constant padding before AveragePool is supported");
        long[]? pads = Ints(node, "pads");   // opset < 11: an attribute
        if (HasInput(node, 1)) pads = Constant(node, index, 1, "pads").Ints;
        if (HasInput(node, 2) && Floats(node, index, Constant(node, index, 2, "constant_value"), "constant_value").Any(v => v != 0))
            throw Unsupported(node, index, "a non-zero constant_value");
        if (HasInput(node, 3)) throw Unsupported(node, index, "the axes input");
        if (pads is null || pads.Length != 8) throw Bad(node, index, "pads must hold 8 values for an [N, C, H, W] input");
        if (pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || pads[2] != pads[6] || pads[3] != pads[7] || pads[2] < 0 || pads[3] < 0 || pads[2] > int.MaxValue || pads[3] > int.MaxValue)
            throw Unsupported(node, index, $"pads = [{string.Join(", ", pads)}]; only equal, non-negative padding of height and width is supported");
        var next = consumers.GetValueOrDefault(node.Output.FirstOrDefault() ?? "");
        if (next is not { Count: 1 } || next[0].OpType != "AveragePool" || graph.Output.Any(o => o.Name == node.Output[0]))
            throw Unsupported(node, index, "only a Pad whose one consumer is an AveragePool is supported");
        padsFromPadNode[next[0]] = new[] { pads[2], pads[3] };
        // The value stays the unpadded input (its only consumer, the AveragePool, pads it itself).
        Set(node, index, new Value { Node = Materialize(x), Shape = x.Shape });
    }

    private void ImportGlobalAveragePool(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        var shape = Spatial(node, index, x);
        var pooled = Add(new GlobalAvgPool2D()).Call(Materialize(x));
        // Ours gives [N, C]; ONNX's [N, C, 1, 1] is made (by a Reshape) only if something other than Flatten needs it.
        Set(node, index, new Value { Flat = pooled, Shape = new[] { shape[0], 1L, 1L } });
    }

    private void ImportBatchNorm(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        if (Int(node, "training_mode", 0) != 0) throw Unsupported(node, index, "training_mode = 1; only the inference form is supported");
        if (x.Shape.Length is < 1 or > 3) throw Unsupported(node, index, $"its input has shape [N, {string.Join(", ", x.Shape)}]; BatchNorm1D/2D take [N, C], [N, C, L] or [N, C, H, W]");
        long c = x.Shape[0];
        var scale = Floats(node, index, Constant(node, index, 1, "scale"), "scale", c);
        var bias = Floats(node, index, Constant(node, index, 2, "bias"), "bias", c);
        var mean = Floats(node, index, Constant(node, index, 3, "mean"), "mean", c);
        var variance = Floats(node, index, Constant(node, index, 4, "var"), "var", c);
        float eps = Float(node, "epsilon", 1e-5f);
        if (!(eps > 0)) throw Bad(node, index, $"epsilon = {eps} must be > 0");
        float momentum = 1 - Float(node, "momentum", 0.9f);   // ONNX keeps `momentum` of the old statistics; ours moves by it
        if (!(momentum >= 0 && momentum <= 1)) throw Bad(node, index, $"momentum = {1 - momentum} must be in [0, 1]");
        if (Reuse(LayerKey(node, $"rank{x.Shape.Length}"), x, x.Shape) is { } again) { Set(node, index, again); return; }
        BatchNormBase bn = x.Shape.Length == 3 ? new BatchNorm2D(c, momentum, eps, device) : new BatchNorm1D(c, momentum, eps, device);
        Set(node, index, Remember(LayerKey(node, $"rank{x.Shape.Length}"), bn, x, x.Shape));
        bn.Gamma.Buffer.Write<float>(scale);
        bn.Beta.Buffer.Write<float>(bias);
        bn.RunningMean.Buffer.Write<float>(mean);
        bn.RunningVar.Buffer.Write<float>(variance);
    }


    // ---- Shape arithmetic (folded at import time) ---------------------------------------------------

    private void ImportShape(NodeProto node, int index)
    {
        var x = Runtime(node, index, 0);
        if (Attr(node, "start") is not null || Attr(node, "end") is not null) throw Unsupported(node, index, "start / end");
        var shape = new[] { Batch }.Concat(x.Shape).ToArray();
        Set(node, index, new Value { Constant = new OnnxConstant(node.Output[0], new long[] { shape.Length }, null, shape) });
    }

    private void ImportUnsqueeze(NodeProto node, int index)
    {
        var c = Constant(node, index, 0, "data");
        long[]? axes = HasInput(node, 1) ? Constant(node, index, 1, "axes").Ints : Ints(node, "axes");
        if (c.Ints is null || c.Dims.Length != 0 || axes is not { Length: 1 } || axes[0] is not (0 or -1))
            throw Unsupported(node, index, "only Unsqueeze of an integer scalar into a vector (shape arithmetic) is supported");
        Set(node, index, new Value { Constant = new OnnxConstant(node.Output[0], new long[] { 1 }, null, c.Ints) });
    }

    private void ImportConcat(NodeProto node, int index)
    {
        var parts = Enumerable.Range(0, node.Input.Count).Select(i => Constant(node, index, i, "part")).ToList();
        if (parts.Any(p => p.Ints is null || p.Dims.Length != 1))
            throw Unsupported(node, index, "only Concat of integer vectors (shape arithmetic) is supported");
        var all = parts.SelectMany(p => p.Ints!).ToArray();
        Set(node, index, new Value { Constant = new OnnxConstant(node.Output[0], new long[] { all.Length }, null, all) });
    }

    /// <summary>ConstantOfShape with value 0: zeros, supported as a recurrent node's initial state (ours start at zero).</summary>
    private void ImportConstantOfShape(NodeProto node, int index)
    {
        var shape = Constant(node, index, 0, "shape");
        if (shape.Ints is null) throw Bad(node, index, $"the shape '{shape.Name}' is not an integer tensor");
        if (Attr(node, "value") is { T: { } t })
        {
            var v = OnnxConstant.Read(t, source, $"node '{node.Name}' value");
            if ((v.Floats?.Any(f => f != 0) ?? false) || (v.Ints?.Any(i => i != 0) ?? false))
                throw Unsupported(node, index, "a non-zero fill value");
        }
        Set(node, index, new Value { Pending = $"zeros of shape [{string.Join(", ", shape.Ints.Select(d => d == Batch ? "N" : d.ToString()))}]", Shape = shape.Ints });
    }

    // ---- Recurrent layers ---------------------------------------------------------------------------

    /// <summary>Transpose [N, T, F] -> [T, N, F] is what exporters put before a recurrent node (ONNX's are
    /// time-major): kept as a marker the recurrent node reads; the same transpose of a recurrent node's
    /// time-major steps gives our layer's batch-major output. Other transposes are refused.</summary>
    private void ImportTranspose(NodeProto node, int index)
    {
        var perm = Ints(node, "perm");
        if (Get(node, index, 0) is { TimeMajorOf: { } batchMajor } && perm is not null && perm.SequenceEqual(new long[] { 1, 0, 2 }))
        {
            Set(node, index, batchMajor);   // a recurrent node's time-major steps, back to batch-major: our layer's output
            return;
        }
        var x = Runtime(node, index, 0);
        if (x.Shape.Length != 2 || perm is null || !perm.SequenceEqual(new long[] { 1, 0, 2 }))
            throw Unsupported(node, index, $"perm = [{string.Join(", ", perm ?? Array.Empty<long>())}] on [N, {string.Join(", ", x.Shape)}]; only the time-major transpose before a recurrent node (and the patterns after one) is supported");
        Set(node, index, new Value { Pending = "a time-major transpose", TimeMajorOf = x, Shape = x.Shape });
    }

    /// <summary>The node and output index that reads <paramref name="value"/> alone, if it has that op type.</summary>
    private NodeProto? Next(string value, string opType) => OnlyConsumer(value) is { } n && n.OpType == opType && n.Output.Count >= 1 ? n : null;

    private long[]? AxesOf(NodeProto node) =>
        node.Input.Count > 1 && node.Input[1].Length > 0
            ? values.TryGetValue(node.Input[1], out var v) && v.Constant is { Ints: { } a } ? a : null
            : Ints(node, "axes");

    /// <summary>
    /// RNN / LSTM / GRU as our SimpleRNN / LSTM / GRU (direction forward or reverse) or Bidirectional, with
    /// the patterns exporters write around them recognised and folded in: the time-major Transpose before;
    /// after Y (every step, [T, D, N, H]): Squeeze(axis 1) [+ a reversing Slice for reverse] + Transpose(1, 0, 2),
    /// or for two directions Transpose(2, 0, 1, 3) + Reshape (concat) or ReduceSum / ReduceProd / ReduceMean
    /// over the direction axis; after Y_h (the last state, [D, N, H]): Squeeze(axis 0), or Transpose(1, 0, 2)
    /// + Reshape, or a Reduce* over axis 0. Gate blocks are put back in PyTorch's order (LSTM i, f, g, o
    /// from ONNX's i, o, f, c; GRU r, z, n from z, r, h).
    /// </summary>
    private void ImportRecurrent(NodeProto node, int index)
    {
        var xt = Get(node, index, 0);
        if (xt.TimeMajorOf is null)
            throw Unsupported(node, index, "its input is not the time-major Transpose of a [N, T, F] value (layout 0 with the batch-major model input transposed)");
        var x = xt.TimeMajorOf;
        string op = node.OpType;
        int gates = op switch { "LSTM" => 4, "GRU" => 3, _ => 1 };
        int[] order = op switch { "LSTM" => new[] { 0, 3, 1, 2 }, "GRU" => new[] { 1, 0, 2 }, _ => new[] { 0 } };
        string[] defaults = op switch { "LSTM" => new[] { "Sigmoid", "Tanh", "Tanh" }, "GRU" => new[] { "Sigmoid", "Tanh" }, _ => new[] { "Tanh" } };
        foreach (var a in node.Attribute)
            switch (a.Name)
            {
                case "hidden_size" or "direction": break;
                case "layout" when a.I == 0: break;
                case "input_forget" when a.I == 0: break;
                case "linear_before_reset" when op == "GRU" && a.I == 1: break;
                case "activations" when a.Strings.Select(b => b.ToStringUtf8()).SequenceEqual(Enumerable.Repeat(defaults, a.Strings.Count / defaults.Length).SelectMany(d => d)): break;
                default: throw Unsupported(node, index, $"attribute {a.Name} = {(a.Ints.Count > 0 ? $"[{string.Join(", ", a.Ints)}]" : a.Strings.Count > 0 ? string.Join(", ", a.Strings.Select(b => b.ToStringUtf8())) : a.HasS ? a.S.ToStringUtf8() : a.HasF ? a.F.ToString() : a.I.ToString())}");
            }
        if (op == "GRU" && Int(node, "linear_before_reset", 0) != 1)
            throw Unsupported(node, index, "linear_before_reset = 0; ours (PyTorch's GRU) applies the reset gate after the recurrent product (linear_before_reset = 1)");
        string direction = Text(node, "direction", "forward");
        int directions = direction switch { "forward" or "reverse" => 1, "bidirectional" => 2, _ => throw Bad(node, index, $"direction = {direction}") };
        long hidden = Int(node, "hidden_size", 0);
        if (hidden < 1 || hidden > int.MaxValue) throw Bad(node, index, $"hidden_size = {hidden}");
        long inputs = x.Shape[1], g = gates * hidden;
        var w = Floats(node, index, Constant(node, index, 1, "W"), "W", directions, g, inputs);
        var r = Floats(node, index, Constant(node, index, 2, "R"), "R", directions, g, hidden);
        float[]? b = HasInput(node, 3) ? Floats(node, index, Constant(node, index, 3, "B"), "B", directions, 2 * g) : null;
        if (HasInput(node, 4)) throw Unsupported(node, index, "sequence_lens (every sequence runs its full length)");
        for (int slot = 5; slot < node.Input.Count; slot++)
        {
            if (!HasInput(node, slot)) continue;
            if (slot == 7) throw Unsupported(node, index, "peephole weights P");
            var init = Get(node, index, slot);
            bool zeros = init.Pending is not null && init.Pending.StartsWith("zeros", StringComparison.Ordinal)
                         || init.Constant is { Floats: { } f } && f.All(v => v == 0);
            if (!zeros) throw Unsupported(node, index, $"a non-zero initial state '{node.Input[slot]}' (ours start from zeros)");
        }

        // Which output is read, and how, decides returnSequences, the merge mode and where the result goes.
        string Out(int o) => o < node.Output.Count ? node.Output[o] : "";
        bool Used(string name) => name.Length > 0 && (consumers.ContainsKey(name) || graph.Output.Any(o => o.Name == name));
        if (Used(Out(2))) throw Unsupported(node, index, "its output Y_c (the last cell state) is used");
        bool sequences = Used(Out(0));
        if (sequences == Used(Out(1))) throw Unsupported(node, index, sequences ? "both Y and Y_h are used" : "neither Y nor Y_h is used");
        var chain = new List<NodeProto>();
        string? end = null, merge = null;
        bool timeMajor = false;
        string NotRecognised(string what) => $"its output {(sequences ? "Y" : "Y_h")} is followed by something other than the patterns exporters write ({what})";
        if (directions == 1)
        {
            var squeeze = Next(Out(sequences ? 0 : 1), "Squeeze");
            if (squeeze is null || AxesOf(squeeze) is not { Length: 1 } sa || sa[0] != (sequences ? 1 : 0)) throw Unsupported(node, index, NotRecognised("Squeeze of the direction axis expected"));
            chain.Add(squeeze);
            end = squeeze.Output[0];
            if (sequences)
            {
                if (direction == "reverse")
                {
                    // Our goBackwards layer (Keras) gives the steps in processed order; ONNX gives them in time order: a reversing Slice must follow.
                    var slice = Next(end, "Slice");
                    if (slice is null || !IsReversal(slice)) throw Unsupported(node, index, NotRecognised("direction reverse needs the reversing Slice that puts the steps in processed order"));
                    chain.Add(slice);
                    end = slice.Output[0];
                }
                // [T, N, H]: time-major, as the next recurrent node reads it; a Transpose (1, 0, 2) gives ours back.
                timeMajor = true;
            }
        }
        else
        {
            end = Out(sequences ? 0 : 1);
            var transpose = Next(end, "Transpose");
            long[] batchMajor = sequences ? new long[] { 2, 0, 1, 3 } : new long[] { 1, 0, 2 };
            bool transposed = transpose is not null && Ints(transpose, "perm") is { } perm && perm.SequenceEqual(batchMajor);
            if (sequences && !transposed) throw Unsupported(node, index, NotRecognised("Transpose to batch-major expected"));
            if (transposed)
            {
                chain.Add(transpose!);
                end = transpose!.Output[0];
            }
            var after = OnlyConsumer(end);
            if (transposed && after is { OpType: "Reshape" } reshape)
            {
                // [N, (T,) 2, H] -> [N, (T,) 2H]: forward then backward, side by side.
                if (!values.TryGetValue(reshape.Input.Count > 1 ? reshape.Input[1] : "", out var target) || target.Constant?.Ints is not { } t
                    || !t.SequenceEqual(sequences ? new[] { 0, 0, 2 * hidden } : new[] { 0, 2 * hidden }) || reshape.Output.Count < 1)
                    throw Unsupported(node, index, NotRecognised("Reshape joining the two directions expected"));
                chain.Add(reshape);
                end = reshape.Output[0];
                merge = "concat";
            }
            else
            {
                merge = after?.OpType switch { "ReduceSum" => "sum", "ReduceProd" => "mul", "ReduceMean" => "ave", _ => null };
                if (merge is null || after!.Output.Count < 1 || AxesOf(after) is not { Length: 1 } ra || ra[0] != (sequences ? 2 : 0) || Int(after, "keepdims", 1) != 0)
                    throw Unsupported(node, index, NotRecognised("Reshape or ReduceSum / ReduceProd / ReduceMean over the directions expected"));
                chain.Add(after);
                end = after.Output[0];
            }
        }

        RecurrentLayer Make(bool goBackwards) => op switch
        {
            "LSTM" => new LSTM(inputs, hidden, returnSequences: sequences, goBackwards: goBackwards, bias: b is not null, device: device),
            "GRU" => new GRU(inputs, hidden, returnSequences: sequences, goBackwards: goBackwards, bias: b is not null, device: device),
            _ => new SimpleRNN(inputs, hidden, returnSequences: sequences, goBackwards: goBackwards, bias: b is not null, device: device),
        };
        void Load(RecurrentLayer layer, int d)
        {
            layer.WeightIh.Buffer.Write<float>(Reorder(w, d, order, hidden, inputs));
            layer.WeightHh.Buffer.Write<float>(Reorder(r, d, order, hidden, hidden));
            if (b is null) return;
            var both = Reorder(b, d, Enumerable.Range(0, 2).SelectMany(h => order.Select(o => o + h * gates)).ToArray(), hidden, 1);
            layer.BiasIh!.Buffer.Write<float>(both.AsSpan(0, (int)g));
            layer.BiasHh!.Buffer.Write<float>(both.AsSpan((int)g));
        }
        Module module;
        if (directions == 1)
        {
            var layer = Make(direction == "reverse");
            module = layer;
            Load(layer, 0);
        }
        else
        {
            var pair = new Bidirectional(Make(false), merge!);
            module = pair;
            Load(pair.Forwards, 0);
            Load(pair.Backwards, 1);
        }
        var outShape = sequences ? new[] { x.Shape[0], merge == "concat" ? 2 * hidden : hidden } : new[] { merge == "concat" ? 2 * hidden : hidden };
        fused.UnionWith(chain);
        var value = Layer(module, x, outShape);
        if (timeMajor) value = new Value { Pending = "a time-major sequence", TimeMajorOf = value, Shape = value.Shape };
        if (values.ContainsKey(end!)) throw Bad(node, index, $"output '{end}' is defined twice");
        values[end!] = value;
    }

    /// <summary>Slice(starts -1, ends very negative, axes 0, steps -1): the time axis reversed.</summary>
    private bool IsReversal(NodeProto slice)
    {
        long[]? Input(int i) => i < slice.Input.Count && values.TryGetValue(slice.Input[i], out var v) ? v.Constant?.Ints : null;
        return Input(1) is [-1] && Input(2) is [var end] && end <= -(1L << 31) && Input(3) is [0] && Input(4) is [-1];
    }

    /// <summary>Direction <paramref name="d"/>'s gate blocks of an ONNX [D, G*H(, columns)] tensor in our (PyTorch's)
    /// order: our block order[k] is ONNX's block k.</summary>
    private static float[] Reorder(float[] all, int d, int[] order, long hidden, long columns)
    {
        long block = hidden * columns, per = order.Length * block;
        var result = new float[per];
        for (int k = 0; k < order.Length; k++)
            Array.Copy(all, d * per + k * block, result, order[k] * block, block);
        return result;
    }

    /// <summary>Gather of rows of a constant table by computed ids is an embedding lookup.</summary>
    private void ImportGather(NodeProto node, int index)
    {
        if (Get(node, index, 0).Constant is { Ints: not null } shapeData && Get(node, index, 1).Constant is { Ints: not null } picks)
        {
            // Shape arithmetic (PyTorch's exporter sizes a recurrent node's zero state from Shape -> Gather -> ...).
            if (shapeData.Dims.Length != 1) throw Unsupported(node, index, "Gather of a constant that is not a vector");
            var picked = picks.Ints.Select(i => i >= -shapeData.Ints.Length && i < shapeData.Ints.Length ? shapeData.Ints[i < 0 ? i + shapeData.Ints.Length : i]
                                                    : throw Bad(node, index, $"index {i} is outside the {shapeData.Ints.Length} values of '{shapeData.Name}'")).ToArray();
            Set(node, index, new Value { Constant = new OnnxConstant(node.Output[0], picks.Dims, null, picked) });
            return;
        }
        var table = Constant(node, index, 0, "table");
        var ids = Runtime(node, index, 1);
        if (Int(node, "axis", 0) != 0) throw Unsupported(node, index, $"axis = {Int(node, "axis", 0)}; only row lookups (axis 0) are supported");
        if (table.Dims.Length != 2) throw Unsupported(node, index, $"the table '{table.Name}' has shape {Tensor.FormatShape(table.Dims)}; only a matrix (an embedding) is supported");
        var weight = Floats(node, index, table, "table");
        var embedding = new Embedding(table.Dims[0], table.Dims[1], device: device);
        Set(node, index, Layer(embedding, ids, ids.Shape.Append(table.Dims[1]).ToArray()));
        embedding.Weight.Buffer.Write<float>(weight);
    }
}

/// <summary>
/// An ONNX tensor read on the host: float32 values, or int32/int64 values widened to int64. The element
/// count is checked against the bytes the file really holds before anything is allocated, so a tensor
/// claiming 2^60 elements is refused, not allocated.
/// </summary>
internal sealed record OnnxConstant(string Name, long[] Dims, float[]? Floats, long[]? Ints)
{
    public string Type => Floats is not null ? "float" : "int64";

    public static OnnxConstant Read(TensorProto t, string source, string what)
    {
        InvalidDataException Bad(string reason) => new($"{source}: {what}: {reason}");
        if (t.DataLocation == TensorProto.Types.DataLocation.External || t.ExternalData.Count > 0)
            throw new NotSupportedException($"{source}: {what} keeps its data in an external file; only weights inside the model file are supported");
        if (t.Dims.Count > 8) throw Bad($"rank {t.Dims.Count} is more than 8");
        long count = 1;
        foreach (var d in t.Dims)
        {
            if (d < 0) throw Bad($"dims [{string.Join(", ", t.Dims)}] has a negative size");
            if (d != 0 && count > int.MaxValue / d) throw Bad($"dims [{string.Join(", ", t.Dims)}] hold more values than any file can");
            count *= d;
        }
        var dims = t.Dims.ToArray();
        var type = (TensorProto.Types.DataType)t.DataType;
        int size = type switch
        {
            TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int32 => 4,
            TensorProto.Types.DataType.Int64 => 8,
            _ => throw new NotSupportedException($"{source}: {what} has element type {type}; float, int32 and int64 tensors are supported"),
        };
        if (t.HasRawData)
        {
            var raw = t.RawData.Span;
            if (raw.Length != count * size)
                throw Bad($"raw_data holds {raw.Length} bytes but dims [{string.Join(", ", t.Dims)}] of {type} need {count * size}");
            switch (type)
            {
                case TensorProto.Types.DataType.Float:
                    var f = new float[count];
                    for (int i = 0; i < f.Length; i++) f[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(raw[(4 * i)..]);
                    return new OnnxConstant(t.Name, dims, f, null);
                case TensorProto.Types.DataType.Int32:
                    var i32 = new long[count];
                    for (int i = 0; i < i32.Length; i++) i32[i] = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(raw[(4 * i)..]);
                    return new OnnxConstant(t.Name, dims, null, i32);
                default:
                    var i64 = new long[count];
                    for (int i = 0; i < i64.Length; i++) i64[i] = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(raw[(8 * i)..]);
                    return new OnnxConstant(t.Name, dims, null, i64);
            }
        }
        int held = type switch
        {
            TensorProto.Types.DataType.Float => t.FloatData.Count,
            TensorProto.Types.DataType.Int32 => t.Int32Data.Count,
            _ => t.Int64Data.Count,
        };
        if (held != count) throw Bad($"holds {held} {type} values but dims [{string.Join(", ", t.Dims)}] need {count}");
        return type switch
        {
            TensorProto.Types.DataType.Float => new OnnxConstant(t.Name, dims, t.FloatData.ToArray(), null),
            TensorProto.Types.DataType.Int32 => new OnnxConstant(t.Name, dims, null, t.Int32Data.Select(v => (long)v).ToArray()),
            _ => new OnnxConstant(t.Name, dims, null, t.Int64Data.ToArray()),
        };
    }
}
