namespace Kernels.Nn;

/// <summary>A loss: prediction and target in, a rank-0 tensor out.</summary>
public delegate Tensor LossFunction(Tensor prediction, Tensor target);

/// <summary>What the <see cref="Trainer"/> hands to its hooks: where training stands right now.</summary>
public sealed class TrainerState
{
    /// <summary>Current epoch, 0-based.</summary>
    public int Epoch { get; internal set; }
    /// <summary>Batch index within the epoch.</summary>
    public int BatchIndex { get; internal set; }
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
    /// <summary>The batch's loss as a number (after OnForward).</summary>
    public double LossValue { get; internal set; }
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

    /// <summary>Trains for the given number of epochs (or until a hook requests a stop).</summary>
    public TrainerState Train(Module model, LossFunction loss, DataLoader loader, Optimizer optimizer, int epochs, int firstEpoch = 0)
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
                using (var scope = new DisposeScope())
                {
                    state.Sample = batch;
                    OnSample?.Invoke(state);
                    optimizer.ZeroGrad();
                    state.Output = model.Forward(batch.Inputs);
                    state.Loss = loss(state.Output, batch.Targets);
                    state.Loss.Backward();
                    // The one host read of the step: the loss, made NaN when any gradient is NaN or
                    // infinite, so a bad batch stops training before the optimizer applies it.
                    float probe = LossWithGradientCheck(state.Loss, model).Item();
                    state.LossValue = float.IsFinite(probe) ? probe : state.Loss.Item();
                    if (!double.IsFinite(state.LossValue))
                        throw new ArithmeticException($"the loss became {state.LossValue} at epoch {epoch + 1}, batch {state.BatchIndex + 1}: the parameters were not updated; check the learning rate and this batch's inputs for NaN/infinity");
                    if (!float.IsFinite(probe))
                        throw new ArithmeticException($"a gradient became NaN or infinite at epoch {epoch + 1}, batch {state.BatchIndex + 1} (the loss was {state.LossValue}): the parameters were not updated; check this batch's inputs for NaN/infinity and the learning rate");
                    OnForward?.Invoke(state);
                    OnBackward?.Invoke(state);
                    BeforeUpdate?.Invoke(model);
                    optimizer.Step();
                    state.Step++;
                    OnUpdate?.Invoke(state);
                    state.Sample = null;
                    state.Output = null;
                    state.Loss = null;
                }
                batch.Dispose();
                state.BatchIndex++;
                if (state.StopRequested) break;
            }
            OnEpochEnd?.Invoke(state);
        }
        OnEnd?.Invoke(state);
        return state;
    }

    /// <summary>loss + 0 * (sum of every gradient), on the device: equal to the loss while every
    /// gradient is finite, NaN as soon as one element is not (0 * inf and 0 * NaN are NaN).</summary>
    private static Tensor LossWithGradientCheck(Tensor loss, Module model)
    {
        using (Tensor.NoGrad())
        {
            Tensor? total = null;
            foreach (var p in model.Parameters())
                if (p.Grad is { } g) total = total is null ? g.Sum() : total.Add(g.Sum());
            return total is null ? loss : loss.Add(total.Mul(0f));
        }
    }

    /// <summary>Runs the model over a loader without gradients; returns the mean loss and feeds the
    /// metrics. A NaN or infinite loss is an <see cref="ArithmeticException"/> naming the batch of
    /// <paramref name="dataName"/> it came from.</summary>
    public double Test(Module model, LossFunction loss, DataLoader loader, IEnumerable<Metric>? metrics = null, string dataName = "evaluated data")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(loader);
        var meters = metrics?.ToArray() ?? Array.Empty<Metric>();
        foreach (var m in meters) m.Reset();
        bool wasTraining = model.Training;
        model.Eval();
        double total = 0;
        long samples = 0;
        using (Tensor.NoGrad())
        {
            int batchIndex = 0;
            foreach (var batch in loader.Batches())
            {
                batchIndex++;
                using (var scope = new DisposeScope())
                {
                    var output = model.Forward(batch.Inputs);
                    double value = loss(output, batch.Targets).Item();
                    if (!double.IsFinite(value))
                    {
                        model.Train(wasTraining);
                        throw new ArithmeticException($"the loss is {value} on batch {batchIndex} of the {dataName} ({batch.Size} samples): check that data for NaN/infinity");
                    }
                    total += value * batch.Size;
                    samples += batch.Size;
                    foreach (var m in meters) m.Update(output, batch.Targets);
                }
                batch.Dispose();
            }
        }
        model.Train(wasTraining);
        return samples == 0 ? double.NaN : total / samples;
    }
}
