namespace Kernels.Nn;

/// <summary>
/// What the rich Forward of a <see cref="RecurrentLayer"/> (or <see cref="Bidirectional"/>) returns: the
/// output ([B, T, H] with returnSequences, else [B, H]) and, when the layer was built with returnState
/// (Keras's return_state), its final states: h, then c for an LSTM (a Bidirectional layer: the forward
/// layer's states, then the backward layer's). Empty without returnState.
/// </summary>
public sealed record RecurrentResult(Tensor Output, IReadOnlyList<Tensor> States);

/// <summary>
/// The recurrent layers <see cref="SimpleRNN"/>, <see cref="LSTM"/> and <see cref="GRU"/>: Keras's
/// semantics (units, returnSequences, returnState, goBackwards, stateful, an initial state, masks) with
/// PyTorch's weights: <c>weight_ih</c> [G*H, I], <c>weight_hh</c> [G*H, H], <c>bias_ih</c> and
/// <c>bias_hh</c> [G*H] (G = 1, 4, 3 gates; LSTM gates i, f, g, o; GRU r, z, n), initialised
/// U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does. The tensors of a one-layer nn.RNN (tanh) / nn.LSTM / nn.GRU
/// (weight_ih_l0, ..., and *_l0_reverse for the backward layer of a <see cref="Bidirectional"/>) load
/// unchanged, and back.
/// <para>
/// The input is batch-first [B, T, I] (as Keras). A forward pass does the input projection of all T steps
/// as one GEMM ([T*B, I] x W_ih^T), then per step one recurrent GEMM (h W_hh^T, added onto that step's
/// input projection by the GEMM itself) and one cell call (<see cref="RecurrentCells"/>); autograd records
/// the steps, so backward is backpropagation through time.
/// </para>
/// <para>
/// Variable-length batches: pass <c>lengths</c> (row b holds lengths[b] valid steps, then padding) or a
/// [B, T] mask of 0/1. A padded step leaves the state unchanged, its output is zero, and it receives no
/// gradient; the final state is the state after the last valid step.
/// </para>
/// <para>
/// goBackwards (Keras's go_backwards) processes the sequence from its end, and the output sequence is in
/// that processed (reversed) order, as in Keras. With <c>lengths</c> only the valid part of each row is
/// reversed (what PyTorch's packed sequences do for the reverse direction): step s of row b reads time
/// lengths[b] - 1 - s, and the padding stays at the end. With a mask the whole sequence is reversed, mask
/// included (Keras): padded steps then come first and leave the zero initial state alone. Either way
/// <see cref="Bidirectional"/> is correct with padding.
/// </para>
/// </summary>
public abstract class RecurrentLayer : Module
{
    private readonly int seed;
    private Tensor[]? carried;  // stateful: the previous batch's final states, detached (owned here)

    private protected RecurrentLayer(string kind, int gates, int states, long inputSize, long units, bool returnSequences,
                                     bool returnState, bool goBackwards, bool stateful, bool bias, int seed, Device? device)
    {
        if (inputSize <= 0 || units <= 0)
            throw new ArgumentOutOfRangeException(inputSize <= 0 ? nameof(inputSize) : nameof(units),
                $"{kind} needs positive sizes; got inputSize = {inputSize}, units = {units}");
        Kind = kind;
        GateCount = gates;
        StateCount = states;
        InputSize = inputSize;
        Units = units;
        ReturnSequences = returnSequences;
        ReturnState = returnState;
        GoBackwards = goBackwards;
        Stateful = stateful;
        this.seed = seed;
        device ??= Device.Cpu;
        // PyTorch's reset_parameters: every weight and bias U(-1/sqrt(H), 1/sqrt(H)).
        float k = 1f / MathF.Sqrt(units);
        long g = gates * units;
        WeightIh = RegisterParameter("weight_ih", Tensor.Uniform(new[] { g, inputSize }, -k, k, seed, device));
        WeightHh = RegisterParameter("weight_hh", Tensor.Uniform(new[] { g, units }, -k, k, seed + 1, device));
        if (bias)
        {
            BiasIh = RegisterParameter("bias_ih", Tensor.Uniform(new[] { g }, -k, k, seed + 2, device));
            BiasHh = RegisterParameter("bias_hh", Tensor.Uniform(new[] { g }, -k, k, seed + 3, device));
        }
    }

    /// <summary>"SimpleRNN", "LSTM" or "GRU" (used in messages).</summary>
    public string Kind { get; }
    /// <summary>Gates per unit: 1, 4 or 3.</summary>
    public int GateCount { get; }
    /// <summary>States carried between steps: 1 (h), or 2 for an LSTM (h, c).</summary>
    public int StateCount { get; }
    /// <summary>Features per step of the input (I).</summary>
    public long InputSize { get; }
    /// <summary>Hidden units (H).</summary>
    public long Units { get; }
    /// <summary>Output every step ([B, T, H]) rather than the last ([B, H]).</summary>
    public bool ReturnSequences { get; }
    /// <summary>The rich Forward also returns the final states.</summary>
    public bool ReturnState { get; }
    /// <summary>Process the sequence from its end (see the class remarks).</summary>
    public bool GoBackwards { get; }
    /// <summary>The final states of a batch are the next batch's initial states (detached) until <see cref="ResetStates"/>.</summary>
    public bool Stateful { get; }
    /// <summary>[G*H, I]</summary>
    public Tensor WeightIh { get; }
    /// <summary>[G*H, H]</summary>
    public Tensor WeightHh { get; }
    /// <summary>[G*H], or null without bias.</summary>
    public Tensor? BiasIh { get; }
    /// <summary>[G*H], or null without bias.</summary>
    public Tensor? BiasHh { get; }
    /// <summary>The seed the weights were drawn from.</summary>
    public int Seed => seed;

    /// <summary>PyTorch's one-layer nn.RNN / nn.LSTM / nn.GRU name the tensors weight_ih_l0, ...</summary>
    internal override IEnumerable<ExchangeTensor> ExchangeState() => base.ExchangeState().Select(e => e with { Name = e.Name + "_l0" });

    /// <summary>The output only: [B, T, H] with returnSequences, else [B, H]; zero initial state (or the carried one when stateful).</summary>
    public override Tensor Forward(Tensor input) => Forward(input, null, null, null).Output;

    /// <summary>
    /// The output and (with returnState) the final states. <paramref name="initialState"/>: null (zeros,
    /// or the carried states when stateful) or <see cref="StateCount"/> tensors [B, H] (h, then c); it has
    /// no default so that <c>Forward(x)</c> stays the plain Module call: write <c>Forward(x, null, lengths: n)</c>.
    /// <paramref name="mask"/> [B, T] of 0/1, or <paramref name="lengths"/> (B values in 0..T): not both.
    /// </summary>
    public RecurrentResult Forward(Tensor input, IReadOnlyList<Tensor>? initialState, Tensor? mask = null, long[]? lengths = null)
    {
        var (output, states) = Run(input, initialState, mask, lengths);
        return new RecurrentResult(output, ReturnState ? states : Array.Empty<Tensor>());
    }

    /// <summary>
    /// Forgets the carried states of a stateful layer: the next batch starts from zeros. Call it between
    /// batches (the last batch's backward pass still reads the states it started from).
    /// </summary>
    public void ResetStates() => ReleaseCarried(dispose: true);

    /// <inheritdoc/>
    protected override void DisposeState() => ReleaseCarried(dispose: true);

    /// <summary>
    /// Puts <paramref name="states"/> in place of the carried states (null: none, the next batch starts from
    /// zeros) and hands back the ones it replaces, untouched. <see cref="ModelSummary"/> uses it to run its
    /// one-sample batch through a stateful layer without losing (or tripping over) the states of training.
    /// </summary>
    internal Tensor[]? ExchangeCarried(Tensor[]? states)
    {
        var previous = carried;
        carried = states;
        return previous;
    }

    private void ReleaseCarried(bool dispose)
    {
        if (carried is null) return;
        foreach (var t in carried)
        {
            // After a forward pass the old states are inputs of the new graph (its backward reads them):
            // the caller's scope frees them with that graph.
            if (dispose) t.Dispose();
            else DisposeScope.Track(t);
        }
        carried = null;
    }

    /// <summary>A layer of the same kind and sizes with goBackwards flipped and its own weights (for <see cref="Bidirectional"/>).</summary>
    internal abstract RecurrentLayer CreateReversed(int seed, Device device);

    /// <summary>
    /// One time step: the new states (h first) from the input projection of time <paramref name="t"/>
    /// (x W_ih^T + b_ih, plus b_hh where the cell allows folding it in: see <see cref="FoldsHiddenBias"/>) and the
    /// recurrent product of <paramref name="projection"/>, the previous states, and the step's mask [B] (null:
    /// every row is valid).
    /// </summary>
    private protected abstract Tensor[] Step(StepProjection projection, long t, Tensor[] states, Tensor? mask);

    /// <summary>Whether b_hh can be added to the input projection once (all but the GRU, whose b_hn sits inside r * (...)).</summary>
    private protected virtual bool FoldsHiddenBias => true;

    /// <summary>The forward pass; the states are returned whatever returnState says (Bidirectional and stateful need them).</summary>
    internal (Tensor Output, Tensor[] States) Run(Tensor input, IReadOnlyList<Tensor>? initialState, Tensor? mask, long[]? lengths)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 3 || input.Shape[2] != InputSize)
            throw new ShapeMismatchException(
                $"{Kind}({InputSize} -> {Units}) needs an input [B, T, {InputSize}] (batch, time, features); got {Tensor.FormatShape(input.ShapeArray)}");
        var device = WeightIh.Device;
        if (input.Device != device)
            throw new DeviceMismatchException($"{Kind}: the input is on {input.Device.Name} but the weights are on {device.Name}");
        long batch = input.Shape[0], steps = input.Shape[1], g = GateCount * Units;
        if (steps == 0)
            throw new ArgumentException($"{Kind}: the input {Tensor.FormatShape(input.ShapeArray)} has no time steps", nameof(input));
        float[]? valid = ValidSteps(mask, lengths, batch, steps);
        var states = InitialStates(initialState, batch, device);

        // Which time each step reads: reversed for goBackwards; with lengths, only each row's valid part.
        bool reverseRows = GoBackwards && lengths is not null;
        var x = reverseRows ? ReverseValidSteps(input, lengths!) : input;
        bool reversed = GoBackwards && !reverseRows;

        // The input projection of all steps as one GEMM, time-major so that each step is one contiguous block.
        var weightIhT = WeightIh.Transpose(0, 1);
        var timeMajor = batch == 1 || steps == 1 ? x : x.Transpose(0, 1);  // [T, B, I] is [B, T, I] when B or T is 1: no copy
        var xProjection = timeMajor.Reshape(steps * batch, InputSize).MatMul(weightIhT);
        var inputBias = BiasIh is null ? null : FoldsHiddenBias ? BiasIh.Add(BiasHh!) : BiasIh;
        if (inputBias is not null) xProjection = xProjection.Add(inputBias);
        var projection = new StepProjection(xProjection.Reshape(steps, batch, g), WeightHh.Transpose(0, 1));

        // The mask of step s (in processing order), [B]; one upload for all steps.
        Tensor?[]? stepMasks = null;
        float[]? processedValid = null;  // [B, T] in processing order, to zero the outputs of padded steps
        if (valid is not null)
        {
            processedValid = new float[batch * steps];
            var byStep = new float[batch * steps];
            for (long b = 0; b < batch; b++)
                for (long s = 0; s < steps; s++)
                {
                    float v = valid[b * steps + (reversed ? steps - 1 - s : s)];
                    processedValid[b * steps + s] = v;
                    byStep[s * batch + b] = v;
                }
            // A step where every row is valid needs no mask (the cell's plain update is cheaper).
            var all = Tensor.FromArray(byStep, new[] { steps, batch }, device);
            stepMasks = new Tensor?[steps];
            for (long s = 0; s < steps; s++)
                if (Array.IndexOf(byStep, 0f, (int)(s * batch), (int)batch) >= 0) stepMasks[s] = all.Select(0, s);
            all.Dispose();
        }

        var outputs = ReturnSequences ? new Tensor[steps] : null;
        for (long s = 0; s < steps; s++)
        {
            states = Step(projection, reversed ? steps - 1 - s : s, states, stepMasks?[s]);
            if (outputs is not null) outputs[s] = states[0];
        }

        Tensor output;
        if (outputs is null) output = states[0];
        else
        {
            output = Tensor.Stack(outputs, 1);
            if (processedValid is not null)
                output = output.Mul(Tensor.FromArray(processedValid, new[] { batch, steps, 1L }, device));
        }
        if (Stateful) Carry(states);
        return (output, states);
    }

    /// <summary>The [B, T] 0/1 validity of each step from a mask or lengths (null when neither is given).</summary>
    private float[]? ValidSteps(Tensor? mask, long[]? lengths, long batch, long steps)
    {
        if (mask is not null && lengths is not null)
            throw new ArgumentException($"{Kind}: give a mask or lengths, not both", nameof(mask));
        if (lengths is not null)
        {
            if (lengths.Length != batch)
                throw new ShapeMismatchException($"{Kind}: {lengths.Length} lengths for a batch of {batch}");
            using var m = Tensor.SequenceMask(lengths, steps);
            return m.ToArray();
        }
        if (mask is null) return null;
        if (mask.Rank != 2 || mask.Shape[0] != batch || mask.Shape[1] != steps)
            throw new ShapeMismatchException($"{Kind}: the mask must be [B, T] = [{batch}, {steps}]; got {Tensor.FormatShape(mask.ShapeArray)}");
        var values = mask.ToArray();
        for (int i = 0; i < values.Length; i++)
            if (values[i] != 0f && values[i] != 1f)
                throw new ArgumentException($"{Kind}: the mask must hold only 0 and 1; element [{i / steps}, {i % steps}] is {values[i]}", nameof(mask));
        return values;
    }

    /// <summary>The states the first step starts from: given, carried (stateful), or zeros.</summary>
    private Tensor[] InitialStates(IReadOnlyList<Tensor>? initialState, long batch, Device device)
    {
        var shape = new[] { batch, Units };
        if (initialState is not null)
        {
            if (initialState.Count != StateCount)
                throw new ArgumentException(
                    $"{Kind}: {initialState.Count} initial state tensor(s) given; it takes {StateCount} ({(StateCount == 2 ? "h and c" : "h")}), each [B, H] = {Tensor.FormatShape(shape)}",
                    nameof(initialState));
            for (int i = 0; i < StateCount; i++)
            {
                var s = initialState[i] ?? throw new ArgumentNullException(nameof(initialState), $"{Kind}: initial state {i} is null");
                if (!s.Shape.SequenceEqual(shape))
                    throw new ShapeMismatchException($"{Kind}: initial state {i} must be [B, H] = {Tensor.FormatShape(shape)}; got {Tensor.FormatShape(s.ShapeArray)}");
                if (s.Device != device)
                    throw new DeviceMismatchException($"{Kind}: initial state {i} is on {s.Device.Name} but the weights are on {device.Name}");
            }
            return initialState.ToArray();
        }
        if (Stateful && carried is not null)
        {
            if (carried[0].Shape[0] != batch)
                throw new ShapeMismatchException(
                    $"{Kind} (stateful): this batch has {batch} rows but the carried state has {carried[0].Shape[0]}; a stateful layer needs one batch size (or ResetStates())");
            return carried.ToArray();
        }
        var zeros = new Tensor[StateCount];
        for (int i = 0; i < StateCount; i++) zeros[i] = Tensor.Zeros(shape, device);
        return zeros;
    }

    /// <summary>Keeps detached copies of the final states for the next batch (stateful).</summary>
    private void Carry(Tensor[] states)
    {
        var next = new Tensor[states.Length];
        for (int i = 0; i < states.Length; i++)
        {
            next[i] = states[i].Detach();
            DisposeScope.Untrack(next[i]);  // owned by the layer, not by the caller's scope
        }
        ReleaseCarried(dispose: false);
        carried = next;
    }

    /// <summary>
    /// Row b of <paramref name="sequence"/> [B, T, F] with its first lengths[b] steps in reverse order and its
    /// padding left in place (an involution: applying it twice gives the sequence back). One gather.
    /// </summary>
    internal static Tensor ReverseValidSteps(Tensor sequence, long[] lengths)
    {
        long batch = sequence.Shape[0], steps = sequence.Shape[1], features = sequence.Shape[2];
        var rows = new long[batch * steps];
        for (long b = 0; b < batch; b++)
        {
            long length = lengths[b];
            for (long s = 0; s < steps; s++) rows[b * steps + s] = b * steps + (s < length ? length - 1 - s : s);
        }
        return sequence.Reshape(batch * steps, features).IndexSelect(0, rows).Reshape(batch, steps, features);
    }

    /// <summary>The whole time axis of [B, T, F] reversed (one gather; its own inverse).</summary>
    internal static Tensor ReverseSteps(Tensor sequence)
    {
        long batch = sequence.Shape[0], steps = sequence.Shape[1];
        var lengths = new long[batch];
        Array.Fill(lengths, steps);
        return ReverseValidSteps(sequence, lengths);
    }

    /// <summary>
    /// The per-step products of a recurrent layer, as autograd ops of their own: <see cref="Gates"/> is
    /// xs[t] + h W ([B, G]; one copy and one GEMM with beta = 1), <see cref="Recurrent"/> is h W, from the
    /// input projection xs [T, B, G] of all steps and W = W_hh^T [H, G].
    /// <para>
    /// Their backward passes accumulate into one gradient of xs and one of W shared by all steps, where
    /// recording the steps with Select, Add and MatMul would give each step a zeros-padded [T, B, G] gradient
    /// of xs (O(T^2 B G) for one pass of backpropagation through time instead of O(T B G)) and a fresh
    /// [H, G] gradient of W to be added up. The first step whose backward runs in a pass creates the shared
    /// gradient and hands it to autograd as the gradient of xs (or W); the other steps add into it and hand back
    /// nothing. Autograd runs the rules of xs and W only after those of every step (the steps read them), so
    /// the sums are complete by then, and it frees them after, which tells the next pass to start afresh.
    /// (Were autograd ever to add a shared gradient to another gradient of the same tensor and free it, the
    /// next step would start a fresh one: slower, still correct.)
    /// </para>
    /// </summary>
    private protected sealed class StepProjection
    {
        private readonly Tensor xs, weight;
        private readonly long batch, gates, hidden, block;
        private Tensor? xsGradient, weightGradient;

        public StepProjection(Tensor xs, Tensor weight)
        {
            this.xs = xs;
            this.weight = weight;
            batch = xs.Shape[1];
            gates = xs.Shape[2];
            hidden = weight.Shape[0];
            block = batch * gates;
        }

        /// <summary>xs[t] + h W, or xs[t] when <paramref name="h"/> is null (a zero state).</summary>
        public Tensor Gates(long t, Tensor? h)
        {
            var y = Tensor.Empty(new[] { batch, gates }, xs.Device);
            if (block == 0) return y;
            y.Buffer.CopyFrom(xs.Buffer, 4 * t * block, 0, 4 * block);
            if (h is null)
                return Tensor.Record(y, "StepGates", new[] { xs }, g => new[] { AddToXs(g, t) });
            if (hidden > 0)
                Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, batch, gates, hidden, 1f, h.Buffer, hidden, weight.Buffer, gates, 1f, y.Buffer, gates);
            return Tensor.Record(y, "StepGates", new[] { xs, h, weight }, g => new[] { AddToXs(g, t), DState(g, h), AddToWeight(g, h) });
        }

        /// <summary>h W ([B, G]), for the GRU, whose recurrent gates stay apart from the input's.</summary>
        public Tensor Recurrent(Tensor h)
        {
            var y = Tensor.Empty(new[] { batch, gates }, xs.Device);
            if (block > 0)
                Ops.Gemm(Transpose.NoTranspose, Transpose.NoTranspose, batch, gates, hidden, 1f, h.Buffer, hidden, weight.Buffer, gates, 0f, y.Buffer, gates);
            return Tensor.Record(y, "StepRecurrent", new[] { h, weight }, g => new[] { DState(g, h), AddToWeight(g, h) });
        }

        /// <summary>The input projection of time t alone (xs[t]).</summary>
        public Tensor Input(long t) => Gates(t, null);

        private Tensor? AddToXs(Tensor g, long t)
        {
            if (!xs.RequiresGrad) return null;
            bool fresh = xsGradient is null || xsGradient.IsDisposed;
            if (fresh) xsGradient = Tensor.Zeros(xs.ShapeArray, xs.Device);
            xsGradient!.Buffer.CopyFrom(g.Buffer, 0, 4 * t * block, 4 * block);
            return fresh ? xsGradient : null;
        }

        // dh = g W^T
        private Tensor? DState(Tensor g, Tensor h)
        {
            if (!h.RequiresGrad) return null;
            var dh = Tensor.Empty(h.ShapeArray, h.Device);
            if (dh.Count > 0)
                Ops.Gemm(Transpose.NoTranspose, Transpose.Transpose, batch, hidden, gates, 1f, g.Buffer, gates, weight.Buffer, gates, 0f, dh.Buffer, hidden);
            return dh;
        }

        // dW += h^T g (the first step of a pass writes, the others add: beta = 1)
        private Tensor? AddToWeight(Tensor g, Tensor h)
        {
            if (!weight.RequiresGrad) return null;
            bool fresh = weightGradient is null || weightGradient.IsDisposed;
            if (fresh) weightGradient = batch == 0 ? Tensor.Zeros(weight.ShapeArray, weight.Device) : Tensor.Empty(weight.ShapeArray, weight.Device);
            if (batch > 0 && weightGradient!.Count > 0)
                Ops.Gemm(Transpose.Transpose, Transpose.NoTranspose, hidden, gates, batch, 1f, h.Buffer, hidden, g.Buffer, gates,
                         fresh ? 0f : 1f, weightGradient.Buffer, gates);
            return fresh ? weightGradient : null;
        }
    }

    /// <summary>m * next + (1 - m) * previous for a [B] mask of 0/1: exactly next where 1, exactly previous where 0.</summary>
    private protected static Tensor Keep(Tensor next, Tensor previous, Tensor mask)
    {
        var m = mask.Reshape(mask.Shape[0], 1);
        return next.Mul(m).Add(previous.Mul(m.Neg().Add(1f)));
    }
}

/// <summary>
/// The Elman network: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (PyTorch's nn.RNN with tanh,
/// Keras's SimpleRNN). See <see cref="RecurrentLayer"/> for the options and the weights.
/// </summary>
public sealed class SimpleRNN : RecurrentLayer
{
    /// <summary>A SimpleRNN of <paramref name="units"/> hidden units over inputs of <paramref name="inputSize"/> features per step.</summary>
    public SimpleRNN(long inputSize, long units, bool returnSequences = false, bool returnState = false, bool goBackwards = false,
                     bool stateful = false, bool bias = true, int seed = 0, Device? device = null)
        : base("SimpleRNN", 1, 1, inputSize, units, returnSequences, returnState, goBackwards, stateful, bias, seed, device) { }

    internal override RecurrentLayer CreateReversed(int seed, Device device) =>
        new SimpleRNN(InputSize, Units, ReturnSequences, ReturnState, !GoBackwards, Stateful, BiasIh is not null, seed, device);

    private protected override Tensor[] Step(StepProjection projection, long t, Tensor[] states, Tensor? mask)
    {
        var h = projection.Gates(t, states[0]).Tanh();
        return new[] { mask is null ? h : Keep(h, states[0], mask) };
    }
}

/// <summary>
/// Long short-term memory (Hochreiter &amp; Schmidhuber 1997) in PyTorch's form: gates i, f, g, o from
/// x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh; c_t = s(f) c_{t-1} + s(i) tanh(g), h_t = s(o) tanh(c_t).
/// States h and c. See <see cref="RecurrentLayer"/> for the options and the weights.
/// </summary>
public sealed class LSTM : RecurrentLayer
{
    /// <summary>An LSTM of <paramref name="units"/> hidden units over inputs of <paramref name="inputSize"/> features per step.</summary>
    public LSTM(long inputSize, long units, bool returnSequences = false, bool returnState = false, bool goBackwards = false,
                bool stateful = false, bool bias = true, int seed = 0, Device? device = null)
        : base("LSTM", 4, 2, inputSize, units, returnSequences, returnState, goBackwards, stateful, bias, seed, device) { }

    internal override RecurrentLayer CreateReversed(int seed, Device device) =>
        new LSTM(InputSize, Units, ReturnSequences, ReturnState, !GoBackwards, Stateful, BiasIh is not null, seed, device);

    private protected override Tensor[] Step(StepProjection projection, long t, Tensor[] states, Tensor? mask)
    {
        var (h, c) = RecurrentCells.Lstm(projection.Gates(t, states[0]), states[1], states[0], mask);
        return new[] { h, c };
    }
}

/// <summary>
/// Gated recurrent unit (Cho et al. 2014) in PyTorch's form: gates r, z, n;
/// r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n), h_t = (1 - z) n + z h_{t-1}, where
/// x_* = x_t W_i*^T + b_i* and h_* = h_{t-1} W_h*^T + b_h* (Keras's reset_after = True).
/// See <see cref="RecurrentLayer"/> for the options and the weights.
/// </summary>
public sealed class GRU : RecurrentLayer
{
    /// <summary>A GRU of <paramref name="units"/> hidden units over inputs of <paramref name="inputSize"/> features per step.</summary>
    public GRU(long inputSize, long units, bool returnSequences = false, bool returnState = false, bool goBackwards = false,
               bool stateful = false, bool bias = true, int seed = 0, Device? device = null)
        : base("GRU", 3, 1, inputSize, units, returnSequences, returnState, goBackwards, stateful, bias, seed, device) { }

    internal override RecurrentLayer CreateReversed(int seed, Device device) =>
        new GRU(InputSize, Units, ReturnSequences, ReturnState, !GoBackwards, Stateful, BiasIh is not null, seed, device);

    private protected override bool FoldsHiddenBias => false;

    private protected override Tensor[] Step(StepProjection projection, long t, Tensor[] states, Tensor? mask)
    {
        var hGates = projection.Recurrent(states[0]);
        if (BiasHh is not null) hGates = hGates.Add(BiasHh);
        return new[] { RecurrentCells.Gru(projection.Input(t), hGates, states[0], mask) };
    }
}

/// <summary>
/// Runs a recurrent layer over the sequence forwards and a copy of it (same kind and sizes, its own
/// weights, goBackwards) backwards, and merges the two outputs: "concat" (the default: [.., 2H], forward
/// first), "sum", "mul" or "ave" (Keras's Bidirectional). With returnSequences the backward layer's
/// outputs are put back in time order first (with lengths: each row's valid part), so step t of the
/// result sees the whole sequence. Parameters: "forward.weight_ih", ..., "backward.weight_ih", ...
/// </summary>
public sealed class Bidirectional : Module
{
    private static readonly string[] MergeModes = { "concat", "sum", "mul", "ave" };

    /// <summary>
    /// Wraps <paramref name="layer"/> (which must not go backwards itself; it becomes the forward layer and
    /// is owned by this module). The backward layer's weights are drawn from <paramref name="seed"/>
    /// (default: the layer's seed + 1000).
    /// </summary>
    public Bidirectional(RecurrentLayer layer, string mergeMode = "concat", int? seed = null)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(mergeMode);
        if (layer.GoBackwards)
            throw new ArgumentException($"Bidirectional: the wrapped {layer.Kind} must go forwards (goBackwards = false); the wrapper makes the backward copy", nameof(layer));
        if (!MergeModes.Contains(mergeMode))
            throw new ArgumentException($"Bidirectional: merge mode \"{mergeMode}\" is not one of {string.Join(", ", MergeModes)}", nameof(mergeMode));
        MergeMode = mergeMode;
        Forwards = RegisterModule("forward", layer);
        Backwards = RegisterModule("backward", layer.CreateReversed(seed ?? layer.Seed + 1000, layer.WeightIh.Device));
    }

    /// <summary>The layer that reads the sequence from its start.</summary>
    public RecurrentLayer Forwards { get; }
    /// <summary>The copy that reads it from its end.</summary>
    public RecurrentLayer Backwards { get; }
    /// <summary>"concat", "sum", "mul" or "ave".</summary>
    public string MergeMode { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Forward(input, null, null, null).Output;

    /// <summary>
    /// The merged output and (when the layer has returnState) the states: the forward layer's, then the
    /// backward layer's. <paramref name="initialState"/>: null or the same list (2 or 4 tensors [B, H]).
    /// </summary>
    public RecurrentResult Forward(Tensor input, IReadOnlyList<Tensor>? initialState, Tensor? mask = null, long[]? lengths = null)
    {
        int n = Forwards.StateCount;
        if (initialState is not null && initialState.Count != 2 * n)
            throw new ArgumentException(
                $"Bidirectional({Forwards.Kind}): {initialState.Count} initial state tensor(s) given; it takes {2 * n} (the forward layer's {n}, then the backward layer's {n})",
                nameof(initialState));
        var (forward, forwardStates) = Forwards.Run(input, initialState?.Take(n).ToArray(), mask, lengths);
        var (backward, backwardStates) = Backwards.Run(input, initialState?.Skip(n).ToArray(), mask, lengths);
        if (Forwards.ReturnSequences)
            backward = lengths is not null ? RecurrentLayer.ReverseValidSteps(backward, lengths) : RecurrentLayer.ReverseSteps(backward);
        var output = MergeMode switch
        {
            "concat" => Tensor.Concatenate(new[] { forward, backward }, -1),
            "sum" => forward.Add(backward),
            "mul" => forward.Mul(backward),
            _ => forward.Add(backward).Mul(0.5f),
        };
        return new RecurrentResult(output, Forwards.ReturnState ? forwardStates.Concat(backwardStates).ToArray() : Array.Empty<Tensor>());
    }

    /// <summary>As a bidirectional nn.LSTM (...): the forward layer's weight_ih_l0, ..., the backward layer's weight_ih_l0_reverse, ...</summary>
    internal override IEnumerable<ExchangeTensor> ExchangeState() =>
        Forwards.ExchangeState().Concat(Backwards.ExchangeState().Select(e => e with { Name = e.Name + "_reverse" }));

    /// <summary>Forgets the carried states of both layers (stateful).</summary>
    public void ResetStates()
    {
        Forwards.ResetStates();
        Backwards.ResetStates();
    }
}
