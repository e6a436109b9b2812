namespace Kernels.Nn;

/// <summary>
/// Frees the native memory of every tensor created inside it when disposed, so a training loop never
/// waits for the garbage collector to release device memory:
/// <code>
/// using (var scope = new DisposeScope())
/// {
///     var loss = model.Forward(x).Sub(y).Square().Mean();
///     loss.Backward();
///     keep = scope.MoveToOuter(loss);   // survives this scope
/// }
/// </code>
/// Scopes nest per thread. Tensors created outside any scope are owned by their creator.
/// Gradients assigned to leaf tensors by <see cref="Tensor.Backward"/> belong to the leaf, not to a scope.
/// </summary>
public sealed class DisposeScope : IDisposable
{
    [ThreadStatic] private static DisposeScope? current;

    private readonly DisposeScope? parent;
    private readonly HashSet<Tensor> owned = new(ReferenceEqualityComparer.Instance);
    private bool disposed;

    /// <summary>Opens a scope that becomes current on this thread until disposed.</summary>
    public DisposeScope()
    {
        parent = current;
        current = this;
    }

    /// <summary>Number of live tensors this scope will free.</summary>
    public int Count => owned.Count;

    internal static void Track(Tensor tensor) => current?.owned.Add(tensor);

    /// <summary>Removes the tensor from whichever scope owns it: the caller now owns it.</summary>
    internal static void Untrack(Tensor tensor)
    {
        for (var scope = current; scope is not null; scope = scope.parent)
            if (scope.owned.Remove(tensor)) return;
    }

    /// <summary>Hands the tensor to the enclosing scope (or to the caller when there is none).</summary>
    public Tensor MoveToOuter(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (owned.Remove(tensor)) parent?.owned.Add(tensor);
        return tensor;
    }

    /// <summary>Takes the tensor out of every scope: the caller must dispose it.</summary>
    public Tensor Detach(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        owned.Remove(tensor);
        return tensor;
    }

    /// <summary>Frees every tensor still owned by the scope and makes the enclosing scope current.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (!ReferenceEquals(current, this))
            throw new InvalidOperationException("DisposeScope disposed out of order: dispose inner scopes first");
        current = parent;
        foreach (var tensor in owned) tensor.Dispose();
        owned.Clear();
    }
}
