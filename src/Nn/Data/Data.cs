namespace Kernels.Nn;

/// <summary>
/// A collection of (features, target) samples of fixed shapes (Torchnet's dataset). Subclasses read
/// from anywhere: memory, IDX files, a database.
/// </summary>
public abstract class Dataset
{
    /// <summary>Number of samples.</summary>
    public abstract int Count { get; }

    /// <summary>Shape of one sample's features (without the batch dimension).</summary>
    public abstract long[] FeatureShape { get; }

    /// <summary>Shape of one sample's target (empty for a class index or a scalar).</summary>
    public abstract long[] TargetShape { get; }

    /// <summary>Copies sample <paramref name="index"/> into the spans (sized by the shapes).</summary>
    public abstract void Get(int index, Span<float> features, Span<float> target);

    /// <summary>
    /// The element type of the targets: <see cref="Dtype.Float32"/> (regression values, one-hot rows: the
    /// default) or <see cref="Dtype.Int64"/> (class indices), for which the <see cref="DataLoader"/> yields
    /// int64 target tensors (see <see cref="Get(int, Span{float}, Span{long})"/>).
    /// </summary>
    public virtual Dtype TargetDtype => Dtype.Float32;

    /// <summary>
    /// Copies sample <paramref name="index"/> with integer targets (class indices), for a dataset whose
    /// <see cref="TargetDtype"/> is int64. Datasets of float targets do not implement it.
    /// </summary>
    public virtual void Get(int index, Span<float> features, Span<long> target) =>
        throw new NotSupportedException($"{GetType().Name} has {Tensor.DtypeName(TargetDtype)} targets; integer targets come from a dataset whose TargetDtype is int64");

    /// <summary>Elements of one sample's features.</summary>
    public long FeatureSize => Tensor.ShapeSize(FeatureShape);

    /// <summary>Elements of one sample's target.</summary>
    public long TargetSize => Tensor.ShapeSize(TargetShape);

    /// <summary>The samples at the given indices, as a view (no copy).</summary>
    public Dataset Subset(IReadOnlyList<int> indices) => new SubsetDataset(this, indices);

    /// <summary>Splits off the last fraction of samples (Keras's validation_split: the tail, not shuffled).</summary>
    public (Dataset Train, Dataset Validation) Split(double validationFraction)
    {
        if (!(validationFraction > 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), $"validation fraction {validationFraction} must be in (0, 1)");
        int validation = (int)Math.Round(Count * validationFraction);
        if (validation == 0 || validation == Count)
            throw new ArgumentException($"a validation fraction of {validationFraction} of {Count} samples leaves an empty part", nameof(validationFraction));
        int train = Count - validation;
        return (Subset(Enumerable.Range(0, train).ToArray()), Subset(Enumerable.Range(train, validation).ToArray()));
    }

    private sealed class SubsetDataset : Dataset
    {
        private readonly Dataset source;
        private readonly int[] indices;

        public SubsetDataset(Dataset source, IReadOnlyList<int> indices)
        {
            this.source = source;
            this.indices = indices.ToArray();
            foreach (var i in this.indices)
                if (i < 0 || i >= source.Count) throw new ArgumentOutOfRangeException(nameof(indices), $"index {i} is outside the dataset's {source.Count} samples");
        }

        public override int Count => indices.Length;
        public override long[] FeatureShape => source.FeatureShape;
        public override long[] TargetShape => source.TargetShape;
        public override void Get(int index, Span<float> features, Span<float> target) => source.Get(indices[index], features, target);
        public override Dtype TargetDtype => source.TargetDtype;
        public override void Get(int index, Span<float> features, Span<long> target) => source.Get(indices[index], features, target);
    }
}

/// <summary>
/// Samples held in arrays (row-major, sample-major): float features, and float targets (regression,
/// one-hot) or long targets (class indices: <see cref="TargetDtype"/> int64, batched as int64 tensors).
/// </summary>
public sealed class ArrayDataset : Dataset
{
    private readonly float[] features;
    private readonly float[]? targets;
    private readonly long[]? classTargets;
    private readonly long[] featureShape;
    private readonly long[] targetShape;

    /// <summary>
    /// count samples; features holds count * prod(featureShape) values, targets count * prod(targetShape)
    /// (an empty targetShape means one value per sample: a class index or a regression target).
    /// </summary>
    public ArrayDataset(float[] features, long[] featureShape, float[] targets, long[]? targetShape = null)
    {
        ArgumentNullException.ThrowIfNull(targets);
        this.targets = targets;
        (this.features, this.featureShape, this.targetShape, Count) = Check(features, featureShape, targets.Length, targetShape);
    }

    /// <summary>
    /// count samples with integer targets (class indices, token ids): features holds count * prod(featureShape)
    /// values, targets count * prod(targetShape) (empty targetShape: one class index per sample). The
    /// <see cref="DataLoader"/> yields int64 target tensors, which <see cref="Losses.SparseCategoricalCrossEntropy(Tensor, Tensor)"/>
    /// and <see cref="Accuracy"/> use on the device.
    /// </summary>
    public ArrayDataset(float[] features, long[] featureShape, long[] targets, long[]? targetShape = null)
    {
        ArgumentNullException.ThrowIfNull(targets);
        classTargets = targets;
        (this.features, this.featureShape, this.targetShape, Count) = Check(features, featureShape, targets.Length, targetShape);
    }

    private static (float[], long[], long[], int) Check(float[] features, long[] featureShape, long targetCount, long[]? targetShape)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(featureShape);
        long[] checkedFeatures = Tensor.CheckShape(featureShape), checkedTargets = Tensor.CheckShape(targetShape ?? Array.Empty<long>());
        long fs = Tensor.ShapeSize(checkedFeatures), ts = Tensor.ShapeSize(checkedTargets);
        if (fs == 0 || features.Length % fs != 0)
            throw new ShapeMismatchException($"{features.Length} feature values are not a whole number of samples of shape {Tensor.FormatShape(checkedFeatures)}");
        long count = features.Length / fs;
        if (targetCount != count * ts)
            throw new ShapeMismatchException($"{count} samples of features but {targetCount} target values (expected {count} x {Tensor.FormatShape(checkedTargets)})");
        return (features, checkedFeatures, checkedTargets, checked((int)count));
    }

    /// <inheritdoc/>
    public override int Count { get; }
    /// <inheritdoc/>
    public override long[] FeatureShape => featureShape;
    /// <inheritdoc/>
    public override long[] TargetShape => targetShape;

    /// <inheritdoc/>
    public override void Get(int index, Span<float> featureOut, Span<float> targetOut)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), $"sample {index} of {Count}");
        long fs = FeatureSize, ts = TargetSize;
        features.AsSpan((int)(index * fs), (int)fs).CopyTo(featureOut);
        if (targets is not null) targets.AsSpan((int)(index * ts), (int)ts).CopyTo(targetOut);
        else for (int i = 0; i < ts; i++) targetOut[i] = classTargets![index * ts + i];  // class indices as floats, for float consumers
    }

    /// <inheritdoc/>
    public override Dtype TargetDtype => classTargets is null ? Dtype.Float32 : Dtype.Int64;

    /// <inheritdoc/>
    public override void Get(int index, Span<float> featureOut, Span<long> targetOut)
    {
        if (classTargets is null) base.Get(index, featureOut, targetOut);
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), $"sample {index} of {Count}");
        long fs = FeatureSize, ts = TargetSize;
        features.AsSpan((int)(index * fs), (int)fs).CopyTo(featureOut);
        classTargets!.AsSpan((int)(index * ts), (int)ts).CopyTo(targetOut);
    }
}

/// <summary>One mini-batch on a device: features [B, ...] and targets [B, ...].</summary>
public sealed class Batch : IDisposable
{
    internal Batch(Tensor inputs, Tensor targets, int size)
    {
        Inputs = inputs;
        Targets = targets;
        Size = size;
    }

    /// <summary>[B, feature shape...]</summary>
    public Tensor Inputs { get; }
    /// <summary>[B, target shape...]</summary>
    public Tensor Targets { get; }
    /// <summary>Samples in the batch (the last one may be smaller).</summary>
    public int Size { get; }

    /// <summary>Frees both tensors.</summary>
    public void Dispose()
    {
        Inputs.Dispose();
        Targets.Dispose();
    }
}

/// <summary>
/// Cuts a dataset into mini-batches, shuffled with a seed (a new order each epoch, reproducible), and
/// assembles the next batch on a background thread while the current one trains. The host arrays are
/// built in the background; the device tensors are created on the consuming thread, inside its
/// <see cref="DisposeScope"/>.
/// </summary>
public sealed class DataLoader
{
    private readonly Dataset dataset;
    private int epoch;

    /// <summary>Batches of <paramref name="batchSize"/> samples, on <paramref name="device"/>.</summary>
    public DataLoader(Dataset dataset, int batchSize, bool shuffle = true, int seed = 0, bool dropLast = false, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be positive");
        if (dataset.Count == 0) throw new ArgumentException("the dataset is empty: there is nothing to batch", nameof(dataset));
        if (dataset.TargetDtype is not (Dtype.Float32 or Dtype.Int64))
            throw new ArgumentException($"{dataset.GetType().Name} declares {Tensor.DtypeName(dataset.TargetDtype)} targets; a DataLoader batches float32 or int64 targets", nameof(dataset));
        this.dataset = dataset;
        BatchSize = batchSize;
        Shuffle = shuffle;
        Seed = seed;
        DropLast = dropLast;
        Device = device ?? Device.Cpu;
    }

    /// <summary>
    /// Batches of <paramref name="batchSize"/> samples of this rank's shard (<paramref name="sampler"/>:
    /// data-parallel training), in the sampler's order, a new one each epoch.
    /// </summary>
    public DataLoader(Dataset dataset, int batchSize, DistributedSampler sampler, bool dropLast = false, Device? device = null)
        : this(dataset, batchSize, sampler?.Shuffle ?? false, sampler?.Seed ?? 0, dropLast, device)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        if (sampler.DatasetCount != dataset.Count)
            throw new ArgumentException($"the sampler shards {sampler.DatasetCount} samples but the dataset has {dataset.Count}", nameof(sampler));
        Sampler = sampler;
    }

    /// <summary>The epoch whose order the next <see cref="Batches"/> gives (0 at first, one more per call);
    /// set by a resumed Fit so epoch e visits the samples in the order it would have.</summary>
    internal int NextEpoch { get => epoch; set => epoch = value; }

    /// <summary>The shard sampler of data-parallel training, or null (every sample).</summary>
    public DistributedSampler? Sampler { get; }

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }
    /// <summary>Whether each epoch visits the samples in a new random order.</summary>
    public bool Shuffle { get; }
    /// <summary>Seed of the shuffling (epoch e uses seed + e).</summary>
    public int Seed { get; }
    /// <summary>Whether a last, smaller batch is skipped.</summary>
    public bool DropLast { get; }
    /// <summary>Where batches are placed.</summary>
    public Device Device { get; }
    /// <summary>The samples.</summary>
    public Dataset Dataset => dataset;

    /// <summary>Batches per epoch.</summary>
    public int BatchCount => DropLast ? SampleCount / BatchSize : (SampleCount + BatchSize - 1) / BatchSize;

    /// <summary>Samples per epoch: the dataset's, or this rank's shard (<see cref="Sampler"/>).</summary>
    public int SampleCount => Sampler?.Count ?? dataset.Count;

    /// <summary>
    /// The batches of the next epoch, in order. Dispose each batch (or use a DisposeScope). Targets are
    /// float32, or int64 when the dataset's <see cref="Dataset.TargetDtype"/> says so (class indices: their
    /// value range is noted on upload, so the loss checks them without reading the device).
    /// </summary>
    public IEnumerable<Batch> Batches()
    {
        int[] order;
        if (Sampler is not null) order = Sampler.Indices(epoch);
        else
        {
            order = Enumerable.Range(0, dataset.Count).ToArray();
            if (Shuffle) new Random(Seed + epoch).Shuffle(order);
        }
        epoch++;
        int count = BatchCount;
        if (count == 0) yield break;
        // Two host staging areas in turn: the background task fills one while the batch from the other
        // is uploaded. An upload (kn_buffer_write) returns once the host memory may be reused, so by the
        // time a task refills an area, the batch assembled there two steps ago is on the device. This
        // spares a new 400 KB array (a large-object-heap allocation, zeroed) per MNIST batch.
        long fs = dataset.FeatureSize, ts = dataset.TargetSize;
        var staging = new Staging[] { new(BatchSize * fs, BatchSize * ts, dataset.TargetDtype), new(BatchSize * fs, BatchSize * ts, dataset.TargetDtype) };
        var inputShape = new long[] { 0 }.Concat(dataset.FeatureShape).ToArray();
        var targetShape = new long[] { 0 }.Concat(dataset.TargetShape).ToArray();
        Task<int> next = Task.Run(() => Assemble(order, 0, staging[0]));
        for (int b = 0; b < count; b++)
        {
            int size = next.GetAwaiter().GetResult();
            Staging current = staging[b % 2];
            if (b + 1 < count)
            {
                int start = (b + 1) * BatchSize;
                Staging following = staging[(b + 1) % 2];
                next = Task.Run(() => Assemble(order, start, following));
            }
            inputShape[0] = size;
            targetShape[0] = size;
            var inputs = Tensor.FromArray(current.X.AsSpan(0, (int)(size * fs)), inputShape, Device);
            var targets = current.Classes is long[] classes
                ? Tensor.FromArray(classes.AsSpan(0, (int)(size * ts)), targetShape, Device)
                : Tensor.FromArray(current.Y!.AsSpan(0, (int)(size * ts)), targetShape, Device);
            yield return new Batch(inputs, targets, size);
        }
    }

    /// <summary>One batch's host arrays: features, and class indices (int64 targets) or float targets.</summary>
    private sealed class Staging(long features, long targets, Dtype targetDtype)
    {
        public readonly float[] X = new float[features];
        public readonly long[]? Classes = targetDtype == Dtype.Int64 ? new long[targets] : null;
        public readonly float[]? Y = targetDtype == Dtype.Int64 ? null : new float[targets];
    }

    /// <summary>Fills <paramref name="into"/> with the batch starting at order[start]; returns its size.</summary>
    private int Assemble(int[] order, int start, Staging into)
    {
        int size = Math.Min(BatchSize, order.Length - start);
        long fs = dataset.FeatureSize, ts = dataset.TargetSize;
        for (int i = 0; i < size; i++)
        {
            Span<float> x = into.X.AsSpan((int)(i * fs), (int)fs);
            if (into.Classes is long[] classes) dataset.Get(order[start + i], x, classes.AsSpan((int)(i * ts), (int)ts));
            else dataset.Get(order[start + i], x, into.Y.AsSpan((int)(i * ts), (int)ts));
        }
        return size;
    }
}
