namespace Kernels.Nn;

/// <summary>A loss: prediction and target in, a rank-0 tensor out.</summary>
public delegate Tensor LossFunction(Tensor prediction, Tensor target);

/// <summary>
/// A recurrent model's forward pass with its state explicit: the input [B, T, ...] and the state it
/// starts from (null: zeros) in; the output and the state after the last step out (h, and c for an
/// LSTM; one entry per layer and direction as the model chooses). What
/// <see cref="Trainer.TrainTruncated"/> calls once per chunk.
/// </summary>
public delegate (Tensor Output, IReadOnlyList<Tensor> State) StatefulForward(Tensor input, IReadOnlyList<Tensor>? state);

/// <summary>What the <see cref="Trainer"/> hands to its hooks: where training stands right now.</summary>
public sealed class TrainerState
{
    /// <summary>Current epoch, 0-based.</summary>
    public int Epoch { get; internal set; }
    /// <summary>Batch index within the epoch.</summary>
    public int BatchIndex { get; internal set; }
    /// <summary>Chunk index within the batch under truncated BPTT (<see cref="Trainer.TrainTruncated"/>); 0 otherwise.</summary>
    public int ChunkIndex { get; internal set; }
    internal bool Chunked { get; set; }
    /// <summary>Updates taken since training began.</summary>
    public long Step { get; internal set; }
    /// <summary>True while training, false while testing.</summary>
    public bool Training { get; internal set; }
    /// <summary>The batch being processed.</summary>
    public Batch? Sample { get; internal set; }
    /// <summary>The model's output for the batch (after OnForward).</summary>
    public Tensor? Output { get; internal set; }
    /// <summary>The batch's loss tensor (after OnForward).</summary>
    public Tensor? Loss { get; internal set; }
    /// <summary>The batch's loss as a number (after OnForward). A <see cref="Trainer"/> reads it in every
    /// step; under <c>Model.Fit</c> the step reads nothing and this property reads the loss from the
    /// device when first asked for (one synchronisation), while the batch is current.</summary>
    public double LossValue
    {
        get => lossValue ??= Loss?.Item() ?? double.NaN;
        internal set => lossValue = value;
    }
    private double? lossValue;
    internal void ForgetLossValue() => lossValue = null;
    /// <summary>The loss plus 0 times the sum of every gradient, on the device: the loss while every
    /// gradient is finite, NaN as soon as one is not (after OnForward; what Model.Fit reads later).</summary>
    internal Tensor? CheckedLoss { get; set; }
    /// <summary>Set by a hook to stop training after the current batch.</summary>
    public bool StopRequested { get; set; }
}

/// <summary>
/// The training loop with hooks at each point (Torchnet's engine): OnStart, OnEpochStart, OnSample,
/// OnForward, OnBackward, OnUpdate, OnEpochEnd, OnEnd. Each batch runs in its own
/// <see cref="DisposeScope"/>, so a loop of any length leaves device memory flat. A loss or a gradient
/// that is NaN or infinite stops training before the optimizer step, with an exception naming the
/// epoch and batch, instead of silently producing a garbage model; the check rides on the one loss
/// read per step (OnForward therefore runs after the backward pass has been queued).
/// </summary>
public sealed class Trainer
{
    /// <summary>Before the first epoch.</summary>
    public event Action<TrainerState>? OnStart;
    /// <summary>At the start of each epoch.</summary>
    public event Action<TrainerState>? OnEpochStart;
    /// <summary>A batch was loaded.</summary>
    public event Action<TrainerState>? OnSample;
    /// <summary>The forward pass and loss were computed.</summary>
    public event Action<TrainerState>? OnForward;
    /// <summary>Gradients were computed.</summary>
    public event Action<TrainerState>? OnBackward;
    /// <summary>The optimizer updated the parameters.</summary>
    public event Action<TrainerState>? OnUpdate;
    /// <summary>At the end of each epoch.</summary>
    public event Action<TrainerState>? OnEpochEnd;
    /// <summary>After training.</summary>
    public event Action<TrainerState>? OnEnd;

    /// <summary>Called between Backward and Step, e.g. for gradient clipping.</summary>
    public Action<Module>? BeforeUpdate { get; set; }

    /// <summary>
    /// Whether each step reads its gradient-checked loss to the host and stops before the optimizer
    /// step on a NaN or infinite one (true, the default: one device synchronisation per step).
    /// <c>Model.Fit</c> turns it off (unless <c>Model.CheckFiniteEachStep</c>): the step then reads
    /// nothing, and leaves the check in <see cref="TrainerState.CheckedLoss"/> for Fit's reads.
    /// </summary>
    internal bool ReadLossEachStep { get; set; } = true;

    /// <summary>Trains for the given number of epochs (or until a hook requests a stop).</summary>
    public TrainerState Train(Module model, LossFunction loss, DataLoader loader, Optimizer optimizer, int epochs, int firstEpoch = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Run(model, loss, loader, optimizer, epochs, firstEpoch, (batch, state) =>
        {
            using var scope = new DisposeScope();
            Update(state, model, loss, optimizer, model.Forward(batch.Inputs), batch.Targets);
        });
    }

    /// <summary>
    /// Truncated backpropagation through time: each batch's sequences (inputs [B, T, ...], targets
    /// [B, T, ...]) are cut along the time axis into chunks of <paramref name="chunkSteps"/> steps (the
    /// last one shorter when T is not a multiple), and each chunk is one training step: forward from the
    /// state the previous chunk ended in, loss, backward, <see cref="BeforeUpdate"/> (clipping), one
    /// optimizer step. The state is carried forward but detached, so gradients never cross a chunk
    /// boundary and the graph (and memory) of a step spans only k steps, however long the sequence.
    /// Each batch starts from the zero state (forward(chunk, null)): batches are independent sequences.
    /// A long stream (a language model's text) is therefore cut into long rows, each row a batch sample.
    /// </summary>
    public TrainerState TrainTruncated(Module model, StatefulForward forward, LossFunction loss, DataLoader loader, Optimizer optimizer,
                                       int epochs, int chunkSteps, int firstEpoch = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(forward);
        if (chunkSteps <= 0) throw new ArgumentOutOfRangeException(nameof(chunkSteps), $"chunkSteps = {chunkSteps} must be positive");
        return Run(model, loss, loader, optimizer, epochs, firstEpoch, (batch, state) =>
        {
            var (inputs, targets) = (batch.Inputs, batch.Targets);
            if (inputs.Rank < 2 || targets.Rank < 2 || inputs.Shape[1] != targets.Shape[1])
                throw new ShapeMismatchException($"truncated BPTT needs inputs [B, T, ...] and targets [B, T, ...] with the same T; got inputs {Tensor.FormatShape(inputs.ShapeArray)} and targets {Tensor.FormatShape(targets.ShapeArray)}");
            long steps = inputs.Shape[1];
            Tensor[]? carried = null;
            state.Chunked = true;
            try
            {
                state.ChunkIndex = 0;
                for (long start = 0; start < steps && !state.StopRequested; start += chunkSteps, state.ChunkIndex++)
                {
                    long length = Math.Min(chunkSteps, steps - start);
                    using var scope = new DisposeScope();
                    var (output, next) = forward(inputs.Narrow(1, start, length), carried);
                    Update(state, model, loss, optimizer, output, targets.Narrow(1, start, length));
                    // The next chunk starts from this state's values, with no history: the detached
                    // copies share the storage and leave the scope, the graph is freed with it.
                    var detached = next.Select(h => scope.Detach(h.Detach())).ToArray();
                    if (carried is not null) foreach (var h in carried) h.Dispose();
                    carried = detached;
                }
            }
            finally
            {
                if (carried is not null) foreach (var h in carried) h.Dispose();
                state.ChunkIndex = 0;
                state.Chunked = false;
            }
        });
    }

    private TrainerState Run(Module model, LossFunction loss, DataLoader loader, Optimizer optimizer, int epochs, int firstEpoch,
                             Action<Batch, TrainerState> trainOnBatch)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(loader);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (epochs < 0) throw new ArgumentOutOfRangeException(nameof(epochs), $"epochs = {epochs} must be >= 0");
        var state = new TrainerState { Training = true, Epoch = firstEpoch };
        model.Train();
        OnStart?.Invoke(state);
        for (int epoch = firstEpoch; epoch < firstEpoch + epochs && !state.StopRequested; epoch++)
        {
            state.Epoch = epoch;
            state.BatchIndex = 0;
            OnEpochStart?.Invoke(state);
            foreach (var batch in loader.Batches())
            {
                try
                {
                    state.Sample = batch;
                    OnSample?.Invoke(state);
                    trainOnBatch(batch, state);
                }
                finally
                {
                    state.Sample = null;
                    batch.Dispose();
                }
                state.BatchIndex++;
                if (state.StopRequested) break;
            }
            OnEpochEnd?.Invoke(state);
        }
        OnEnd?.Invoke(state);
        return state;
    }

    /// <summary>One training step on an output already computed inside the caller's scope: loss,
    /// backward, the finiteness check, the hooks, clipping and the optimizer step.</summary>
    private void Update(TrainerState state, Module model, LossFunction loss, Optimizer optimizer, Tensor output, Tensor targets)
    {
        optimizer.ZeroGrad();
        state.ForgetLossValue();
        state.Output = output;
        state.Loss = loss(state.Output, targets);
        state.Loss.Backward();
        state.CheckedLoss = LossWithGradientCheck(state.Loss, model);
        if (ReadLossEachStep)
        {
            // The one host read of the step: the loss, made NaN when any gradient is NaN or
            // infinite, so a bad batch stops training before the optimizer applies it.
            float probe = state.CheckedLoss.Item();
            state.LossValue = float.IsFinite(probe) ? probe : state.Loss.Item();
            string where = $"epoch {state.Epoch + 1}, batch {state.BatchIndex + 1}" + (state.Chunked ? $", chunk {state.ChunkIndex + 1}" : "");
            if (!double.IsFinite(state.LossValue))
                throw new ArithmeticException($"the loss became {state.LossValue} at {where}: the parameters were not updated; check the learning rate and this batch's inputs for NaN/infinity");
            if (!float.IsFinite(probe))
                throw new ArithmeticException($"a gradient became NaN or infinite at {where} (the loss was {state.LossValue}): the parameters were not updated; check this batch's inputs for NaN/infinity and the learning rate");
        }
        OnForward?.Invoke(state);
        OnBackward?.Invoke(state);
        BeforeUpdate?.Invoke(model);
        optimizer.Step();
        state.Step++;
        OnUpdate?.Invoke(state);
        state.Output = null;
        state.Loss = null;
        state.CheckedLoss = null;
    }

    /// <summary>loss + 0 * (sum of every gradient), on the loss's device: equal to the loss while every
    /// gradient is finite, NaN as soon as one element is not (0 * inf and 0 * NaN are NaN).</summary>
    private static Tensor LossWithGradientCheck(Tensor loss, Module model)
    {
        using (Tensor.NoGrad())
        {
            Tensor? total = null;
            foreach (var p in model.Parameters())
                if (p.Grad is { } g)
                {
                    // A network placed on several devices: each partial sum joins the loss's device.
                    var partial = g.Sum().To(loss.Device);
                    total = total is null ? partial : total.Add(partial);
                }
            return total is null ? loss : loss.Add(total.Mul(0f));
        }
    }

    /// <summary>Runs the model over a loader without gradients; returns the mean loss and feeds the
    /// metrics. The batch losses stay on the device and are read together at the end (see
    /// <see cref="PendingLosses"/>: no synchronisation per batch). A NaN or infinite loss is an
    /// <see cref="ArithmeticException"/> naming the batch of <paramref name="dataName"/> it came from.</summary>
    public double Test(Module model, LossFunction loss, DataLoader loader, IEnumerable<Metric>? metrics = null, string dataName = "evaluated data")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(loader);
        var meters = metrics?.ToArray() ?? Array.Empty<Metric>();
        foreach (var m in meters) m.Reset();
        bool wasTraining = model.Training;
        model.Eval();
        var sizes = new List<long>();
        using var losses = new PendingLosses((batch, value, _, _) =>
            new ArithmeticException($"the loss is {value} on batch {batch + 1} of the {dataName} ({sizes[batch]} samples): check that data for NaN/infinity"));
        try
        {
            using (Tensor.NoGrad())
            {
                int batchIndex = 0;
                foreach (var batch in loader.Batches())
                {
                    using (var scope = new DisposeScope())
                    {
                        var output = model.Forward(batch.Inputs);
                        losses.Add(loss(output, batch.Targets), null, batch.Size, batchIndex);
                        sizes.Add(batch.Size);
                        foreach (var m in meters) m.Update(output, batch.Targets);
                    }
                    batch.Dispose();
                    batchIndex++;
                }
            }
            return losses.Mean;
        }
        finally
        {
            model.Train(wasTraining);
        }
    }
}
