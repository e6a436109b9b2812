namespace Kernels.Nn;

/// <summary>Hooks into <c>Model.Fit</c> (Keras's callbacks). Override what you need.</summary>
public abstract class Callback
{
    /// <summary>The model being trained (set by Fit).</summary>
    public Model? Model { get; internal set; }

    /// <summary>Before the first epoch.</summary>
    public virtual void OnTrainBegin() { }
    /// <summary>After the last epoch.</summary>
    public virtual void OnTrainEnd() { }
    /// <summary>At the start of an epoch (0-based).</summary>
    public virtual void OnEpochBegin(int epoch) { }
    /// <summary>At the end of an epoch, with its logs ("loss", "val_loss", metrics).</summary>
    public virtual void OnEpochEnd(int epoch, IReadOnlyDictionary<string, double> logs) { }
    /// <summary>Before a batch.</summary>
    public virtual void OnBatchBegin(int batch) { }
    /// <summary>After a batch's update, with the running logs of the epoch. Fit reads them from the device
    /// only if the callback looks at them (one synchronisation), and only during this call: copy them to keep
    /// them (a first access after the call throws).</summary>
    public virtual void OnBatchEnd(int batch, IReadOnlyDictionary<string, double> logs) { }
}

/// <summary>A callback made of delegates, for quick user hooks.</summary>
public sealed class LambdaCallback : Callback
{
    /// <summary>Called at each epoch end.</summary>
    public Action<int, IReadOnlyDictionary<string, double>>? EpochEnd { get; init; }
    /// <summary>Called at each batch end.</summary>
    public Action<int, IReadOnlyDictionary<string, double>>? BatchEnd { get; init; }
    /// <summary>Called at each epoch start.</summary>
    public Action<int>? EpochBegin { get; init; }
    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, IReadOnlyDictionary<string, double> logs) => EpochEnd?.Invoke(epoch, logs);
    /// <inheritdoc/>
    public override void OnBatchEnd(int batch, IReadOnlyDictionary<string, double> logs) => BatchEnd?.Invoke(batch, logs);
    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch) => EpochBegin?.Invoke(epoch);
}

/// <summary>Whether larger or smaller values of a monitored quantity are better.</summary>
public enum MonitorMode
{
    /// <summary>"acc"/"accuracy"/"f1"/"precision"/"recall" names are maximised, others minimised.</summary>
    Auto,
    /// <summary>Smaller is better.</summary>
    Min,
    /// <summary>Larger is better.</summary>
    Max,
}

/// <summary>Tracks the best value of a monitored log entry.</summary>
internal sealed class Monitor
{
    private readonly string name;
    private readonly bool maximise;
    private readonly double minDelta;

    public Monitor(string name, MonitorMode mode, double minDelta)
    {
        this.name = name;
        this.minDelta = Math.Abs(minDelta);
        maximise = mode == MonitorMode.Max || (mode == MonitorMode.Auto &&
            new[] { "acc", "accuracy", "f1", "precision", "recall" }.Any(m => name.EndsWith(m, StringComparison.Ordinal)));
        Best = maximise ? double.NegativeInfinity : double.PositiveInfinity;
    }

    public double Best { get; private set; }

    public bool Improved(IReadOnlyDictionary<string, double> logs)
    {
        if (!logs.TryGetValue(name, out var value))
            throw new KeyNotFoundException($"monitored quantity '{name}' is not in the logs ({string.Join(", ", logs.Keys)}); validation metrics need validation data");
        bool better = maximise ? value > Best + minDelta : value < Best - minDelta;
        if (better) Best = value;
        return better;
    }
}

/// <summary>Stops training when the monitored quantity has not improved for <c>patience</c> epochs,
/// optionally restoring the best weights seen.</summary>
public sealed class EarlyStopping : Callback
{
    private readonly Monitor monitor;
    private readonly int patience;
    private readonly bool restoreBestWeights;
    private int wait;
    private float[][]? best;

    /// <summary>Watches <paramref name="monitor"/> ("val_loss" by default).</summary>
    public EarlyStopping(string monitor = "val_loss", int patience = 0, double minDelta = 0, MonitorMode mode = MonitorMode.Auto, bool restoreBestWeights = false)
    {
        this.monitor = new Monitor(monitor, mode, minDelta);
        this.patience = patience;
        this.restoreBestWeights = restoreBestWeights;
    }

    /// <summary>The epoch (0-based) training stopped at, or -1.</summary>
    public int StoppedEpoch { get; private set; } = -1;

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, IReadOnlyDictionary<string, double> logs)
    {
        if (monitor.Improved(logs))
        {
            wait = 0;
            if (restoreBestWeights) best = Model!.Network.NamedState().Select(p => p.Tensor.ToArray()).ToArray();
            return;
        }
        if (++wait > patience)
        {
            StoppedEpoch = epoch;
            Model!.StopTraining = true;
            if (restoreBestWeights && best is not null)
            {
                int i = 0;
                foreach (var (_, p) in Model.Network.NamedState()) p.Buffer.Write<float>(best[i++]);
            }
        }
    }
}

/// <summary>Sets the optimizer's learning rate at the start of each epoch from a schedule.</summary>
public sealed class LearningRateScheduler : Callback
{
    private readonly LearningRateSchedule schedule;

    /// <summary>Uses <paramref name="schedule"/> with the optimizer's initial rate.</summary>
    public LearningRateScheduler(LearningRateSchedule schedule) => this.schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));

    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch)
    {
        var optimizer = Model!.Optimizer;
        optimizer.LearningRate = schedule.Rate(epoch, optimizer.InitialLearningRate);
    }
}

/// <summary>Saves the weights at the end of each epoch (or only when the monitored quantity improves);
/// under data-parallel training (<see cref="Model.DataParallel"/>) only rank 0 writes. To resume a
/// restarted run (optimizer state and epoch included), use <see cref="BackupAndRestore"/>.</summary>
public sealed class ModelCheckpoint : Callback
{
    private readonly string path;
    private readonly Monitor? monitor;

    /// <summary>Writes to <paramref name="path"/> ("{epoch}" is replaced by the 1-based epoch).</summary>
    public ModelCheckpoint(string path, string monitor = "val_loss", bool saveBestOnly = false, MonitorMode mode = MonitorMode.Auto)
    {
        this.path = path ?? throw new ArgumentNullException(nameof(path));
        this.monitor = saveBestOnly ? new Monitor(monitor, mode, 0) : null;
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, IReadOnlyDictionary<string, double> logs)
    {
        if (monitor is not null && !monitor.Improved(logs)) return;
        if (Model!.DataParallel is { Rank: not 0 }) return;   // the replicas are equal: rank 0 writes for the job
        Model!.SaveWeights(path.Replace("{epoch}", (epoch + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
    }
}
