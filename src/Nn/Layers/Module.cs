namespace Kernels.Nn;

/// <summary>
/// A layer or a model: maps tensors to tensors and owns its parameters (and frees them on Dispose).
/// Containers (<see cref="Sequential"/>) nest, and <see cref="Parameters"/> walks the whole tree.
/// </summary>
public abstract partial class Module : IDisposable
{
    private readonly List<(string Name, Tensor Tensor)> parameters = new();
    private readonly List<(string Name, Tensor Tensor)> buffers = new();
    private readonly List<(string Name, Module Module)> children = new();
    private bool disposed;

    /// <summary>True in training mode (the default); dropout and the like behave differently in eval.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Computes the output.</summary>
    public abstract Tensor Forward(Tensor input);

    /// <summary>Same as <see cref="Forward"/>: lets a layer be applied like a function.</summary>
    public Tensor Call(Tensor input) => Forward(input);

    /// <summary>Applies the layer to a placeholder, for building a <see cref="Functional"/> model.</summary>
    public Symbolic Call(Symbolic input) => new(this, null, GetType().Name, input ?? throw new ArgumentNullException(nameof(input)));

    /// <summary>Registers a parameter (it requires gradients and is owned by this module).</summary>
    protected Tensor RegisterParameter(string name, Tensor tensor)
    {
        DisposeScope.Untrack(tensor);
        tensor.RequiresGrad = true;
        parameters.Add((name, tensor));
        return tensor;
    }

    /// <summary>
    /// Registers a buffer: state that is saved and loaded with the weights but not trained (batch
    /// normalization's running mean and variance). Owned by this module.
    /// </summary>
    protected Tensor RegisterBuffer(string name, Tensor tensor)
    {
        DisposeScope.Untrack(tensor);
        buffers.Add((name, tensor));
        return tensor;
    }

    /// <summary>Registers a sub-module (owned by this module).</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        children.Add((name, module));
        return module;
    }

    /// <summary>Every parameter of this module and its sub-modules, with dotted names ("0.weight").</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters()
    {
        foreach (var p in parameters) yield return p;
        foreach (var (childName, child) in children)
            foreach (var (name, tensor) in child.NamedParameters())
                yield return ($"{childName}.{name}", tensor);
    }

    /// <summary>Every buffer (non-trained state) of this module and its sub-modules, with dotted names.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedBuffers()
    {
        foreach (var b in buffers) yield return b;
        foreach (var (childName, child) in children)
            foreach (var (name, tensor) in child.NamedBuffers())
                yield return ($"{childName}.{name}", tensor);
    }

    /// <summary>Parameters, then buffers: everything a weights file holds.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedState() => NamedParameters().Concat(NamedBuffers());

    /// <summary>
    /// Everything a state dict holds under PyTorch's names and in PyTorch's layout (the exchange view that
    /// safetensors, model files and ONNX use): by default the parameters and buffers of <see cref="NamedState"/>
    /// as they are, each child's under "child.". A layer whose PyTorch twin names or lays out a tensor
    /// differently says so here, in this one place (Dense: weight transposed; the recurrent layers: "_l0"
    /// suffixes; BatchNorm: num_batches_tracked).
    /// </summary>
    internal virtual IEnumerable<ExchangeTensor> ExchangeState()
    {
        foreach (var (name, tensor) in parameters) yield return new(name, tensor, false);
        foreach (var (name, tensor) in buffers) yield return new(name, tensor, false);
        foreach (var (childName, child) in children)
            foreach (var e in child.ExchangeState())
                yield return e with { Name = $"{childName}.{e.Name}" };
    }

    /// <summary>Every parameter of this module and its sub-modules.</summary>
    public IEnumerable<Tensor> Parameters() => NamedParameters().Select(p => p.Tensor);

    /// <summary>Number of trainable values.</summary>
    public long ParameterCount => Parameters().Sum(p => p.Count);

    /// <summary>Training mode on (or off) for this module and all sub-modules.</summary>
    public Module Train(bool on = true)
    {
        Training = on;
        foreach (var (_, child) in children) child.Train(on);
        return this;
    }

    /// <summary>Evaluation mode (dropout off).</summary>
    public Module Eval() => Train(false);

    /// <summary>
    /// Moves every parameter and buffer of this module and its sub-modules to <paramref name="device"/>, in
    /// place (the tensors stay the same objects; their gradients are dropped). Part of model parallelism:
    /// a <see cref="Sequential"/> or <see cref="Functional"/> whose layers sit on different devices moves
    /// each activation to the next layer's device (<see cref="Sequential.PlaceOn"/>). Do it before
    /// creating the optimizer: optimizer state stays where it was created.
    /// </summary>
    public Module To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        foreach (var (_, t) in NamedState()) t.MoveTo(device);
        System.Threading.Interlocked.Increment(ref placementVersion);
        return this;
    }

    /// <summary>Bumped by every <see cref="To(Device)"/>: containers re-read their layers' devices then.</summary>
    internal static int placementVersion;

    /// <summary>Where this module wants its input: the device of its first parameter (or buffer), or null for a
    /// module without state (an activation, a reshape), which runs wherever its input is.</summary>
    internal Device? InputDevice
    {
        get
        {
            foreach (var (_, t) in NamedParameters()) return t.Device;
            foreach (var (_, t) in NamedBuffers()) return t.Device;
            return null;
        }
    }

    /// <summary>Where this module's output lands: the device of its last parameter (or buffer), or null
    /// without state. For a network placed on several devices, the device of its last placed layer.</summary>
    internal Device? OutputDevice =>
        NamedParameters().Select(p => p.Tensor.Device).LastOrDefault() ?? NamedBuffers().Select(b => b.Tensor.Device).LastOrDefault();

    /// <summary>The distinct devices holding this module's parameters and buffers.</summary>
    internal IReadOnlyList<Device> StateDevices() =>
        NamedState().Select(p => p.Tensor.Device).Distinct(ReferenceEqualityComparer.Instance).Cast<Device>().ToList();

    /// <summary>Whether <see cref="Forward"/> moves activations between its layers' devices (model parallelism).</summary>
    internal virtual bool MovesActivations => false;

    /// <summary>Clears the gradients of every parameter.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.ZeroGrad();
    }

    /// <summary>Frees every parameter and sub-module.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        DisposeState();
        foreach (var (_, t) in parameters) t.Dispose();
        foreach (var (_, t) in buffers) t.Dispose();
        foreach (var (_, m) in children) m.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Writes the state dict (PyTorch's names and layout, see <see cref="StateDict"/>) to a safetensors file.</summary>
    public void SaveStateDict(string path) => StateDict.Save(this, path);

    /// <summary>
    /// Loads a safetensors state dict (PyTorch's names and layout) into this module; with <paramref name="strict"/>,
    /// every tensor of the module must be in the file and nothing else. The module changes only when the whole
    /// file is valid and matches (see <see cref="StateDict.Load(Module, string, bool)"/>).
    /// </summary>
    public void LoadStateDict(string path, bool strict = true) => StateDict.Load(this, path, strict);

    /// <summary>
    /// Saves the whole model, architecture and weights, to one safetensors file (see <see cref="ModelFile"/>);
    /// <see cref="Load"/> rebuilds it without the code that made it.
    /// </summary>
    public void Save(string path) => ModelFile.Save(this, path);

    /// <summary>Rebuilds a model saved by <see cref="Save"/> on <paramref name="device"/> (default: the CPU).</summary>
    public static Module Load(string path, Device? device = null) => ModelFile.Load(path, device);

    /// <summary>Frees what a module owns besides parameters, buffers and sub-modules (a stateful recurrent
    /// layer's carried states); called once, by <see cref="Dispose"/>.</summary>
    protected virtual void DisposeState() { }
}

/// <summary>Applies its modules in order; containers nest.</summary>
public sealed class Sequential : Module
{
    private readonly List<Module> layers = new();

    /// <summary>A container of the given layers, applied first to last.</summary>
    public Sequential(params Module[] modules)
    {
        foreach (var m in modules) Add(m);
    }

    /// <summary>Appends a layer.</summary>
    public Sequential Add(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        RegisterModule(layers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
        layers.Add(module);
        layerDevices = null;
        return this;
    }

    /// <summary>The layers, in order.</summary>
    public IReadOnlyList<Module> Layers => layers;

    /// <summary>
    /// Model parallelism in one process: places layers <c>FromLayer</c> up to the next entry's
    /// <c>FromLayer</c> (or the end) on <c>Device</c>, moving their parameters and buffers there
    /// (<see cref="Module.To(Device)"/>); layers before the first entry stay where they are.
    /// <see cref="Forward"/> then moves the activation to each layer's device where it changes (a
    /// differentiable copy: gradients flow back across it), so the output is on the last layer's device,
    /// which is where a <see cref="Model"/> around this network keeps its targets. A layer without
    /// parameters or buffers (an activation, a reshape) runs where its input is. Example:
    /// <c>net.PlaceOn((0, Device.Cpu), (2, Device.Get("opencl:0")))</c>. The placement is checked whole
    /// before anything moves: a layer index outside the network or not increasing is an
    /// <see cref="ArgumentOutOfRangeException"/>/<see cref="ArgumentException"/>. Place before creating the optimizer.
    /// </summary>
    public Sequential PlaceOn(params (int FromLayer, Device Device)[] placement)
    {
        ArgumentNullException.ThrowIfNull(placement);
        if (placement.Length == 0) throw new ArgumentException("PlaceOn needs at least one (fromLayer, device) entry", nameof(placement));
        for (int k = 0; k < placement.Length; k++)
        {
            var (from, device) = placement[k];
            if (from < 0 || from >= layers.Count)
                throw new ArgumentOutOfRangeException(nameof(placement), from,
                    $"PlaceOn entry {k}: layer {from} does not exist; this Sequential has layers 0 to {layers.Count - 1}");
            if (device is null) throw new ArgumentNullException(nameof(placement), $"PlaceOn entry {k} (layer {from}): the device is null");
            if (k > 0 && from <= placement[k - 1].FromLayer)
                throw new ArgumentException($"PlaceOn entry {k}: layer {from} does not come after entry {k - 1}'s layer {placement[k - 1].FromLayer}; list the entries by increasing layer", nameof(placement));
        }
        for (int k = 0; k < placement.Length; k++)
        {
            int end = k + 1 < placement.Length ? placement[k + 1].FromLayer : layers.Count;
            for (int i = placement[k].FromLayer; i < end; i++) layers[i].To(placement[k].Device);
        }
        return this;
    }

    internal override bool MovesActivations => true;

    // Each layer's input device (null: runs where its input is), read once per placement change
    // rather than walking every layer's parameters on each forward.
    private Device?[]? layerDevices;
    private int layerDevicesVersion = -1;

    private Device?[] LayerDevices()
    {
        int version = Volatile.Read(ref placementVersion);
        if (layerDevices is null || layerDevices.Length != layers.Count || layerDevicesVersion != version)
        {
            layerDevices = layers.Select(l => l.InputDevice).ToArray();
            layerDevicesVersion = version;
        }
        return layerDevices;
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        var x = input;
        var devices = LayerDevices();
        for (int i = 0; i < layers.Count; ++i)
        {
            // Model parallelism: the activation follows the layers across devices (a no-op on one device).
            if (devices[i] is { } device && !ReferenceEquals(x.Device, device)) x = x.To(device);
            // A Dense followed by an elementwise Activation runs as one fused op (bias and activation
            // in the GEMM's write-out, one autograd node); the values are those of the two layers.
            if (layers[i] is Dense dense && i + 1 < layers.Count && layers[i + 1] is Activation { Elementwise: UnaryOp op } act)
            {
                x = dense.Forward(x, op, act.Slope);
                ++i;
                continue;
            }
            x = layers[i].Forward(x);
        }
        return x;
    }
}

/// <summary>
/// One tensor of a module's exchange view (<see cref="Module.ExchangeState"/>): its PyTorch state_dict name,
/// the tensor, and whether PyTorch holds it transposed (a 2-D [a, b] here is [b, a] there). A null tensor is
/// BatchNorm's num_batches_tracked, which Kernels does not keep (see <see cref="BatchNormBase"/>).
/// </summary>
internal readonly record struct ExchangeTensor(string Name, Tensor? Tensor, bool Transposed);
