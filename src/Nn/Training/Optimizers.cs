namespace Kernels.Nn;

/// <summary>
/// Updates parameters from their gradients. Each update is one fused libkernels kernel (read param,
/// grad and state once, write param and state once), on the parameter's device. SGD, Adam/AdamW,
/// RMSprop and Adagrad update all parameters of a device in one native call (kn_*_step_many_f32: on
/// the CPU one thread-pool dispatch, on CUDA one launch per 64 tensors, on OpenCL one launch per
/// tensor), each element exactly as the per-parameter call would; <see cref="UpdateAll"/> gathers
/// the operands into arrays reused between steps, so a step allocates nothing. State buffers are
/// created zeroed on the first step and freed with the optimizer.
/// </summary>
public abstract class Optimizer : IDisposable
{
    private readonly Tensor[] parameters;
    private readonly Dictionary<int, DeviceBuffer[]> state = new();

    /// <summary>Optimizes the given parameters (usually <c>model.Parameters()</c>).</summary>
    protected Optimizer(IEnumerable<Tensor> parameters, float learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        this.parameters = parameters.ToArray();
        if (learningRate < 0 || float.IsNaN(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), $"learning rate {learningRate} must be >= 0");
        LearningRate = learningRate;
        InitialLearningRate = learningRate;
    }

    /// <summary>The rate used by the next step (schedules change it).</summary>
    public float LearningRate { get; set; }

    /// <summary>The rate the optimizer was created with.</summary>
    public float InitialLearningRate { get; }

    /// <summary>Steps taken so far.</summary>
    public long Steps { get; internal set; }

    /// <summary>The parameters being optimized.</summary>
    public IReadOnlyList<Tensor> Parameters => parameters;

    // The indices of the parameters with a gradient this step, reused so a step allocates nothing.
    private int[] withGradient = Array.Empty<int>();

    /// <summary>Applies one update to every parameter that has a gradient.</summary>
    public void Step()
    {
        Steps++;
        if (withGradient.Length < parameters.Length) withGradient = new int[parameters.Length];
        int count = 0;
        for (int i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            if (p.Grad is null) continue;
            if (!ReferenceEquals(p.Grad.Device, p.Device))
                throw new DeviceMismatchException($"parameter {i} is on {p.Device.Name} but its gradient is on {p.Grad.Device.Name}");
            if (state.TryGetValue(i, out var buffers) && buffers.Length > 0 && !ReferenceEquals(buffers[0].Device, p.Device))
                throw new DeviceMismatchException($"parameter {i} is on {p.Device.Name} but its optimizer state is on {buffers[0].Device.Name}: it moved (Module.To, Sequential.PlaceOn) after the optimizer's first step; place the network before training with an optimizer");
            withGradient[count++] = i;
        }
        UpdateAll(withGradient.AsSpan(0, count));
    }

    /// <summary>
    /// How many state buffers <see cref="UpdateMany"/> takes per parameter (each created zeroed on first use), or -1
    /// when the optimizer has no many-tensor kernel: then <see cref="UpdateAll"/> calls <see cref="Update"/> per parameter.
    /// </summary>
    protected virtual int ManyStateCount => -1;

    /// <summary>
    /// The operands of one many-tensor call: entry i is parameter i's buffer, its gradient's, its state buffers
    /// (<see cref="ManyStateCount"/> of them: State0, State1; null beyond), its element count and whether this is
    /// its first update (it had no state before this step). All on one device, no buffer twice.
    /// </summary>
    protected readonly ref struct ManyOperands
    {
        /// <summary>Gathers the entries [start, start + count) of the optimizer's reused arrays.</summary>
        internal ManyOperands(Optimizer o, int start, int count)
        {
            Params = o.manyParams.AsSpan(start, count);
            Grads = o.manyGrads.AsSpan(start, count);
            State0 = o.manyState0.AsSpan(start, count);
            State1 = o.manyState1.AsSpan(start, count);
            Counts = o.manyCounts.AsSpan(start, count);
            FirstStep = o.manyFirst.AsSpan(start, count);
        }

        /// <summary>The parameters' buffers.</summary>
        public ReadOnlySpan<DeviceBuffer> Params { get; }
        /// <summary>The gradients' buffers.</summary>
        public ReadOnlySpan<DeviceBuffer> Grads { get; }
        /// <summary>Each parameter's first state buffer (null when <see cref="ManyStateCount"/> is 0).</summary>
        public ReadOnlySpan<DeviceBuffer> State0 { get; }
        /// <summary>Each parameter's second state buffer (null when <see cref="ManyStateCount"/> is below 2).</summary>
        public ReadOnlySpan<DeviceBuffer> State1 { get; }
        /// <summary>Each parameter's element count.</summary>
        public ReadOnlySpan<long> Counts { get; }
        /// <summary>Whether the parameter had no state before this step.</summary>
        public ReadOnlySpan<bool> FirstStep { get; }
        /// <summary>How many parameters.</summary>
        public int Length => Params.Length;
    }

    /// <summary>The many-tensor kernel call (used when <see cref="ManyStateCount"/> is 0 or more).</summary>
    protected virtual void UpdateMany(ManyOperands operands) =>
        throw new NotSupportedException($"{GetType().Name} has no many-tensor kernel");

    // The operands of the many-tensor calls, reused between steps.
    private DeviceBuffer[] manyParams = Array.Empty<DeviceBuffer>(), manyGrads = Array.Empty<DeviceBuffer>(),
                           manyState0 = Array.Empty<DeviceBuffer>(), manyState1 = Array.Empty<DeviceBuffer>();
    private long[] manyCounts = Array.Empty<long>();
    private bool[] manyFirst = Array.Empty<bool>(), manyDone = Array.Empty<bool>();
    private readonly HashSet<DeviceBuffer> manySeen = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// Updates the parameters at <paramref name="indices"/> (each has a gradient on its own device). With a
    /// many-tensor kernel (<see cref="ManyStateCount"/> &gt;= 0), all parameters of one device go to one
    /// <see cref="UpdateMany"/>; parameters on several devices make one call per device. A parameter listed twice
    /// (a layer used twice in a model) is updated twice, as one call per parameter does: the many-tensor call
    /// refuses a buffer that appears twice, so such a device's parameters get one call each, in order.
    /// Otherwise one <see cref="Update"/> per parameter.
    /// </summary>
    protected virtual void UpdateAll(ReadOnlySpan<int> indices)
    {
        int slots = ManyStateCount;
        if (slots < 0)
        {
            foreach (int i in indices) Update(parameters[i], parameters[i].Grad!, i);
            return;
        }
        int total = indices.Length;
        if (manyParams.Length < total)
        {
            manyParams = new DeviceBuffer[total];
            manyGrads = new DeviceBuffer[total];
            manyState0 = new DeviceBuffer[total];
            manyState1 = new DeviceBuffer[total];
            manyCounts = new long[total];
            manyFirst = new bool[total];
            manyDone = new bool[total];
        }
        Array.Clear(manyDone, 0, total);
        for (int first = 0; first < total; first++)
        {
            if (manyDone[first]) continue;
            Device device = parameters[indices[first]].Device;
            int count = 0;
            bool repeated = false;
            manySeen.Clear();
            for (int j = first; j < total; j++)
            {
                int index = indices[j];
                var p = parameters[index];
                if (manyDone[j] || !ReferenceEquals(p.Device, device)) continue;
                manyFirst[count] = !HasState(index);  // before State() creates it
                var s = slots > 0 ? State(index, p, slots) : null;
                manyParams[count] = p.Buffer;
                manyGrads[count] = p.Grad!.Buffer;
                manyState0[count] = slots > 0 ? s![0] : null!;
                manyState1[count] = slots > 1 ? s![1] : null!;
                manyCounts[count] = p.Count;
                manyDone[j] = true;
                repeated |= !manySeen.Add(p.Buffer) | !manySeen.Add(p.Grad.Buffer);
                count++;
            }
            if (repeated)
                for (int j = 0; j < count; j++) UpdateMany(new ManyOperands(this, j, 1));
            else
                UpdateMany(new ManyOperands(this, 0, count));
        }
    }

    /// <summary>Clears every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var p in parameters) p.ZeroGrad();
    }

    /// <summary>Runs the fused update kernel for one parameter.</summary>
    protected abstract void Update(Tensor parameter, Tensor gradient, int index);

    /// <summary>The parameter's state buffers (count of them, each zeroed on first use).</summary>
    protected DeviceBuffer[] State(int index, Tensor parameter, int count)
    {
        if (state.TryGetValue(index, out var buffers)) return buffers;
        buffers = new DeviceBuffer[count];
        for (int i = 0; i < count; i++)
        {
            buffers[i] = DeviceBuffer.Allocate(parameter.Device, 4 * parameter.Count);
            if (parameter.Count > 0) buffers[i].Fill(0f);
        }
        state[index] = buffers;
        return buffers;
    }

    /// <summary>
    /// The state buffers of every parameter that has any, for a checkpoint (<see cref="BackupAndRestore"/>):
    /// (parameter index, buffer number, buffer), in index order.
    /// </summary>
    internal IEnumerable<(int Index, int Slot, DeviceBuffer Buffer)> StateBuffers()
    {
        foreach (var index in state.Keys.Order())
            for (int k = 0; k < state[index].Length; k++) yield return (index, k, state[index][k]);
    }

    /// <summary>
    /// Replaces the state from a checkpoint: <paramref name="buffers"/> maps a parameter index to its state
    /// buffers' values (each of the parameter's element count, already checked). Parameters not listed
    /// start afresh, as before their first update.
    /// </summary>
    internal void RestoreState(long steps, float learningRate, IReadOnlyDictionary<int, float[][]> buffers)
    {
        foreach (var old in state.Values)
            foreach (var b in old) b.Dispose();
        state.Clear();
        foreach (var (index, values) in buffers)
        {
            var restored = State(index, parameters[index], values.Length);
            for (int k = 0; k < values.Length; k++)
                if (values[k].Length > 0) restored[k].Write<float>(values[k]);
        }
        Steps = steps;
        LearningRate = learningRate;
    }

    /// <summary>Whether the parameter has state yet (false before its first update).</summary>
    protected bool HasState(int index) => state.ContainsKey(index);

    /// <summary>Frees the optimizer state (not the parameters).</summary>
    public void Dispose()
    {
        foreach (var buffers in state.Values)
            foreach (var b in buffers) b.Dispose();
        state.Clear();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay (PyTorch's semantics).</summary>
public sealed class Sgd : Optimizer
{
    /// <summary>SGD; momentum 0.9 with nesterov is a strong default for conv nets.</summary>
    public Sgd(IEnumerable<Tensor> parameters, float learningRate = 0.01f, float momentum = 0, float dampening = 0,
               float weightDecay = 0, bool nesterov = false) : base(parameters, learningRate)
    {
        if (nesterov && (momentum <= 0 || dampening != 0))
            throw new ArgumentException("Nesterov momentum needs momentum > 0 and dampening = 0", nameof(nesterov));
        Momentum = momentum;
        Dampening = dampening;
        WeightDecay = weightDecay;
        Nesterov = nesterov;
    }

    /// <summary>Momentum factor.</summary>
    public float Momentum { get; }
    /// <summary>Dampening of the gradient added to the velocity.</summary>
    public float Dampening { get; }
    /// <summary>L2 penalty added to the gradient.</summary>
    public float WeightDecay { get; }
    /// <summary>Whether the Nesterov form is used.</summary>
    public bool Nesterov { get; }

    /// <inheritdoc/>
    protected override void Update(Tensor parameter, Tensor gradient, int index)
    {
        bool first = !HasState(index);
        DeviceBuffer? velocity = Momentum != 0 ? State(index, parameter, 1)[0] : null;
        Ops.SgdStep(parameter.Buffer, gradient.Buffer, velocity, parameter.Count, LearningRate, Momentum, Dampening,
                    WeightDecay, Nesterov, first);
    }

    /// <inheritdoc/>
    protected override int ManyStateCount => Momentum != 0 ? 1 : 0;

    /// <summary>
    /// kn_sgd_step_many_f32 over the parameters. Its first-step flag is one for the call, while each parameter
    /// tracks its own (it has no velocity before its first update), so each run of parameters with the same flag
    /// is one call: one for the whole device in a usual step.
    /// </summary>
    protected override void UpdateMany(ManyOperands o)
    {
        for (int start = 0; start < o.Length;)
        {
            int end = start + 1;
            while (end < o.Length && o.FirstStep[end] == o.FirstStep[start]) end++;
            Ops.SgdStepMany(o.Params[start..end], o.Grads[start..end], Momentum != 0 ? o.State0[start..end] : default,
                            o.Counts[start..end], LearningRate, Momentum, Dampening, WeightDecay, Nesterov, o.FirstStep[start]);
            start = end;
        }
    }
}

/// <summary>Adam (Kingma &amp; Ba 2015), with L2 weight decay added to the gradient.</summary>
public class Adam : Optimizer
{
    private readonly bool decoupled;

    /// <summary>Adam with the usual defaults.</summary>
    public Adam(IEnumerable<Tensor> parameters, float learningRate = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f,
                float epsilon = 1e-8f, float weightDecay = 0) : this(parameters, learningRate, beta1, beta2, epsilon, weightDecay, false) { }

    private protected Adam(IEnumerable<Tensor> parameters, float learningRate, float beta1, float beta2, float epsilon,
                           float weightDecay, bool decoupled) : base(parameters, learningRate)
    {
        if (beta1 < 0 || beta1 >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), $"beta1 = {beta1} must be in [0, 1)");
        if (beta2 < 0 || beta2 >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), $"beta2 = {beta2} must be in [0, 1)");
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
        this.decoupled = decoupled;
    }

    /// <summary>Decay of the first-moment estimate.</summary>
    public float Beta1 { get; }
    /// <summary>Decay of the second-moment estimate.</summary>
    public float Beta2 { get; }
    /// <summary>Added to the denominator.</summary>
    public float Epsilon { get; }
    /// <summary>Weight decay (L2 for Adam, decoupled for AdamW).</summary>
    public float WeightDecay { get; }

    /// <inheritdoc/>
    protected override void Update(Tensor parameter, Tensor gradient, int index)
    {
        var s = State(index, parameter, 2);
        Ops.AdamStep(parameter.Buffer, gradient.Buffer, s[0], s[1], parameter.Count, LearningRate, Beta1, Beta2, Epsilon,
                     WeightDecay, decoupled, Steps);
    }

    /// <inheritdoc/>
    protected override int ManyStateCount => 2;

    /// <summary>kn_adam_step_many_f32 over the parameters (the moments m, v are State0, State1).</summary>
    protected override void UpdateMany(ManyOperands o) =>
        Ops.AdamStepMany(o.Params, o.Grads, o.State0, o.State1, o.Counts, LearningRate, Beta1, Beta2, Epsilon, WeightDecay,
                         decoupled, Steps);
}

/// <summary>AdamW (Loshchilov &amp; Hutter 2019): weight decay applied to the parameter, not the gradient.</summary>
public sealed class AdamW : Adam
{
    /// <summary>AdamW with the usual defaults (weight decay 0.01).</summary>
    public AdamW(IEnumerable<Tensor> parameters, float learningRate = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f,
                 float epsilon = 1e-8f, float weightDecay = 0.01f) : base(parameters, learningRate, beta1, beta2, epsilon, weightDecay, true) { }
}

/// <summary>RMSprop (Hinton's lecture 6e), PyTorch's formulation.</summary>
public sealed class RmsProp : Optimizer
{
    /// <summary>RMSprop with the usual defaults.</summary>
    public RmsProp(IEnumerable<Tensor> parameters, float learningRate = 1e-2f, float alpha = 0.99f, float epsilon = 1e-8f,
                   float weightDecay = 0, float momentum = 0) : base(parameters, learningRate)
    {
        Alpha = alpha;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
        Momentum = momentum;
    }

    /// <summary>Decay of the squared-gradient average.</summary>
    public float Alpha { get; }
    /// <summary>Added to the denominator.</summary>
    public float Epsilon { get; }
    /// <summary>L2 penalty.</summary>
    public float WeightDecay { get; }
    /// <summary>Momentum factor.</summary>
    public float Momentum { get; }

    /// <inheritdoc/>
    protected override void Update(Tensor parameter, Tensor gradient, int index)
    {
        var s = State(index, parameter, Momentum != 0 ? 2 : 1);
        Ops.RmsPropStep(parameter.Buffer, gradient.Buffer, s[0], Momentum != 0 ? s[1] : null, parameter.Count, LearningRate,
                        Alpha, Epsilon, WeightDecay, Momentum);
    }

    /// <inheritdoc/>
    protected override int ManyStateCount => Momentum != 0 ? 2 : 1;

    /// <summary>kn_rmsprop_step_many_f32 over the parameters (square_avg is State0, the velocity State1).</summary>
    protected override void UpdateMany(ManyOperands o) =>
        Ops.RmsPropStepMany(o.Params, o.Grads, o.State0, Momentum != 0 ? o.State1 : default, o.Counts, LearningRate, Alpha,
                            Epsilon, WeightDecay, Momentum);
}

/// <summary>Adagrad (Duchi et al. 2011).</summary>
public sealed class Adagrad : Optimizer
{
    /// <summary>Adagrad with the usual defaults.</summary>
    public Adagrad(IEnumerable<Tensor> parameters, float learningRate = 1e-2f, float epsilon = 1e-10f, float weightDecay = 0)
        : base(parameters, learningRate)
    {
        Epsilon = epsilon;
        WeightDecay = weightDecay;
    }

    /// <summary>Added to the denominator.</summary>
    public float Epsilon { get; }
    /// <summary>L2 penalty.</summary>
    public float WeightDecay { get; }

    /// <inheritdoc/>
    protected override void Update(Tensor parameter, Tensor gradient, int index)
    {
        var s = State(index, parameter, 1);
        Ops.AdagradStep(parameter.Buffer, gradient.Buffer, s[0], parameter.Count, LearningRate, Epsilon, WeightDecay);
    }

    /// <inheritdoc/>
    protected override int ManyStateCount => 1;

    /// <summary>kn_adagrad_step_many_f32 over the parameters (the sums are State0).</summary>
    protected override void UpdateMany(ManyOperands o) =>
        Ops.AdagradStepMany(o.Params, o.Grads, o.State0, o.Counts, LearningRate, Epsilon, WeightDecay);
}

/// <summary>Gradient clipping, applied between Backward() and Step().</summary>
public static class GradientClipping
{
    /// <summary>Clamps every gradient element to [-clip, clip].</summary>
    public static void ByValue(IEnumerable<Tensor> parameters, float clip)
    {
        if (!(clip > 0)) throw new ArgumentOutOfRangeException(nameof(clip), $"clip = {clip} must be > 0");
        foreach (var p in parameters)
            if (p.Grad is { Count: > 0 } g) Ops.Clamp(g.Buffer, g.Buffer, g.Count, -clip, clip);
    }

    /// <summary>Scales all gradients together so their global L2 norm is at most maxNorm; returns the
    /// norm before clipping. A non-finite norm is reported by an exception rather than spread into
    /// the parameters.</summary>
    public static float ByGlobalNorm(IEnumerable<Tensor> parameters, float maxNorm)
    {
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), $"maxNorm = {maxNorm} must be > 0");
        var grads = parameters.Select(p => p.Grad).Where(g => g is { Count: > 0 }).Cast<Tensor>().ToArray();
        double sumSquares = 0;
        foreach (var g in grads)
        {
            using var partial = DeviceBuffer.Allocate(g.Device, 4);
            Ops.Reduce(ReduceOp.SumSquares, g.Buffer, partial, 1, g.Count, 1);
            sumSquares += partial.ToArray()[0];
        }
        float norm = (float)Math.Sqrt(sumSquares);
        if (!float.IsFinite(norm)) throw new ArithmeticException($"the global gradient norm is {norm}: a gradient holds NaN or infinity");
        if (norm > maxNorm)
        {
            float scale = maxNorm / (norm + 1e-6f);
            foreach (var g in grads) Ops.Unary(UnaryOp.Scale, g.Buffer, g.Buffer, g.Count, scale);
        }
        return norm;
    }
}

/// <summary>A learning rate as a function of the epoch (0-based) and the initial rate.</summary>
public abstract class LearningRateSchedule
{
    /// <summary>The rate for the given epoch.</summary>
    public abstract float Rate(int epoch, float initialRate);

    /// <summary>Multiplies the rate by gamma every stepSize epochs.</summary>
    public static LearningRateSchedule Step(int stepSize, float gamma = 0.1f) =>
        stepSize > 0 ? new Lambda((e, r) => r * MathF.Pow(gamma, e / stepSize)) : throw new ArgumentOutOfRangeException(nameof(stepSize));

    /// <summary>Multiplies the rate by gamma every epoch.</summary>
    public static LearningRateSchedule Exponential(float gamma) => new Lambda((e, r) => r * MathF.Pow(gamma, e));

    /// <summary>Cosine annealing from the initial rate to minRate over totalEpochs (Loshchilov &amp; Hutter 2017).</summary>
    public static LearningRateSchedule Cosine(int totalEpochs, float minRate = 0) =>
        totalEpochs > 0
            ? new Lambda((e, r) => minRate + (r - minRate) * 0.5f * (1 + MathF.Cos(MathF.PI * Math.Min(e, totalEpochs) / totalEpochs)))
            : throw new ArgumentOutOfRangeException(nameof(totalEpochs));

    private sealed class Lambda : LearningRateSchedule
    {
        private readonly Func<int, float, float> rate;
        public Lambda(Func<int, float, float> rate) => this.rate = rate;
        public override float Rate(int epoch, float initialRate) => rate(epoch, initialRate);
    }
}
