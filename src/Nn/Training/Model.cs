using System.Diagnostics;
using System.Globalization;

namespace Kernels.Nn;

/// <summary>Per-epoch values recorded by <c>Model.Fit</c>: "loss", "accuracy", "val_loss", ...</summary>
public sealed class History
{
    /// <summary>Metric name to one value per epoch.</summary>
    public Dictionary<string, List<double>> Values { get; } = new();

    /// <summary>Epochs recorded.</summary>
    public int Epochs => Values.Count == 0 ? 0 : Values.Values.Max(v => v.Count);

    /// <summary>The values of one metric.</summary>
    public IReadOnlyList<double> this[string name] =>
        Values.TryGetValue(name, out var v) ? v : throw new KeyNotFoundException($"no metric '{name}' in the history; recorded: {string.Join(", ", Values.Keys)}");

    internal void Add(IReadOnlyDictionary<string, double> logs)
    {
        foreach (var (k, v) in logs)
        {
            if (!Values.TryGetValue(k, out var list)) Values[k] = list = new List<double>();
            list.Add(v);
        }
    }
}

/// <summary>
/// Keras-style training on top of the <see cref="Trainer"/>: Compile once, then Fit, Evaluate and
/// Predict. Wraps any <see cref="Module"/> (a <see cref="Sequential"/>, or a functional graph).
/// </summary>
public sealed class Model : IDisposable
{
    private Optimizer? optimizer;
    private LossFunction? loss;
    private Metric[] metrics = Array.Empty<Metric>();

    /// <summary>
    /// A model around a network whose parameters live on <paramref name="device"/> (default: the CPU). A
    /// network placed on several devices (<see cref="Sequential.PlaceOn"/>: a Sequential or Functional
    /// moves its activations between them) has its output, and so its targets and batches, on its last
    /// layer's device: that is the model's device (the default for such a network; another one is a
    /// <see cref="DeviceMismatchException"/>).
    /// </summary>
    public Model(Module network, Device? device = null)
    {
        Network = network ?? throw new ArgumentNullException(nameof(network));
        var devices = network.StateDevices();
        if (devices.Count > 1)
        {
            string list = string.Join(", ", devices.Select(d => d.Name));
            if (!network.MovesActivations)
                throw new DeviceMismatchException($"the network's parameters are on several devices ({list}) but a {network.GetType().Name} does not move activations between devices: wrap the layers in a Sequential (PlaceOn) or a Functional");
            var output = network.OutputDevice!;
            if (device is not null && !ReferenceEquals(device, output))
                throw new DeviceMismatchException($"the network is placed on {list} and its output is on {output.Name} (its last layer's device), but the model was given {device.Name}: a model keeps its targets where the output is; pass {output.Name} or no device");
            Device = output;
            return;
        }
        Device = device ?? Device.Cpu;
        foreach (var (name, p) in network.NamedState())
            if (!ReferenceEquals(p.Device, Device))
                throw new DeviceMismatchException($"parameter or buffer '{name}' is on {p.Device.Name} but the model is on {Device.Name}: create the layers with device: {Device.Name}");
    }

    /// <summary>The network being trained.</summary>
    public Module Network { get; }
    /// <summary>Where parameters and batches live.</summary>
    public Device Device { get; }
    /// <summary>The network's <see cref="Module.Summary(long[])"/>: layers, output shapes for samples of
    /// <paramref name="sampleShape"/> (a functional network knows its own), parameter counts, totals.</summary>
    public string Summary(params long[] sampleShape) => Network.Summary(sampleShape);

    /// <summary><see cref="Summary(long[])"/> for inputs of another element type (token ids: <see cref="Dtype.Int64"/>).</summary>
    public string Summary(Dtype inputDtype, params long[] sampleShape) => Network.Summary(inputDtype, sampleShape);

    /// <summary>Set by a callback's <see cref="Callback.OnTrainBegin"/> that restored a checkpoint
    /// (<see cref="BackupAndRestore"/>): the epoch Fit continues from.</summary>
    internal int? ResumeEpoch { get; set; }

    /// <summary>Whether a callback asked Fit to stop.</summary>
    public bool StopTraining { get; set; }
    /// <summary>The optimizer given to Compile.</summary>
    public Optimizer Optimizer => optimizer ?? throw new InvalidOperationException("call Compile(optimizer, loss, metrics) before training");

    /// <summary>
    /// When set, Fit rescales the gradients to this global L2 norm whenever they exceed it, before each
    /// optimizer step (<see cref="GradientClipping.ByGlobalNorm"/>; Keras's clipnorm): what keeps a
    /// recurrent network's exploding gradients from wrecking a step. Null (the default): no clipping.
    /// </summary>
    public float? GradientClipNorm { get; set; }

    /// <summary>
    /// Whether Fit reads every step's loss to the host (one device synchronisation per batch) to stop
    /// before the optimizer applies a batch whose loss or gradients are NaN or infinite, leaving the
    /// parameters as they were before it. False (the default): a step reads nothing; the losses stay on
    /// the device and are read together at the end of the epoch, when the progress line refreshes, or
    /// when a callback reads its batch logs, and a NaN or infinite one is reported there with its epoch
    /// and batch, the optimizer steps from that batch to the read having been applied.
    /// </summary>
    public bool CheckFiniteEachStep { get; set; }

    /// <summary>
    /// Data-parallel training (Kernels.Distributed's DistributedDataParallel under mpirun), or null (the
    /// default: one process). When set, Fit trains this rank's shard of each epoch
    /// (<see cref="DistributedSampler"/>, same seed on every rank), averages the gradients over the
    /// ranks before each optimizer step (<see cref="GradientClipNorm"/> then clips the averaged
    /// gradients), averages the epoch's logs (loss, metrics,
    /// validation) over the ranks so every rank's callbacks decide alike, prints progress on rank 0
    /// only, and <see cref="ModelCheckpoint"/> writes on rank 0 only. Batch-level logs seen by
    /// <see cref="Callback.OnBatchEnd"/> are this rank's own.
    /// </summary>
    public IDataParallel? DataParallel { get; set; }

    /// <summary>Chooses the optimizer, the loss and the metrics reported by Fit and Evaluate.</summary>
    public Model Compile(Optimizer optimizer, LossFunction loss, params Metric[] metrics)
    {
        this.optimizer = optimizer ?? throw new ArgumentNullException(nameof(optimizer));
        this.loss = loss ?? throw new ArgumentNullException(nameof(loss));
        this.metrics = metrics ?? Array.Empty<Metric>();
        return this;
    }

    /// <summary>
    /// Chooses the optimizer, and the loss and metrics by their Keras names:
    /// <c>Compile(new Adam(...), "sparse_categorical_crossentropy", "accuracy")</c>. The names are those of
    /// <see cref="Losses.FromName"/> and <see cref="Metric.FromName"/>; an unknown one throws listing the known ones.
    /// </summary>
    public Model Compile(Optimizer optimizer, string loss, params string[] metrics)
    {
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(metrics);
        return Compile(optimizer, Losses.FromName(loss), metrics.Select(Metric.FromName).ToArray());
    }

    /// <summary>
    /// Trains for <paramref name="epochs"/> epochs and returns the per-epoch history. Validation data
    /// comes from <paramref name="validationData"/>, or the last <paramref name="validationSplit"/>
    /// fraction of the training data. verbose: 0 silent, 1 a live progress line per epoch refreshed
    /// every 0.25 s (one plain line per epoch when output is redirected).
    /// <para>A step reads nothing from the device: the loss sum and the device metrics (accuracy with
    /// integer labels) accumulate there, and are read once per epoch, per progress-line refresh, and
    /// when a callback reads its batch logs (see <see cref="Callback.OnBatchEnd"/>). A NaN or infinite
    /// loss or gradient is therefore found at the next read, not before its optimizer step; see
    /// <see cref="CheckFiniteEachStep"/> for the per-step check.</para>
    /// </summary>
    /// <para>Resuming (Keras's initial_epoch): training runs epochs <paramref name="initialEpoch"/> to
    /// <paramref name="epochs"/> - 1 (0-based), epoch e shuffled as epoch e of an uninterrupted run would be;
    /// a <see cref="BackupAndRestore"/> callback that finds its backup sets the initial epoch itself.</para>
    public History Fit(Dataset train, int epochs = 1, int batchSize = 32, double validationSplit = 0, Dataset? validationData = null,
                       bool shuffle = true, IEnumerable<Callback>? callbacks = null, int verbose = 1, int seed = 0, int initialEpoch = 0)
    {
        ArgumentNullException.ThrowIfNull(train);
        var opt = Optimizer;
        if (epochs < 0) throw new ArgumentOutOfRangeException(nameof(epochs), $"epochs = {epochs} must be >= 0");
        if (initialEpoch < 0) throw new ArgumentOutOfRangeException(nameof(initialEpoch), $"initialEpoch = {initialEpoch} must be >= 0");
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be positive");
        if (!(validationSplit >= 0 && validationSplit < 1))
            throw new ArgumentOutOfRangeException(nameof(validationSplit), validationSplit,
                $"validationSplit = {validationSplit.ToString(CultureInfo.InvariantCulture)} must be a fraction in [0, 1) (0: no split)");
        if (validationSplit > 0)
        {
            if (validationData is not null) throw new ArgumentException("give validationSplit or validationData, not both");
            (train, validationData) = train.Split(validationSplit);
        }
        var parallel = DataParallel;
        var loader = parallel is null
            ? new DataLoader(train, batchSize, shuffle, seed, device: Device)
            : new DataLoader(train, batchSize, new DistributedSampler(train.Count, parallel.Rank, parallel.WorldSize, shuffle, seed), device: Device);
        if (parallel is not null && parallel.Rank != 0) verbose = 0;   // one progress display for the job
        var validationLoader = validationData is null ? null : new DataLoader(validationData, batchSize, shuffle: false, device: Device);
        var callbackList = callbacks?.ToList() ?? new List<Callback>();
        foreach (var c in callbackList) c.Model = this;

        var history = new History();
        var trainer = new Trainer { ReadLossEachStep = CheckFiniteEachStep };
        float? clipNorm = GradientClipNorm;
        if (parallel is not null || clipNorm is not null)
            trainer.BeforeUpdate = m =>
            {
                parallel?.SynchronizeGradients();
                if (clipNorm is float maxNorm) GradientClipping.ByGlobalNorm(m.Parameters(), maxNorm);
            };
        var progress = new ProgressLine(verbose, loader.BatchCount, epochs);
        int epochNow = 0;
        using var losses = new PendingLosses((batch, value, gradientOnly, last) => new ArithmeticException(
            (gradientOnly
                ? $"a gradient became NaN or infinite at epoch {epochNow + 1}, batch {batch + 1} (the loss was {value})"
                : $"the loss became {value} at epoch {epochNow + 1}, batch {batch + 1}") +
            $": Fit found it when it read the losses after batch {last + 1}, so the optimizer steps of batches {batch + 1} to {last + 1} were applied and the parameters may hold NaN now " +
            $"(set Model.{nameof(CheckFiniteEachStep)} to stop before such a step, at one device read per batch); check " +
            (gradientOnly ? "this batch's inputs for NaN/infinity and the learning rate" : "the learning rate and this batch's inputs for NaN/infinity")));
        trainer.OnEpochStart += s =>
        {
            epochNow = s.Epoch;
            losses.Reset();
            foreach (var m in metrics) m.Reset();
            foreach (var c in callbackList) c.OnEpochBegin(s.Epoch);
            progress.StartEpoch(s.Epoch);
        };
        trainer.OnSample += s => { foreach (var c in callbackList) c.OnBatchBegin(s.BatchIndex); };
        trainer.OnForward += s =>
        {
            // No read: the loss and the metric counts stay on the device (a host-path metric reads its batch).
            losses.Add(s.Loss!, s.CheckedLoss, s.Sample!.Size, s.BatchIndex);
            foreach (var m in metrics) m.Update(s.Output!, s.Sample.Targets);
        };
        trainer.OnUpdate += s =>
        {
            if (callbackList.Count > 0)
            {
                var logs = new BatchLogs(CurrentLogs, s.BatchIndex);
                try
                {
                    foreach (var c in callbackList) c.OnBatchEnd(s.BatchIndex, logs);
                }
                finally
                {
                    logs.Expire();
                }
            }
            progress.Batch(s.BatchIndex + 1, CurrentLogs);
            if (StopTraining) s.StopRequested = true;
        };
        trainer.OnEpochEnd += s =>
        {
            var logs = CurrentLogs();
            if (validationLoader is not null)
                foreach (var (k, v) in EvaluateLogs(validationLoader, $"validation data after epoch {s.Epoch + 1}")) logs["val_" + k] = v;
            parallel?.AverageLogs(logs);
            history.Add(logs);
            progress.EndEpoch(logs);
            foreach (var c in callbackList) c.OnEpochEnd(s.Epoch, logs);
            if (StopTraining) s.StopRequested = true;
        };

        Dictionary<string, double> CurrentLogs()
        {
            var logs = new Dictionary<string, double> { ["loss"] = losses.Mean };
            foreach (var m in metrics) logs[m.Name] = m.Result();
            return logs;
        }

        StopTraining = false;
        ResumeEpoch = null;
        foreach (var c in callbackList) c.OnTrainBegin();
        int firstEpoch = ResumeEpoch ?? initialEpoch;   // a restored backup knows where the run stopped
        ResumeEpoch = null;
        loader.NextEpoch = firstEpoch;
        trainer.Train(Network, loss!, loader, opt, Math.Max(0, epochs - firstEpoch), firstEpoch);
        foreach (var c in callbackList) c.OnTrainEnd();
        return history;
    }

    /// <summary>Fit on arrays: <paramref name="x"/> holds samples of <paramref name="featureShape"/>, <paramref name="y"/> one target per sample (class indices or values).</summary>
    public History Fit(float[] x, long[] featureShape, float[] y, int epochs = 1, int batchSize = 32, double validationSplit = 0,
                       bool shuffle = true, IEnumerable<Callback>? callbacks = null, int verbose = 1, int seed = 0) =>
        Fit(new ArrayDataset(x, featureShape, y), epochs, batchSize, validationSplit, null, shuffle, callbacks, verbose, seed);

    /// <summary>Loss and metrics over a dataset, without training: "loss", "accuracy", ... A NaN or
    /// infinite loss on a batch (NaN in the data) is an <see cref="ArithmeticException"/> naming the batch.</summary>
    public Dictionary<string, double> Evaluate(Dataset data, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(data);
        _ = Optimizer;
        return EvaluateLogs(new DataLoader(data, batchSize, shuffle: false, device: Device), "evaluated data");
    }

    /// <summary>The network's outputs for every sample, in order, as one tensor on the model's device.</summary>
    public Tensor Predict(Dataset data, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(data);
        var loader = new DataLoader(data, batchSize, shuffle: false, device: Device);
        bool wasTraining = Network.Training;
        Network.Eval();
        var outputs = new List<float>();
        long[]? sampleShape = null;
        using (Tensor.NoGrad())
        {
            foreach (var batch in loader.Batches())
            {
                using (var scope = new DisposeScope())
                {
                    var output = Network.Forward(batch.Inputs);
                    sampleShape ??= output.ShapeArray.Skip(1).ToArray();
                    outputs.AddRange(output.ToArray());
                }
                batch.Dispose();
            }
        }
        Network.Train(wasTraining);
        return Tensor.FromArray(outputs.ToArray(), new long[] { data.Count }.Concat(sampleShape!).ToArray(), Device);
    }

    private Dictionary<string, double> EvaluateLogs(DataLoader loader, string dataName)
    {
        var trainer = new Trainer();
        var logs = new Dictionary<string, double> { ["loss"] = trainer.Test(Network, loss!, loader, metrics, dataName) };
        foreach (var m in metrics) logs[m.Name] = m.Result();
        return logs;
    }

    /// <summary>Writes the network's parameters to a file, atomically (see <see cref="WeightsFile"/>).</summary>
    public void SaveWeights(string path) => WeightsFile.Save(Network, path);

    /// <summary>Reads parameters saved by <see cref="SaveWeights"/> into the network.</summary>
    public void LoadWeights(string path) => WeightsFile.Load(Network, path);

    /// <summary>Saves the network, architecture and weights, to one safetensors file (<see cref="ModelFile"/>);
    /// the optimizer and loss are not saved (compile the loaded model again).</summary>
    public void Save(string path) => ModelFile.Save(Network, path);

    /// <summary>A model around the network saved in <paramref name="path"/> by <see cref="Save"/> (or
    /// <see cref="Module.Save"/>), on <paramref name="device"/>; call Compile before training it.</summary>
    public static Model Load(string path, Device? device = null)
    {
        var network = ModelFile.Load(path, device);
        try { return new Model(network, device); }
        catch { network.Dispose(); throw; }
    }

    /// <summary>Frees the network and the optimizer state.</summary>
    public void Dispose()
    {
        Network.Dispose();
        optimizer?.Dispose();
    }

    /// <summary>Keras's progress display: a live line while the epoch runs in a terminal; one line per
    /// epoch when output is redirected (logs, CI); nothing when verbose is 0.</summary>
    private sealed class ProgressLine
    {
        private readonly int verbose, batches, epochs;
        private readonly bool live = !Console.IsOutputRedirected;
        private readonly Stopwatch watch = new();
        private int epoch;
        private double shownAt;   // seconds into the epoch of the last refresh

        // A refresh reads the running loss and metrics from the device (one synchronisation), so it
        // is paced by the clock, not by the batch count: often enough to look live, rarely enough
        // that a fast step never waits for it.
        private const double RefreshSeconds = 0.25;

        public ProgressLine(int verbose, int batches, int epochs) => (this.verbose, this.batches, this.epochs) = (verbose, batches, epochs);

        public void StartEpoch(int e)
        {
            epoch = e;
            shownAt = 0;
            watch.Restart();
        }

        /// <summary>After batch <paramref name="done"/> (1-based); <paramref name="logs"/> is called only for a refresh.</summary>
        public void Batch(int done, Func<IReadOnlyDictionary<string, double>> logs)
        {
            if (verbose == 0 || !live || done == batches) return;   // EndEpoch prints the last one
            double now = watch.Elapsed.TotalSeconds;
            if (now - shownAt < RefreshSeconds) return;
            shownAt = now;
            Console.Write($"\rEpoch {epoch + 1}/{epochs} {done}/{batches} {Format(logs())} {now:F1}s   ");
        }

        public void EndEpoch(IReadOnlyDictionary<string, double> logs)
        {
            if (verbose == 0) return;
            var line = $"Epoch {epoch + 1}/{epochs} {batches}/{batches} {Format(logs)} {watch.Elapsed.TotalSeconds:F1}s";
            Console.WriteLine(live ? "\r" + line + "   " : line);
        }

        private static string Format(IReadOnlyDictionary<string, double> logs) =>
            string.Join(" ", logs.Select(kv => $"{kv.Key} {kv.Value.ToString("F4", CultureInfo.InvariantCulture)}"));
    }

    /// <summary>
    /// A batch's running logs for <see cref="Callback.OnBatchEnd"/>, read from the device only when a
    /// callback looks at them (the first access reads, later ones reuse it), and only during that call:
    /// afterwards the batch's values are gone from the device's running sums, so a late first access
    /// throws instead of answering with another batch's numbers.
    /// </summary>
    private sealed class BatchLogs : IReadOnlyDictionary<string, double>
    {
        private readonly Func<Dictionary<string, double>> read;
        private readonly int batch;
        private Dictionary<string, double>? values;
        private bool expired;

        public BatchLogs(Func<Dictionary<string, double>> read, int batch) => (this.read, this.batch) = (read, batch);

        public void Expire() => expired = true;

        private Dictionary<string, double> Logs => values ??= expired
            ? throw new InvalidOperationException($"the logs of batch {batch + 1} were first read after its OnBatchEnd returned: they are read from the device during that call only; copy them there (new Dictionary<string, double>(logs)) to keep them")
            : read();

        public double this[string key] => Logs[key];
        public IEnumerable<string> Keys => Logs.Keys;
        IEnumerable<double> IReadOnlyDictionary<string, double>.Values => Logs.Values;
        public int Count => Logs.Count;
        public bool ContainsKey(string key) => Logs.ContainsKey(key);
        public bool TryGetValue(string key, out double value) => Logs.TryGetValue(key, out value);
        public IEnumerator<KeyValuePair<string, double>> GetEnumerator() => Logs.GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
