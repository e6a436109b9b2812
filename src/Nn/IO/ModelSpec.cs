using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Kernels.Nn;

/// <summary>
/// A network's architecture as JSON, written by <see cref="ToJson"/> and read by <see cref="FromJson"/>: the
/// library's answer to Caffe's prototxt and Pylearn2's YAML, and the part of a model file
/// (<see cref="ModelFile"/>) that rebuilds the network without the code that made it. One object per layer,
/// <c>"type"</c> plus the constructor's arguments in Keras-like snake_case; containers nest:
/// <code>
/// {"type": "Sequential", "layers": [
///   {"type": "Conv2D", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1},
///   {"type": "Activation", "activation": "relu"},
///   {"type": "MaxPool2D", "kernel_size": 2},
///   {"type": "Flatten"},
///   {"type": "Dense", "inputs": 1568, "outputs": 10}]}
/// </code>
/// A functional model lists its layers once and its graph as nodes in topological order: node 0 is the
/// input, every other node applies a layer (by index, so one layer may serve at several places) or merges
/// two earlier nodes (add, mul):
/// <code>
/// {"type": "Functional", "input_shape": [16],
///  "layers": [{"type": "Dense", "inputs": 16, "outputs": 16}, {"type": "Activation", "activation": "relu"}],
///  "nodes": [{"op": "input"}, {"layer": 0, "inputs": [0]}, {"layer": 1, "inputs": [1]}, {"op": "add", "inputs": [0, 2]}],
///  "output": 3}
/// </code>
/// A trained ensemble (<see cref="Bagging"/>, <see cref="Boosting"/>) lists its members' specs under "members"
/// (their weights are "members.0.", "members.1.", ... in the state dict) and what its vote needs:
/// <code>
/// {"type": "Boosting", "classes": 10, "algorithm": "SAMME", "member_weights": [4.81, 3.48], "member_errors": [0.07, 0.2],
///  "members": [{"type": "Sequential", "layers": [...]}, {"type": "Sequential", "layers": [...]}]}
/// {"type": "Bagging", "classes": 10, "vote": "average", "out_of_bag_accuracy": 0.934, "members": [...]}
/// </code>
/// Sizes of two (kernel_size, stride, padding, dilation) are one integer or [height, width]. Arguments left
/// out take the constructor's default; a layer with weights may say "seed" (its initial weights; by default
/// the layer's position). Unknown types, unknown fields, wrong values and graphs that do not connect throw a
/// <see cref="InvalidDataException"/> naming the field's JSON path. A Module subclass the spec does not know
/// (a user's own layer) cannot be written: <see cref="ToJson"/> throws naming it.
/// </summary>
public static class ModelSpec
{
    /// <summary>The spec format's version (the optional root field "spec_version").</summary>
    public const int Version = 1;

    /// <summary>The default cap on the elements of all parameters and buffers a spec may create (2^31, 8 GiB of
    /// float32): a typo such as "outputs": 1000000000 fails with a message instead of exhausting memory.</summary>
    public const long DefaultMaxElements = 1L << 31;

    /// <summary>A spec that cannot be built: an <see cref="InvalidDataException"/> (what every reader of the library
    /// throws) whose message starts with the JSON path of the field at fault ("layers[2].kernel_size: ...").</summary>
    private static InvalidDataException SpecError(string path, string message) => new(path.Length == 0 ? message : $"{path}: {message}");

    // ---- Writing ----------------------------------------------------------------------------------

    /// <summary>The spec of <paramref name="module"/>, indented JSON.</summary>
    public static string ToJson(Module module, bool indented = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented }))
        {
            w.WriteStartObject();
            w.WriteNumber("spec_version", Version);
            WriteFields(w, module, "");
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteSize(Utf8JsonWriter w, string name, Size2 size)
    {
        w.WriteStartArray(name);
        w.WriteNumberValue(size.Height);
        w.WriteNumberValue(size.Width);
        w.WriteEndArray();
    }

    private static void WriteModule(Utf8JsonWriter w, Module module, string path)
    {
        w.WriteStartObject();
        WriteFields(w, module, path);
        w.WriteEndObject();
    }

    private static void WriteFields(Utf8JsonWriter w, Module module, string path)
    {
        switch (module)
        {
            case Sequential s:
                w.WriteString("type", "Sequential");
                w.WriteStartArray("layers");
                for (int i = 0; i < s.Layers.Count; i++) WriteModule(w, s.Layers[i], $"{path}layers[{i}].");
                w.WriteEndArray();
                break;
            case Functional f:
                WriteFunctional(w, f, path);
                break;
            case Dense d:
                w.WriteString("type", "Dense");
                w.WriteNumber("inputs", d.Inputs);
                w.WriteNumber("outputs", d.Outputs);
                w.WriteBoolean("bias", d.Bias is not null);
                break;
            case Conv2D c:
                w.WriteString("type", "Conv2D");
                w.WriteNumber("in_channels", c.InChannels);
                w.WriteNumber("out_channels", c.OutChannels);
                WriteSize(w, "kernel_size", c.KernelSize);
                WriteSize(w, "stride", c.Stride);
                WriteSize(w, "padding", c.Padding);
                WriteSize(w, "dilation", c.Dilation);
                w.WriteNumber("groups", c.Groups);
                w.WriteBoolean("bias", c.Bias is not null);
                break;
            case MaxPool2D m:
                w.WriteString("type", "MaxPool2D");
                WriteSize(w, "kernel_size", m.KernelSize);
                WriteSize(w, "stride", m.Stride);
                WriteSize(w, "padding", m.Padding);
                break;
            case AvgPool2D a:
                w.WriteString("type", "AvgPool2D");
                WriteSize(w, "kernel_size", a.KernelSize);
                WriteSize(w, "stride", a.Stride);
                WriteSize(w, "padding", a.Padding);
                w.WriteBoolean("count_include_pad", a.CountIncludePad);
                break;
            case GlobalAvgPool2D:
                w.WriteString("type", "GlobalAvgPool2D");
                break;
            case BatchNormBase b:
                w.WriteString("type", b is BatchNorm1D ? "BatchNorm1D" : "BatchNorm2D");
                w.WriteNumber("features", b.Features);
                w.WriteNumber("momentum", b.Momentum);
                w.WriteNumber("eps", b.Eps);
                break;
            case Activation a:
                w.WriteString("type", "Activation");
                w.WriteString("activation", a.Name);
                if (a.Name == "leaky_relu") w.WriteNumber("slope", a.Slope);
                break;
            case Flatten:
                w.WriteString("type", "Flatten");
                break;
            case Reshape r:
                w.WriteString("type", "Reshape");
                w.WriteStartArray("shape");
                foreach (var d in r.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                break;
            case Dropout d:
                w.WriteString("type", "Dropout");
                w.WriteNumber("p", d.P);
                w.WriteNumber("seed", d.Seed);
                break;
            case Embedding e:
                w.WriteString("type", "Embedding");
                w.WriteNumber("num_embeddings", e.NumEmbeddings);
                w.WriteNumber("embedding_dim", e.EmbeddingDim);
                if (e.PaddingIdx is long p) w.WriteNumber("padding_idx", p); else w.WriteNull("padding_idx");
                break;
            case RecurrentLayer r:
                w.WriteString("type", r.Kind);
                w.WriteNumber("input_size", r.InputSize);
                w.WriteNumber("units", r.Units);
                w.WriteBoolean("return_sequences", r.ReturnSequences);
                w.WriteBoolean("return_state", r.ReturnState);
                w.WriteBoolean("go_backwards", r.GoBackwards);
                w.WriteBoolean("stateful", r.Stateful);
                w.WriteBoolean("bias", r.BiasIh is not null);
                break;
            case Bidirectional b:
                w.WriteString("type", "Bidirectional");
                w.WritePropertyName("layer");
                WriteModule(w, b.Forwards, $"{path}layer.");
                w.WriteString("merge_mode", b.MergeMode);
                break;
            case Bagging b:
                w.WriteString("type", "Bagging");
                w.WriteNumber("classes", b.Classes);
                w.WriteString("vote", b.Vote == EnsembleVote.Majority ? "majority" : "average");
                if (b.OutOfBagAccuracy is double oob) w.WriteNumber("out_of_bag_accuracy", oob);
                WriteMembers(w, b, path);
                break;
            case Boosting b:
                w.WriteString("type", "Boosting");
                w.WriteNumber("classes", b.Classes);
                w.WriteString("algorithm", b.Algorithm == BoostingAlgorithm.SammeR ? "SAMME.R" : "SAMME");
                // float64 written in its shortest round-trip form: the loaded vote is the saved one to the bit.
                w.WriteStartArray("member_weights");
                foreach (var x in b.MemberWeights) w.WriteNumberValue(x);
                w.WriteEndArray();
                w.WriteStartArray("member_errors");
                foreach (var x in b.MemberErrors) w.WriteNumberValue(x);
                w.WriteEndArray();
                WriteMembers(w, b, path);
                break;
            default:
                throw new NotSupportedException(
                    $"ModelSpec: {(path.Length == 0 ? "the model" : path.TrimEnd('.'))} is a {module.GetType().FullName}, a module type the model spec does not know; " +
                    "save its weights with SaveStateDict and rebuild the network in code");
        }
    }

    private static void WriteMembers(Utf8JsonWriter w, Ensemble e, string path)
    {
        if (e.Members.Count == 0) throw new InvalidOperationException($"ModelSpec: {(path.Length == 0 ? "the model" : path.TrimEnd('.'))} is an untrained {e.GetType().Name} (no members): train it before saving");
        w.WriteStartArray("members");
        for (int i = 0; i < e.Members.Count; i++) WriteModule(w, e.Members[i], $"{path}members[{i}].");
        w.WriteEndArray();
    }

    private static void WriteFunctional(Utf8JsonWriter w, Functional f, string path)
    {
        w.WriteString("type", "Functional");
        w.WriteStartArray("input_shape");
        foreach (var d in f.InputNode.SampleShape!) w.WriteNumberValue(d);
        w.WriteEndArray();
        // Layers in order of first use: the order Functional registers them in ("0", "1", ...), so the
        // rebuilt model has the same parameter names.
        var layers = new List<Module>();
        var layerIndex = new Dictionary<Module, int>(ReferenceEqualityComparer.Instance);
        var nodeIndex = new Dictionary<Symbolic, int>(ReferenceEqualityComparer.Instance);
        foreach (var node in f.Nodes)
            if (node.Layer is not null && !layerIndex.ContainsKey(node.Layer))
            {
                layerIndex[node.Layer] = layers.Count;
                layers.Add(node.Layer);
            }
        w.WriteStartArray("layers");
        for (int i = 0; i < layers.Count; i++) WriteModule(w, layers[i], $"{path}layers[{i}].");
        w.WriteEndArray();
        w.WriteStartArray("nodes");
        // Node 0 is the input; Nodes is topological and starts with the input (it has no inputs of its own).
        var ordered = new List<Symbolic> { f.InputNode };
        ordered.AddRange(f.Nodes.Where(n => !ReferenceEquals(n, f.InputNode)));
        foreach (var node in ordered)
        {
            nodeIndex[node] = nodeIndex.Count;
            w.WriteStartObject();
            if (ReferenceEquals(node, f.InputNode)) w.WriteString("op", "input");
            else if (node.Layer is not null) w.WriteNumber("layer", layerIndex[node.Layer]);
            else w.WriteString("op", node.Name);
            if (node.Inputs.Length > 0)
            {
                w.WriteStartArray("inputs");
                foreach (var i in node.Inputs) w.WriteNumberValue(nodeIndex[i]);
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("output", nodeIndex[f.OutputNode]);
    }

    // ---- Reading ----------------------------------------------------------------------------------

    /// <summary>
    /// Builds the network <paramref name="json"/> describes, its layers on <paramref name="device"/> (default: the
    /// CPU), with fresh weights (load trained ones with <see cref="Module.LoadStateDict"/>). Bad specs throw a
    /// <see cref="InvalidDataException"/> naming the JSON path; a spec whose parameters and buffers would exceed
    /// <paramref name="maxElements"/> elements in all is refused before anything is allocated.
    /// </summary>
    public static Module FromJson(string json, Device? device = null, long maxElements = DefaultMaxElements)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            // Not e.Message: System.Text.Json quotes the rest of the input there, however long.
            throw SpecError("", $"not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1} of that line)");
        }
        using (document)
        {
            var builder = new Builder(device ?? Device.Cpu, maxElements);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw SpecError("", $"expected an object, got {Describe(root)}");
            if (root.TryGetProperty("spec_version", out var version) && !(version.ValueKind == JsonValueKind.Number && version.TryGetInt32(out int v) && v == Version))
                throw SpecError("spec_version", $"version {Describe(version)} is not supported (this library reads version {Version})");
            return builder.Build(root, "", allowVersion: true);
        }
    }

    /// <summary>Builds the network described in the file <paramref name="path"/> (see <see cref="FromJson"/>); the
    /// message of a bad spec starts with the path.</summary>
    public static Module FromFile(string path, Device? device = null)
    {
        var json = File.ReadAllText(path);
        try
        {
            return FromJson(json, device);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    private static string Describe(JsonElement e)
    {
        var raw = e.GetRawText();
        return raw.Length <= 40 ? raw : raw[..37] + "...";
    }

    private static readonly string[] KnownTypes =
    {
        "Sequential", "Functional", "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "BatchNorm1D", "BatchNorm2D",
        "Activation", "Flatten", "Reshape", "Dropout", "Embedding", "SimpleRNN", "LSTM", "GRU", "Bidirectional",
        "Bagging", "Boosting",
    };

    /// <summary>Reads one spec; tracks the seeds handed out and the elements allocated.</summary>
    private sealed class Builder
    {
        private readonly Device device;
        private readonly long maxElements;
        private long elements;
        private int nextSeed;

        public Builder(Device device, long maxElements) => (this.device, this.maxElements) = (device, maxElements);

        /// <summary>Builds the module at <paramref name="path"/>; on failure disposes whatever it built.</summary>
        public Module Build(JsonElement spec, string path, bool allowVersion = false)
        {
            var f = new Fields(spec, path);
            var type = f.String("type");
            if (!KnownTypes.Contains(type))
                throw SpecError(f.PathOf("type"), $"unknown layer type \"{type}\"; known: {string.Join(", ", KnownTypes)}");
            if (allowVersion) f.Optional("spec_version");
            Module module = type switch
            {
                "Sequential" => BuildSequential(f),
                "Functional" => BuildFunctional(f),
                "Bidirectional" => BuildBidirectional(f),
                "Bagging" or "Boosting" => BuildEnsemble(type, f),
                _ => BuildLayer(type, f),
            };
            try
            {
                f.RefuseUnknown(type);
            }
            catch
            {
                module.Dispose();
                throw;
            }
            return module;
        }

        private void Reserve(Fields f, long count, string what)
        {
            if (count < 0 || count > maxElements - elements)
                throw SpecError(f.Path, $"{what} would need {(count < 0 ? "more than 2^63" : count.ToString(CultureInfo.InvariantCulture))} parameter and buffer elements; this spec may create at most {maxElements} in all");
            elements += count;
        }

        /// <summary>An element count computed with checked arithmetic; -1 when it overflows (Reserve refuses it).</summary>
        private static long Count(Func<long> count)
        {
            try { return count(); }
            catch (OverflowException) { return -1; }
        }

        private int Seed(Fields f) => f.Has("seed") ? f.Int("seed", int.MinValue) : nextSeed++;

        private Module BuildLayer(string type, Fields f)
        {
            // Constructors check their arguments with ArgumentExceptions: the message then names the layer's path.
            try
            {
                switch (type)
                {
                    case "Dense":
                    {
                        long inputs = f.Long("inputs", 1), outputs = f.Long("outputs", 1);
                        bool bias = f.Bool("bias", true);
                        int seed = Seed(f);
                        Reserve(f, Count(() => checked((inputs + (bias ? 1 : 0)) * outputs)), $"Dense({inputs} -> {outputs})");
                        return new Dense(inputs, outputs, bias, seed: seed, device: device);
                    }
                    case "Conv2D":
                    {
                        long inputs = f.Long("in_channels", 1), outputs = f.Long("out_channels", 1);
                        var kernel = f.Size("kernel_size", 1);
                        var stride = f.Size("stride", 1, 1);
                        var padding = f.Size("padding", 0, 0);
                        var dilation = f.Size("dilation", 1, 1);
                        int groups = f.Int("groups", 1, 1);
                        bool bias = f.Bool("bias", true);
                        int seed = Seed(f);
                        if (inputs % groups != 0 || outputs % groups != 0)
                            throw SpecError(f.PathOf("groups"), $"in_channels = {inputs} and out_channels = {outputs} must both be divisible by groups = {groups}");
                        Reserve(f, Count(() => checked(outputs * (inputs / groups * kernel.Height * kernel.Width + (bias ? 1 : 0)))), $"Conv2D({inputs} -> {outputs}, kernel {kernel})");
                        return new Conv2D(inputs, outputs, kernel, stride, padding, dilation, groups, bias, seed: seed, device: device);
                    }
                    case "MaxPool2D":
                    {
                        var kernel = f.Size("kernel_size", 1);
                        return new MaxPool2D(kernel, f.Size("stride", 1, kernel), f.Size("padding", 0, 0));
                    }
                    case "AvgPool2D":
                    {
                        var kernel = f.Size("kernel_size", 1);
                        return new AvgPool2D(kernel, f.Size("stride", 1, kernel), f.Size("padding", 0, 0), f.Bool("count_include_pad", true));
                    }
                    case "GlobalAvgPool2D":
                        return new GlobalAvgPool2D();
                    case "BatchNorm1D":
                    case "BatchNorm2D":
                    {
                        long features = f.Long("features", 1);
                        float momentum = f.Float("momentum", 0.1f), eps = f.Float("eps", 1e-5f);
                        Reserve(f, Count(() => checked(4 * features)), $"{type}({features})");
                        return type == "BatchNorm1D" ? new BatchNorm1D(features, momentum, eps, device) : new BatchNorm2D(features, momentum, eps, device);
                    }
                    case "Activation":
                    {
                        var name = f.String("activation");
                        if (name == "leaky_relu") return Activation.FromName(name, f.Float("slope", 0.01f));
                        try { return Activation.FromName(name); }
                        catch (ArgumentException e) { throw SpecError(f.PathOf("activation"), e.Message.Split(" (Parameter")[0]); }
                    }
                    case "Flatten":
                        return new Flatten();
                    case "Reshape":
                    {
                        var shape = f.LongArray("shape", -1);
                        if (shape.Count(d => d == -1) > 1 || shape.Contains(0))
                            throw SpecError(f.PathOf("shape"), $"expected positive sizes and at most one -1, got [{string.Join(", ", shape)}]");
                        return new Reshape(shape);
                    }
                    case "Dropout":
                    {
                        float p = f.Float("p", 0.5f);
                        if (!(p >= 0 && p < 1)) throw SpecError(f.PathOf("p"), $"expected a probability in [0, 1), got {p}");
                        return new Dropout(p, f.Has("seed") ? f.Long("seed", long.MinValue) : 0);
                    }
                    case "Embedding":
                    {
                        long n = f.Long("num_embeddings", 1), dim = f.Long("embedding_dim", 1);
                        long? padding = f.NullableLong("padding_idx");
                        int seed = Seed(f);
                        if (padding is long q && (q < -n || q >= n))
                            throw SpecError(f.PathOf("padding_idx"), $"expected an index in [{-n}, {n}), got {q}");
                        Reserve(f, Count(() => checked(n * dim)), $"Embedding({n} x {dim})");
                        return new Embedding(n, dim, padding, seed, device);
                    }
                    default:   // SimpleRNN, LSTM, GRU
                    {
                        long inputs = f.Long("input_size", 1), units = f.Long("units", 1);
                        bool sequences = f.Bool("return_sequences", false), state = f.Bool("return_state", false);
                        bool backwards = f.Bool("go_backwards", false), stateful = f.Bool("stateful", false), bias = f.Bool("bias", true);
                        int seed = Seed(f);
                        int gates = type == "LSTM" ? 4 : type == "GRU" ? 3 : 1;
                        Reserve(f, Count(() => checked(gates * units * (inputs + units + (bias ? 2 : 0)))), $"{type}({inputs} -> {units})");
                        return type switch
                        {
                            "LSTM" => new LSTM(inputs, units, sequences, state, backwards, stateful, bias, seed, device),
                            "GRU" => new GRU(inputs, units, sequences, state, backwards, stateful, bias, seed, device),
                            _ => new SimpleRNN(inputs, units, sequences, state, backwards, stateful, bias, seed, device),
                        };
                    }
                }
            }
            catch (ArgumentException e)
            {
                throw SpecError(f.Path, $"{type}: {e.Message.Split(" (Parameter")[0]}");
            }
        }

        private Module BuildSequential(Fields f)
        {
            var items = f.Array("layers");
            var built = new List<Module>();
            try
            {
                for (int i = 0; i < items.Length; i++) built.Add(Build(items[i], $"{f.PathOf("layers")}[{i}]"));
                return new Sequential(built.ToArray());
            }
            catch
            {
                foreach (var m in built) m.Dispose();
                throw;
            }
        }

        /// <summary>A trained Bagging or Boosting: its members (any spec), and the vote's parameters.</summary>
        private Module BuildEnsemble(string type, Fields f)
        {
            int classes = f.Int("classes", 2);
            var items = f.Array("members");
            if (items.Length == 0) throw SpecError(f.PathOf("members"), "an ensemble needs at least one member");
            EnsembleVote vote = default;
            BoostingAlgorithm algorithm = default;
            double? outOfBag = null;
            double[] weights = System.Array.Empty<double>(), errors = System.Array.Empty<double>();
            if (type == "Bagging")
            {
                var v = f.Has("vote") ? f.String("vote") : "average";
                vote = v switch
                {
                    "average" => EnsembleVote.AverageProbabilities,
                    "majority" => EnsembleVote.Majority,
                    _ => throw SpecError(f.PathOf("vote"), $"expected \"average\" or \"majority\", got \"{v}\""),
                };
                if (f.Has("out_of_bag_accuracy")) outOfBag = f.Double("out_of_bag_accuracy");
            }
            else
            {
                var a = f.String("algorithm");
                algorithm = a switch
                {
                    "SAMME" => BoostingAlgorithm.Samme,
                    "SAMME.R" => BoostingAlgorithm.SammeR,
                    _ => throw SpecError(f.PathOf("algorithm"), $"expected \"SAMME\" or \"SAMME.R\", got \"{a}\""),
                };
                weights = f.DoubleArray("member_weights");
                errors = f.DoubleArray("member_errors");
                if (weights.Length != items.Length || errors.Length != items.Length)
                    throw SpecError(f.PathOf("member_weights"), $"{weights.Length} member weights and {errors.Length} member errors for {items.Length} members");
                if (weights.Sum() <= 0) throw SpecError(f.PathOf("member_weights"), "the member weights must have a positive sum");
            }
            var built = new List<Module>();
            try
            {
                for (int i = 0; i < items.Length; i++) built.Add(Build(items[i], $"{f.PathOf("members")}[{i}]"));
                return type == "Bagging"
                    ? new Bagging(built, classes, vote, outOfBag)
                    : new Boosting(built, classes, algorithm, weights, errors);
            }
            catch
            {
                foreach (var m in built) m.Dispose();
                throw;
            }
        }

        private Module BuildBidirectional(Fields f)
        {
            var mode = f.Has("merge_mode") ? f.String("merge_mode") : "concat";
            if (mode is not ("concat" or "sum" or "mul" or "ave"))
                throw SpecError(f.PathOf("merge_mode"), $"expected one of concat, sum, mul, ave, got \"{mode}\"");
            var layerPath = f.PathOf("layer");
            var layer = Build(f.Object("layer"), layerPath);
            if (layer is not RecurrentLayer recurrent)
            {
                layer.Dispose();
                throw SpecError(layerPath, "Bidirectional wraps a SimpleRNN, LSTM or GRU");
            }
            if (recurrent.GoBackwards)
            {
                layer.Dispose();
                throw SpecError($"{layerPath}.go_backwards", "the wrapped layer must go forwards (the wrapper makes the backward copy)");
            }
            try
            {
                // The backward copy has the forward layer's size.
                Reserve(f, recurrent.Parameters().Sum(p => p.Count), "the backward layer");
                return new Bidirectional(recurrent, mode, f.Has("seed") ? f.Int("seed", int.MinValue) : null);
            }
            catch
            {
                layer.Dispose();
                throw;
            }
        }

        private Module BuildFunctional(Fields f)
        {
            var inputShape = f.LongArray("input_shape", 0);
            var layerSpecs = f.Array("layers");
            var nodeSpecs = f.Array("nodes");
            int output = f.Int("output", 0);
            var layers = new List<Module>();
            try
            {
                for (int i = 0; i < layerSpecs.Length; i++) layers.Add(Build(layerSpecs[i], $"{f.PathOf("layers")}[{i}]"));
                if (nodeSpecs.Length == 0) throw SpecError(f.PathOf("nodes"), "expected at least the input node");
                var nodes = new List<Symbolic>();
                var used = new bool[layers.Count];
                for (int i = 0; i < nodeSpecs.Length; i++)
                {
                    var n = new Fields(nodeSpecs[i], $"{f.PathOf("nodes")}[{i}]");
                    if (i == 0)
                    {
                        if (!n.Has("op") || n.String("op") != "input") throw SpecError(n.Path, "node 0 must be {\"op\": \"input\"}");
                        n.RefuseUnknown("input node");
                        try { nodes.Add(Symbolic.Input(inputShape)); }
                        catch (ArgumentException e) { throw SpecError(f.PathOf("input_shape"), e.Message.Split(" (Parameter")[0]); }
                        continue;
                    }
                    var inputs = n.IntArray("inputs");
                    for (int k = 0; k < inputs.Length; k++)
                        if (inputs[k] < 0 || inputs[k] >= i)
                            throw SpecError($"{n.PathOf("inputs")}[{k}]", $"expected an earlier node (0..{i - 1}), got {inputs[k]}");
                    if (n.Has("layer"))
                    {
                        if (n.Has("op")) throw SpecError(n.PathOf("op"), "a node has either \"layer\" or \"op\", not both");
                        int layer = n.Int("layer", 0);
                        if (layer >= layers.Count) throw SpecError(n.PathOf("layer"), $"expected a layer index in 0..{layers.Count - 1}, got {layer}");
                        if (inputs.Length != 1) throw SpecError(n.PathOf("inputs"), $"a layer node takes one input, got {inputs.Length}");
                        used[layer] = true;
                        nodes.Add(layers[layer].Call(nodes[inputs[0]]));
                    }
                    else
                    {
                        var op = n.String("op");
                        if (op is not ("add" or "mul")) throw SpecError(n.PathOf("op"), $"expected \"add\" or \"mul\" (or a \"layer\"), got \"{op}\"");
                        if (inputs.Length != 2) throw SpecError(n.PathOf("inputs"), $"\"{op}\" takes two inputs, got {inputs.Length}");
                        nodes.Add(op == "add" ? nodes[inputs[0]] + nodes[inputs[1]] : nodes[inputs[0]] * nodes[inputs[1]]);
                    }
                    n.RefuseUnknown("node");
                }
                if (output >= nodes.Count) throw SpecError(f.PathOf("output"), $"expected a node index in 0..{nodes.Count - 1}, got {output}");
                for (int l = 0; l < used.Length; l++)
                    if (!used[l]) throw SpecError($"{f.PathOf("layers")}[{l}]", "the layer is used by no node");
                var model = new Functional(nodes[0], nodes[output]);
                // A layer only on a branch the output does not need would be neither run nor owned nor saved.
                var reached = new HashSet<Module>(model.Nodes.Where(n => n.Layer is not null).Select(n => n.Layer!), ReferenceEqualityComparer.Instance);
                for (int l = 0; l < layers.Count; l++)
                    if (!reached.Contains(layers[l])) throw SpecError($"{f.PathOf("layers")}[{l}]", $"the layer is used only by nodes the output (node {output}) does not depend on");
                return model;
            }
            catch
            {
                foreach (var m in layers) m.Dispose();
                throw;
            }
        }
    }

    /// <summary>The fields of one JSON object, read by name with the path of each in errors; remembers which were read.</summary>
    private sealed class Fields
    {
        private readonly Dictionary<string, JsonElement> values = new(StringComparer.Ordinal);
        private readonly HashSet<string> read = new(StringComparer.Ordinal) { "type" };

        public Fields(JsonElement spec, string path)
        {
            Path = path;
            if (spec.ValueKind != JsonValueKind.Object) throw SpecError(path, $"expected an object, got {Describe(spec)}");
            foreach (var p in spec.EnumerateObject())
                if (!values.TryAdd(p.Name, p.Value)) throw SpecError(PathOf(p.Name), "the field appears twice");
        }

        public string Path { get; }

        public string PathOf(string name) => Path.Length == 0 ? name : $"{Path}.{name}";

        public bool Has(string name) => values.ContainsKey(name);

        public void Optional(string name) => read.Add(name);

        private JsonElement Get(string name)
        {
            read.Add(name);
            return values.TryGetValue(name, out var v) ? v : throw SpecError(PathOf(name), "missing");
        }

        private InvalidDataException Expected(string name, string what, JsonElement got) => SpecError(PathOf(name), $"expected {what}, got {Describe(got)}");

        public void RefuseUnknown(string type)
        {
            foreach (var name in values.Keys)
                if (!read.Contains(name))
                    throw SpecError(PathOf(name), $"unknown field for {type}");
        }

        public string String(string name)
        {
            var v = Get(name);
            return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Expected(name, "a string", v);
        }

        public bool Bool(string name, bool fallback)
        {
            if (!Has(name)) { read.Add(name); return fallback; }
            var v = Get(name);
            return v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Expected(name, "true or false", v) };
        }

        public long Long(string name, long min)
        {
            var v = Get(name);
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x) && x >= min) return x;
            throw Expected(name, min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : "an integer", v);
        }

        public int Int(string name, int min)
        {
            var v = Get(name);
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) && x >= min) return x;
            throw Expected(name, min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : "an integer", v);
        }

        public int Int(string name, int min, int fallback) => Has(name) ? Int(name, min) : fallback;

        public long? NullableLong(string name)
        {
            if (!Has(name)) { read.Add(name); return null; }
            var v = Get(name);
            if (v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x) ? x : throw Expected(name, "an integer or null", v);
        }

        public float Float(string name, float fallback)
        {
            if (!Has(name)) { read.Add(name); return fallback; }
            var v = Get(name);
            return v.ValueKind == JsonValueKind.Number && v.TryGetSingle(out float x) && float.IsFinite(x) ? x : throw Expected(name, "a finite number", v);
        }

        /// <summary>One integer (both sides) or [height, width], each at least <paramref name="min"/>.</summary>
        public Size2 Size(string name, int min, Size2? fallback = null)
        {
            if (!Has(name) && fallback is Size2 f) { read.Add(name); return f; }
            var v = Get(name);
            string what = min == 1 ? "a positive integer or two positive integers" : "a non-negative integer or two non-negative integers";
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int s) && s >= min) return s;
            if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 2)
            {
                var h = v[0];
                var w = v[1];
                if (h.ValueKind == JsonValueKind.Number && h.TryGetInt32(out int hv) && hv >= min &&
                    w.ValueKind == JsonValueKind.Number && w.TryGetInt32(out int wv) && wv >= min)
                    return new Size2(hv, wv);
            }
            throw Expected(name, what, v);
        }

        public long[] LongArray(string name, long min)
        {
            var v = Get(name);
            string what = min == 0 ? "an array of non-negative integers" : "an array of integers";
            if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() > NativeConstants.KN_MAX_RANK) throw Expected(name, $"{what} (at most {NativeConstants.KN_MAX_RANK})", v);
            var result = new long[v.GetArrayLength()];
            int i = 0;
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long x) || x < min) throw SpecError($"{PathOf(name)}[{i}]", $"expected an integer >= {min}, got {Describe(item)}");
                result[i++] = x;
            }
            return result;
        }

        public int[] IntArray(string name)
        {
            var v = Get(name);
            if (v.ValueKind != JsonValueKind.Array) throw Expected(name, "an array of node indices", v);
            var result = new int[v.GetArrayLength()];
            int i = 0;
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int x)) throw SpecError($"{PathOf(name)}[{i}]", $"expected a node index, got {Describe(item)}");
                result[i++] = x;
            }
            return result;
        }

        public double Double(string name)
        {
            var v = Get(name);
            return v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double x) && double.IsFinite(x) ? x : throw Expected(name, "a finite number", v);
        }

        public double[] DoubleArray(string name)
        {
            var v = Get(name);
            if (v.ValueKind != JsonValueKind.Array) throw Expected(name, "an array of numbers", v);
            var result = new double[v.GetArrayLength()];
            int i = 0;
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetDouble(out double x) || !double.IsFinite(x) || x < 0)
                    throw SpecError($"{PathOf(name)}[{i}]", $"expected a finite number >= 0, got {Describe(item)}");
                result[i++] = x;
            }
            return result;
        }

        public JsonElement[] Array(string name)
        {
            var v = Get(name);
            return v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().ToArray() : throw Expected(name, "an array", v);
        }

        public JsonElement Object(string name) => Get(name);
    }
}
