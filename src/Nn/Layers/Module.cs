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
        return this;
    }

    /// <summary>The layers, in order.</summary>
    public IReadOnlyList<Module> Layers => layers;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var layer in layers) x = layer.Forward(x);
        return x;
    }
}
