namespace Kernels.Nn;

/// <summary>How one tensor was computed: its inputs, and the rule that turns the gradient of the
/// result into gradients of the inputs (null where an input needs none). Rules live in
/// <see cref="Gradients"/>.</summary>
internal sealed class GradNode
{
    public GradNode(string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        Name = name;
        Inputs = inputs;
        Backward = backward;
    }

    public string Name { get; }
    public Tensor[] Inputs { get; }
    public Func<Tensor, Tensor?[]> Backward { get; }

    // ---- Ops with two outputs (the LSTM cell's h and c; Tensor.RecordPair) ----
    // The first output holds the op's node, whose PairBackward takes the gradients of both outputs
    // (either may be null: that output got none). The second output's node has the first output as
    // its only input and no rule: Backward parks its gradient for the first output's rule, which
    // runs after it in reverse topological order (the second output depends on the first), so the op's
    // backward runs once, with both gradients.
    public Func<Tensor?, Tensor?, Tensor?[]>? PairBackward { get; init; }
    public bool IsSecondOutput { get; init; }
}

/// <summary>Turns gradient recording off on this thread while alive: <c>using (Tensor.NoGrad()) { ... }</c>.</summary>
public sealed class NoGradScope : IDisposable
{
    [ThreadStatic] private static int depth;
    private bool disposed;

    internal NoGradScope() => depth++;

    internal static bool GradEnabled => depth == 0;

    /// <summary>Restores recording (when this was the outermost scope).</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        depth--;
    }
}

public sealed partial class Tensor
{
    /// <summary>Stops recording operations for autograd until the returned scope is disposed.</summary>
    public static NoGradScope NoGrad() => new();

    /// <summary>Whether operations on this thread are being recorded.</summary>
    public static bool IsGradEnabled => NoGradScope.GradEnabled;

    /// <summary>Whether <see cref="Record"/> would attach a rule for these inputs: recording is on and
    /// one of them needs gradients. Ops that must save extra state for their backward (pooling's
    /// arg-max, batch norm's statistics) ask first, so inference pays for none of it.</summary>
    internal static bool WillRecord(params Tensor?[] inputs)
    {
        if (!NoGradScope.GradEnabled) return false;
        foreach (var t in inputs) if (t is not null && t.RequiresGrad) return true;
        return false;
    }

    /// <summary>Attaches a backward rule to a freshly computed result when any input needs gradients.</summary>
    internal static Tensor Record(Tensor result, string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        if (!WillRecord(inputs)) return result;
        result.requiresGrad = true;
        result.Node = new GradNode(name, inputs, backward);
        return result;
    }

    /// <summary>
    /// Attaches one backward rule to the two freshly computed results of one op (when any input needs
    /// gradients): <paramref name="backward"/> gets the gradients of <paramref name="first"/> and
    /// <paramref name="second"/> (null for one that got none) and returns one per input, and runs once
    /// per backward pass however the two outputs are used.
    /// </summary>
    internal static void RecordPair(Tensor first, Tensor second, string name, Tensor[] inputs,
                                    Func<Tensor?, Tensor?, Tensor?[]> backward)
    {
        if (!WillRecord(inputs)) return;
        first.requiresGrad = true;
        first.Node = new GradNode(name, inputs, g => backward(g, null)) { PairBackward = backward };
        second.requiresGrad = true;
        second.Node = new GradNode(name + " (second output)", new[] { first },
                                   _ => throw new InvalidOperationException($"{name}: the second output's gradient is handled by the first's rule"))
        { IsSecondOutput = true };
    }

    /// <summary>
    /// Computes the gradient of this tensor with respect to every leaf that requires gradients, and
    /// adds it to the leaf's <see cref="Grad"/> (gradients accumulate across calls until cleared).
    /// Without an argument the tensor must hold one element (a loss); otherwise pass the gradient of
    /// some scalar with respect to this tensor, of the same shape.
    /// </summary>
    public void Backward(Tensor? gradient = null)
    {
        if (!RequiresGrad)
            throw new InvalidOperationException("Backward() on a tensor that does not require gradients: no input had RequiresGrad set");
        if (gradient is null && Count != 1)
            throw new InvalidOperationException($"Backward() without a gradient needs a one-element tensor (a loss); this one has shape {FormatShape(shape)}");
        if (gradient is not null && !gradient.ShapeArray.AsSpan().SequenceEqual(shape))
            throw new ArgumentException($"the gradient has shape {FormatShape(gradient.ShapeArray)} but the tensor has shape {FormatShape(shape)}", nameof(gradient));

        using var noGrad = NoGrad();
        var (order, leafUses) = TopologicalOrder();
        var grads = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        grads[this] = gradient is null ? Ones(shape, Device) : gradient.Detach();

        // The gradients of second outputs (RecordPair), waiting for their first output's rule.
        var parked = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);

        // A leaf's gradient is complete once every node that uses it has run: add it to Grad then
        // (and run its hooks), not where the leaf happens to sit in the order, which for a depth-first
        // order can be the very end. So the last layer's parameters are ready first, while backward
        // goes on: what lets data-parallel training start their all-reduce early.
        void Release(GradNode node)
        {
            foreach (var input in node.Inputs)
            {
                if (input.Node is not null || !leafUses.TryGetValue(input, out int uses)) continue;
                if (uses > 1) { leafUses[input] = uses - 1; continue; }
                leafUses.Remove(input);
                if (grads.Remove(input, out var leafGrad)) AccumulateLeafGradient(input, leafGrad);
            }
        }

        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            bool hasGradient = grads.Remove(t, out var g);
            parked.Remove(t, out var secondGrad);
            if (!hasGradient && secondGrad is null)
            {
                if (t.Node is not null) Release(t.Node);
                continue;
            }
            if (t.Node is null)
            {
                if (g is not null) AccumulateLeafGradient(t, g);
                secondGrad?.Dispose();  // the first output was disposed (its node with it): nothing to run
                continue;
            }
            if (t.Node.IsSecondOutput)
            {
                parked[t.Node.Inputs[0]] = g!;
                continue;   // its one input is the first output, not a leaf
            }
            var inputGrads = t.Node.PairBackward is { } pair ? pair(g, secondGrad) : t.Node.Backward(g!);
            var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
            for (int j = 0; j < t.Node.Inputs.Length; j++)
            {
                var input = t.Node.Inputs[j];
                var ig = inputGrads[j];
                if (ig is null || !input.RequiresGrad) continue;
                // A rule may hand back the incoming gradient itself, or one tensor for two inputs:
                // give each slot its own handle on the storage so each can be freed independently.
                if (ReferenceEquals(ig, g) || ReferenceEquals(ig, secondGrad) || !seen.Add(ig)) ig = ig.Detach();
                if (grads.Remove(input, out var existing))
                {
                    var sum = Binary(BinaryOp.Add, existing, ig);
                    existing.Dispose();
                    ig.Dispose();
                    ig = sum;
                }
                grads[input] = ig;
            }
            foreach (var ig in inputGrads)
                if (ig is not null && !ReferenceEquals(ig, g) && !ReferenceEquals(ig, secondGrad) && !grads.ContainsValue(ig))
                    ig.Dispose();
            g?.Dispose();
            secondGrad?.Dispose();
            Release(t.Node);
        }
    }

    private static void AccumulateLeafGradient(Tensor leaf, Tensor g)
    {
        if (!leaf.RequiresGrad)
        {
            g.Dispose();
            return;
        }
        if (leaf.Grad is null)
        {
            DisposeScope.Untrack(g);   // the gradient belongs to the leaf, not to a scope
            leaf.Grad = g;
        }
        else
        {
            var sum = Binary(BinaryOp.Add, leaf.Grad, g);
            DisposeScope.Untrack(sum);
            leaf.Grad.Dispose();
            g.Dispose();
            leaf.Grad = sum;
        }
        // Backward gathers every contribution to a leaf before it reaches the leaf (reverse
        // topological order), so this runs once per leaf per Backward, with its final gradient.
        if (leaf.gradientHooks is { } hooks)
            foreach (var hook in hooks.ToArray()) hook(leaf);
    }

    private List<Action<Tensor>>? gradientHooks;

    /// <summary>
    /// Calls <paramref name="hook"/> during <see cref="Backward"/> as soon as this leaf's gradient for
    /// that pass has been added to <see cref="Grad"/> (PyTorch's register_post_accumulate_grad_hook):
    /// once per Backward that reaches the leaf, while the pass goes on for the layers before it. What
    /// data-parallel training uses to start a gradient all-reduce while backward still runs. The hook
    /// runs under NoGrad and must not dispose <see cref="Grad"/>. Dispose the result to remove it.
    /// </summary>
    public IDisposable OnGradientAccumulated(Action<Tensor> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        if (Node is not null)
            throw new InvalidOperationException("OnGradientAccumulated: only a leaf tensor (a parameter) accumulates a gradient; this tensor was computed by an operation");
        (gradientHooks ??= new List<Action<Tensor>>()).Add(hook);
        return new HookRegistration(this, hook);
    }

    private sealed class HookRegistration(Tensor leaf, Action<Tensor> hook) : IDisposable
    {
        public void Dispose() => leaf.gradientHooks?.Remove(hook);
    }

    /// <summary>Forgets the accumulated gradient.</summary>
    public void ZeroGrad()
    {
        Grad?.Dispose();
        Grad = null;
    }

    /// <summary>The tensors this one depends on, each after its inputs, and for each leaf the number
    /// of uses by the recorded nodes (one per input slot).</summary>
    private (List<Tensor> Order, Dictionary<Tensor, int> LeafUses) TopologicalOrder()
    {
        var order = new List<Tensor>();
        var leafUses = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor Tensor, bool Expanded)>();
        stack.Push((this, false));
        while (stack.Count > 0)
        {
            var (t, expanded) = stack.Pop();
            if (expanded)
            {
                order.Add(t);
                continue;
            }
            if (!visited.Add(t)) continue;
            stack.Push((t, true));
            if (t.Node is null) continue;
            foreach (var input in t.Node.Inputs)
            {
                if (input.Node is null) leafUses[input] = leafUses.GetValueOrDefault(input) + 1;
                if (input.RequiresGrad && !visited.Contains(input)) stack.Push((input, false));
            }
        }
        return (order, leafUses);
    }
}
