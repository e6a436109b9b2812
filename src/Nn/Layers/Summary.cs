using System.Globalization;
using System.Text;

namespace Kernels.Nn;

public abstract partial class Module
{
    /// <summary>
    /// Keras's <c>model.summary()</c> as text: one row per layer (nested containers and the layers inside
    /// <see cref="Bidirectional"/> indented under their parent), its type and key arguments, its output shape
    /// with the batch as N, its parameter count; then the trainable parameters, the non-trainable values
    /// (buffers such as running_mean, frozen parameters) and the size in bytes. The output shapes come from
    /// one batch of a single zero sample of <paramref name="sampleShape"/> (without the batch dimension) run in
    /// evaluation mode without gradients; a <see cref="Functional"/> knows its input shape, so
    /// <c>Summary()</c> is enough there. Without a shape the rows show "?" for the output. See
    /// <see cref="ModelSummary"/> for the rows as data.
    /// </summary>
    public string Summary(params long[] sampleShape) => ModelSummary.Of(this, Dtype.Float32, sampleShape).ToString();

    /// <summary>
    /// <see cref="Summary(long[])"/> for a network whose input is of another element type: token ids
    /// (<see cref="Dtype.Int64"/>) for a network that starts with an <see cref="Embedding"/>.
    /// </summary>
    public string Summary(Dtype inputDtype, params long[] sampleShape) => ModelSummary.Of(this, inputDtype, sampleShape).ToString();

    /// <summary>The registered sub-modules with their names, in registration order.</summary>
    internal IReadOnlyList<(string Name, Module Module)> NamedChildren => children;

    /// <summary>Sets this module's own training flag only (not its children's): for restoring a mixed state.</summary>
    internal void SetTrainingFlag(bool on) => Training = on;
}

/// <summary>One row of a <see cref="ModelSummary"/>.</summary>
/// <param name="Path">Where the layer sits: "input", "0", "3.1" (a layer inside a nested container), "1.forward"
/// (inside a Bidirectional), "add" (a merge of a functional graph); "3[1]" is the second call of a shared layer.</param>
/// <param name="Depth">Nesting depth (0 for the model's own layers).</param>
/// <param name="Layer">The layer type and its key arguments, e.g. "Conv2D(1->32, 3x3, stride 1, pad 1)".</param>
/// <param name="OutputShape">The output shape with -1 for the batch, or null where it is not known (no sample shape given,
/// or a layer inside a custom module whose forward pass the summary cannot follow).</param>
/// <param name="Parameters">Parameter values of the layer and its sub-layers (0 for the repeated call of a shared layer).</param>
/// <param name="ConnectedTo">The rows whose outputs this row reads (functional graphs only; empty elsewhere).</param>
public sealed record SummaryRow(string Path, int Depth, string Layer, long[]? OutputShape, long Parameters, IReadOnlyList<string> ConnectedTo);

/// <summary>
/// What <see cref="Module.Summary(long[])"/> prints, as data: the rows and the totals. The output shapes come
/// from running one zero sample through the network in evaluation mode without recording gradients; every
/// module's training flag and every stateful recurrent layer's carried state are restored after it, and every
/// tensor it made is freed.
/// </summary>
public sealed class ModelSummary
{
    private ModelSummary(IReadOnlyList<SummaryRow> rows, long trainable, long nonTrainable, long bytes)
    {
        Rows = rows;
        TrainableParameters = trainable;
        NonTrainableValues = nonTrainable;
        Bytes = bytes;
    }

    /// <summary>The rows, parents before their children, in the order the forward pass runs them.</summary>
    public IReadOnlyList<SummaryRow> Rows { get; }

    /// <summary>Values of the parameters that require gradients (what an optimizer updates).</summary>
    public long TrainableParameters { get; }

    /// <summary>Values saved with the model but not trained: buffers (batch normalization's running mean and
    /// variance) and parameters whose RequiresGrad was turned off.</summary>
    public long NonTrainableValues { get; }

    /// <summary>Bytes of all parameters and buffers (what the weights take in memory and in a file, headers aside).</summary>
    public long Bytes { get; }

    /// <summary>The summary of <paramref name="module"/> for float32 samples of <paramref name="sampleShape"/>.</summary>
    public static ModelSummary Of(Module module, params long[] sampleShape) => Of(module, Dtype.Float32, sampleShape);

    /// <summary>
    /// The summary of <paramref name="module"/> for samples of <paramref name="sampleShape"/> (without the batch
    /// dimension; empty: a <see cref="Functional"/>'s own input shape, or no output shapes for other modules)
    /// and element type <paramref name="inputDtype"/>. A sample shape a layer cannot take is a
    /// <see cref="ShapeMismatchException"/> naming the layer's row and the shape it got.
    /// </summary>
    public static ModelSummary Of(Module module, Dtype inputDtype, params long[] sampleShape)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(sampleShape);
        if (sampleShape.Length == 0 && module is Functional f) sampleShape = f.InputNode.SampleShape!;

        // Totals over distinct tensors: a layer registered twice (shared) holds its weights once.
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        long trainable = 0, nonTrainable = 0, bytes = 0;
        foreach (var (_, p) in module.NamedParameters())
            if (seen.Add(p))
            {
                if (p.RequiresGrad) trainable += p.Count; else nonTrainable += p.Count;
                bytes += p.Count * Tensor.ElementSize(p.Dtype);
            }
        foreach (var (_, b) in module.NamedBuffers())
            if (seen.Add(b))
            {
                nonTrainable += b.Count;
                bytes += b.Count * Tensor.ElementSize(b.Dtype);
            }

        var walk = new Walk();
        if (sampleShape.Length == 0)
        {
            walk.List(module, "", 0);
            return new ModelSummary(walk.Rows(), trainable, nonTrainable, bytes);
        }

        var shape = Tensor.CheckShape(sampleShape);
        var modules = AllModules(module);
        var flags = modules.Select(m => m.Training).ToArray();
        var stateful = modules.OfType<RecurrentLayer>().Where(r => r.Stateful).ToArray();
        var carried = stateful.Select(r => r.ExchangeCarried(null)).ToArray();
        try
        {
            module.Eval();
            using var scope = new DisposeScope();
            using var noGrad = Tensor.NoGrad();
            var device = module.NamedState().Select(s => s.Tensor.Device).FirstOrDefault() ?? Device.Cpu;
            var input = Tensor.Zeros(new long[] { 1 }.Concat(shape).ToArray(), inputDtype, device);
            walk.Add("input", 0, $"Input({Tensor.DtypeName(inputDtype)})", input, 0, Array.Empty<string>());
            walk.Run(module, "", 0, input, "input");
        }
        finally
        {
            for (int i = 0; i < modules.Count; i++) modules[i].SetTrainingFlag(flags[i]);
            for (int i = 0; i < stateful.Length; i++)
                foreach (var t in stateful[i].ExchangeCarried(carried[i]) ?? Array.Empty<Tensor>()) t.Dispose();
        }
        return new ModelSummary(walk.Rows(), trainable, nonTrainable, bytes);
    }

    /// <summary>The module and every sub-module, each once.</summary>
    private static List<Module> AllModules(Module root)
    {
        var all = new List<Module>();
        var seen = new HashSet<Module>(ReferenceEqualityComparer.Instance);
        void Visit(Module m)
        {
            if (!seen.Add(m)) return;
            all.Add(m);
            foreach (var (_, child) in m.NamedChildren) Visit(child);
        }
        Visit(root);
        return all;
    }

    /// <summary>The table: layer, type, output shape, parameters (and "connected to" for functional graphs), then the totals.</summary>
    public override string ToString()
    {
        bool graph = Rows.Any(r => r.ConnectedTo.Count > 0);
        var header = new List<string> { "Layer", "Type", "Output shape", "Params" };
        if (graph) header.Add("Connected to");
        var table = Rows.Select(r =>
        {
            var cells = new List<string>
            {
                new string(' ', 2 * r.Depth) + r.Path,
                r.Layer,
                r.OutputShape is null ? "?" : FormatShape(r.OutputShape),
                r.Parameters.ToString("N0", CultureInfo.InvariantCulture),
            };
            if (graph) cells.Add(string.Join(", ", r.ConnectedTo));
            return cells;
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, table.Count == 0 ? 0 : table.Max(c => c[i].Length))).ToArray();
        int total = widths.Sum() + 3 * (widths.Length - 1);

        var s = new StringBuilder();
        void Line(IReadOnlyList<string> cells)
        {
            var line = new StringBuilder();
            for (int i = 0; i < cells.Count; i++)
            {
                if (i > 0) line.Append("   ");
                // Counts align right, text left.
                line.Append(i == 3 ? cells[i].PadLeft(widths[i]) : cells[i].PadRight(widths[i]));
            }
            s.AppendLine(line.ToString().TrimEnd());
        }
        Line(header);
        s.AppendLine(new string('=', total));
        foreach (var cells in table) Line(cells);
        s.AppendLine(new string('=', total));
        s.AppendLine(CultureInfo.InvariantCulture, $"Trainable parameters: {TrainableParameters:N0}");
        s.AppendLine(CultureInfo.InvariantCulture, $"Non-trainable values: {NonTrainableValues:N0} (buffers such as running statistics, frozen parameters)");
        s.Append(CultureInfo.InvariantCulture, $"Size: {Bytes:N0} bytes ({(Bytes >= 1 << 20 ? $"{Bytes / 1048576.0:F2} MB" : $"{Bytes / 1024.0:F1} KB")})");
        return s.ToString();
    }

    /// <summary>[N, 32, 28, 28]: the batch dimension (-1) as N.</summary>
    public static string FormatShape(IReadOnlyList<long> shape) =>
        "[" + string.Join(", ", shape.Select((d, i) => i == 0 && d < 0 ? "N" : d.ToString(CultureInfo.InvariantCulture))) + "]";

    /// <summary>A layer's type with its key arguments ("Dense(784->512)", "Conv2D(1->32, 3x3, stride 1, pad 1)").</summary>
    public static string Describe(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        static string Hw(Size2 s) => s.Height == s.Width ? $"{s.Height}" : $"{s.Height}x{s.Width}";
        static string Flags(params (bool On, string Text)[] flags) => string.Concat(flags.Where(f => f.On).Select(f => ", " + f.Text));
        var inv = CultureInfo.InvariantCulture;
        return module switch
        {
            Dense d => $"Dense({d.Inputs}->{d.Outputs}{Flags((d.Bias is null, "no bias"))})",
            Conv2D c => $"Conv2D({c.InChannels}->{c.OutChannels}, {c.KernelSize.Height}x{c.KernelSize.Width}, stride {Hw(c.Stride)}"
                        + Flags((c.Padding != new Size2(0, 0), $"pad {Hw(c.Padding)}"), (c.Dilation != new Size2(1, 1), $"dilation {Hw(c.Dilation)}"),
                                (c.Groups != 1, $"groups {c.Groups}"), (c.Bias is null, "no bias")) + ")",
            MaxPool2D p => $"MaxPool2D({p.KernelSize.Height}x{p.KernelSize.Width}, stride {Hw(p.Stride)}{Flags((p.Padding != new Size2(0, 0), $"pad {Hw(p.Padding)}"))})",
            AvgPool2D p => $"AvgPool2D({p.KernelSize.Height}x{p.KernelSize.Width}, stride {Hw(p.Stride)}{Flags((p.Padding != new Size2(0, 0), $"pad {Hw(p.Padding)}"))})",
            BatchNormBase b => $"{b.GetType().Name}({b.Features}{Flags((b.Eps != 1e-5f, "eps " + b.Eps.ToString(inv)), (b.Momentum != 0.1f, "momentum " + b.Momentum.ToString(inv)))})",
            Activation a => a.Name == "leaky_relu" ? $"Activation(leaky_relu, slope {a.Slope.ToString(inv)})" : $"Activation({a.Name})",
            Reshape r => $"Reshape({string.Join(", ", r.Shape)})",
            Dropout d => $"Dropout({d.P.ToString(inv)})",
            Embedding e => $"Embedding({e.NumEmbeddings}->{e.EmbeddingDim}{Flags((e.PaddingIdx is not null, $"padding {e.PaddingIdx}"))})",
            RecurrentLayer r => $"{r.Kind}({r.InputSize}->{r.Units}" + Flags((r.ReturnSequences, "sequences"), (r.ReturnState, "state"), (r.GoBackwards, "backwards"),
                                                                              (r.Stateful, "stateful"), (r.BiasIh is null, "no bias")) + ")",
            Bidirectional b => $"Bidirectional({b.Forwards.Kind}, {b.MergeMode})",
            _ => module.GetType().Name,
        };
    }

    /// <summary>Walks the module tree, running the sample through it where the summary can follow the forward pass.</summary>
    private sealed class Walk
    {
        private sealed class Row
        {
            public required string Path;
            public required int Depth;
            public required string Layer;
            public long[]? Shape;
            public required long Parameters;
            public required string[] ConnectedTo;
        }

        private readonly List<Row> rows = new();

        public IReadOnlyList<SummaryRow> Rows() =>
            rows.Select(r => new SummaryRow(r.Path, r.Depth, r.Layer, r.Shape, r.Parameters, r.ConnectedTo)).ToArray();

        private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

        private static long[] BatchAsMinusOne(Tensor t)
        {
            var shape = t.ShapeArray.ToArray();
            if (shape.Length > 0) shape[0] = -1;
            return shape;
        }

        private Row AddRow(string path, int depth, string layer, long parameters, string[] connectedTo)
        {
            var row = new Row { Path = path, Depth = depth, Layer = layer, Parameters = parameters, ConnectedTo = connectedTo };
            rows.Add(row);
            return row;
        }

        public void Add(string path, int depth, string layer, Tensor output, long parameters, string[] connectedTo) =>
            AddRow(path, depth, layer, parameters, connectedTo).Shape = BatchAsMinusOne(output);

        /// <summary>Rows without shapes: the module's layers and theirs.</summary>
        public void List(Module module, string path, int depth)
        {
            bool own = HasOwnRow(module, path);
            if (own) AddRow(RowPath(path), depth, Describe(module), module.ParameterCount, Array.Empty<string>());
            foreach (var (name, child) in module.NamedChildren) List(child, Join(path, name), own ? depth + 1 : depth);
        }

        // The model's own Sequential or Functional gets no row (its layers are the rows, as in Keras); any
        // other module summarised on its own gets one, called "model" (its sub-layers keep their names).
        private static bool HasOwnRow(Module module, string path) => path.Length > 0 || module is not (Sequential or Functional);
        private static string RowPath(string path) => path.Length == 0 ? "model" : path;

        /// <summary>
        /// The rows of <paramref name="module"/> at <paramref name="path"/> ("" for the model itself, which gets
        /// no row of its own) and its output for <paramref name="x"/>.
        /// </summary>
        public Tensor Run(Module module, string path, int depth, Tensor x, string source, string[]? connectedTo = null)
        {
            bool top = path.Length == 0, own = HasOwnRow(module, path);
            int childDepth = own ? depth + 1 : depth;
            var row = own ? AddRow(RowPath(path), depth, Describe(module), module.ParameterCount, connectedTo ?? Array.Empty<string>()) : null;
            Tensor y;
            switch (module)
            {
                case Sequential sequential:
                    y = x;
                    foreach (var (name, child) in sequential.NamedChildren) y = Run(child, Join(path, name), childDepth, y, source);
                    break;
                case Functional functional:
                    y = RunGraph(functional, path, childDepth, x, top ? source : Join(path, "input"));
                    break;
                case Bidirectional bidirectional:
                    // Both directions read the wrapper's input; their own outputs are shown before the merge.
                    Run(bidirectional.Forwards, Join(path, "forward"), childDepth, x, source);
                    Run(bidirectional.Backwards, Join(path, "backward"), childDepth, x, source);
                    y = Forward(module, RowPath(path), x);
                    break;
                default:
                    y = Forward(module, RowPath(path), x);
                    // A custom module's sub-layers: listed, shapes unknown (its forward pass is its own code).
                    foreach (var (name, child) in module.NamedChildren) List(child, Join(path, name), childDepth);
                    break;
            }
            if (row is not null) row.Shape = BatchAsMinusOne(y);
            return y;
        }

        private Tensor RunGraph(Functional functional, string path, int depth, Tensor x, string inputLabel)
        {
            var expected = functional.InputNode.SampleShape!;
            if (x.Rank != expected.Length + 1 || !x.ShapeArray.AsSpan(1).SequenceEqual(expected))
                throw new ShapeMismatchException(
                    $"Summary: {(path.Length == 0 ? "the model" : $"layer {path} (Functional)")} expects samples {Tensor.FormatShape(expected)} but got {Tensor.FormatShape(x.ShapeArray.AsSpan(1))}");
            if (path.Length > 0) Add(inputLabel, depth, $"Input", x, 0, Array.Empty<string>());
            var names = new Dictionary<Module, string>(ReferenceEqualityComparer.Instance);
            foreach (var (name, child) in functional.NamedChildren) names[child] = name;
            var calls = new Dictionary<Module, int>(ReferenceEqualityComparer.Instance);
            var merges = new Dictionary<string, int>();
            var values = new Dictionary<Symbolic, (Tensor Value, string Label)>(ReferenceEqualityComparer.Instance)
            {
                [functional.InputNode] = (x, inputLabel),
            };
            foreach (var node in functional.Nodes)
            {
                if (ReferenceEquals(node, functional.InputNode)) continue;
                var args = node.Inputs.Select(i => values[i]).ToArray();
                var from = args.Select(a => a.Label).ToArray();
                if (node.Layer is { } layer)
                {
                    string layerPath = Join(path, names[layer]);
                    int call = calls.TryGetValue(layer, out var c) ? c : 0;
                    calls[layer] = call + 1;
                    if (call == 0)
                    {
                        values[node] = (Run(layer, layerPath, depth, args[0].Value, from[0], from), layerPath);
                    }
                    else
                    {
                        // A shared layer's later calls: same weights (counted once), own row and shape.
                        string label = $"{layerPath}[{call}]";
                        var y = Forward(layer, label, args[0].Value);
                        Add(label, depth, $"{Describe(layer)}, shared with {layerPath}", y, 0, from);
                        values[node] = (y, label);
                    }
                }
                else
                {
                    int n = merges.TryGetValue(node.Name, out var m) ? m : 0;
                    merges[node.Name] = n + 1;
                    string label = Join(path, n == 0 ? node.Name : $"{node.Name}_{n}");
                    Tensor y;
                    try { y = node.Merge!(args.Select(a => a.Value).ToArray()); }
                    catch (Exception e) when (e is KernelsException or ArgumentException)
                    {
                        throw new ShapeMismatchException(
                            $"Summary: {label} cannot merge {string.Join(" and ", args.Select(a => $"{a.Label} {FormatShape(BatchAsMinusOne(a.Value))}"))}: {e.Message}", e);
                    }
                    Add(label, depth, node.Name, y, 0, from);
                    values[node] = (y, label);
                }
            }
            return values[functional.OutputNode].Value;
        }

        /// <summary>The module's forward pass; an input it refuses becomes an error naming its row.</summary>
        private static Tensor Forward(Module module, string path, Tensor x)
        {
            try
            {
                return module.Forward(x);
            }
            catch (Exception e) when (e is KernelsException or ArgumentException)
            {
                throw new ShapeMismatchException(
                    $"Summary: layer {path} ({Describe(module)}) cannot take an input of shape {FormatShape(BatchAsMinusOne(x))}: {e.Message}", e);
            }
        }
    }
}
