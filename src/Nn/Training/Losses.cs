namespace Kernels.Nn;

/// <summary>
/// Loss functions, each reducing to the mean over the batch (a rank-0 tensor) so that the learning
/// rate does not depend on the batch size.
/// </summary>
public static class Losses
{
    /// <summary>mean((prediction - target)^2)</summary>
    public static Tensor MeanSquaredError(Tensor prediction, Tensor target)
    {
        CheckSameShape(prediction, target, "MeanSquaredError");
        return prediction.Sub(target).Square().Mean();
    }

    /// <summary>
    /// Binary cross-entropy of probabilities p in [0, 1] against targets t:
    /// -mean(t ln p + (1 - t) ln(1 - p)), with p clamped to [1e-7, 1 - 1e-7] as Keras does so a
    /// confident wrong answer gives a large finite loss, not infinity.
    /// </summary>
    public static Tensor BinaryCrossEntropy(Tensor probabilities, Tensor target)
    {
        CheckSameShape(probabilities, target, "BinaryCrossEntropy");
        const float eps = 1e-7f;
        var low = Tensor.Scalar(eps, probabilities.Device);
        var high = Tensor.Scalar(1 - eps, probabilities.Device);
        var p = probabilities.Maximum(low).Minimum(high);
        var positive = target.Mul(p.Log());
        var negative = target.Neg().Add(1f).Mul(p.Neg().Add(1f).Log());
        var loss = positive.Add(negative).Mean().Neg();
        // The clamp bounds are operands of recorded maximum/minimum nodes: they must outlive backward.
        DisposeScope.Untrack(low);
        DisposeScope.Untrack(high);
        loss.Attach(low);
        loss.Attach(high);
        return loss;
    }

    /// <summary>
    /// Binary cross-entropy from logits x (before the sigmoid), in the stable form
    /// max(x, 0) - x t + ln(1 + e^-|x|), which never exponentiates a large positive number.
    /// </summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor target)
    {
        CheckSameShape(logits, target, "BinaryCrossEntropyWithLogits");
        return logits.Relu().Sub(logits.Mul(target)).Add(logits.Abs().Neg().Softplus()).Mean();
    }

    /// <summary>Categorical cross-entropy of logits [N, C] against one-hot (or soft) targets [N, C]:
    /// -mean over rows of sum_c t log_softmax(x).</summary>
    public static Tensor CategoricalCrossEntropy(Tensor logits, Tensor target)
    {
        CheckSameShape(logits, target, "CategoricalCrossEntropy");
        if (logits.Rank != 2) throw new ShapeMismatchException($"CategoricalCrossEntropy expects logits [N, C]; got {Tensor.FormatShape(logits.ShapeArray)}");
        return logits.LogSoftmax().Mul(target).Sum(1).Mean().Neg();
    }

    /// <summary>
    /// Sparse categorical cross-entropy of logits [N, C] against class indices in [0, C) given on the host:
    /// checked here (a bad one is named with its index), uploaded once, then as
    /// <see cref="SparseCategoricalCrossEntropy(Tensor, Tensor)"/> with an int64 label tensor.
    /// </summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, ReadOnlySpan<long> labels) =>
        SparseCategoricalCrossEntropy(logits, labels, nameof(labels));

    /// <summary>
    /// Sparse categorical cross-entropy of logits [N, C] (before the softmax, as PyTorch's CrossEntropyLoss;
    /// Keras's from_logits=True) against the class index of each row: one fused log-softmax +
    /// negative-log-likelihood kernel per direction, stable for large logits. Serves as a
    /// <see cref="LossFunction"/> directly.
    /// <para>The target is an int64 or int32 tensor [N] (or [N, 1]) on the logits' device, as the
    /// <see cref="DataLoader"/> yields for a dataset with integer targets: its buffer goes to the kernel
    /// as it is (int32 widened on the device), with no host round trip. The labels are validated without
    /// a device read when their range is known on the host (they were uploaded from host values, possibly
    /// reshaped, sliced or joined since: see <c>IntegerRange</c>): a range inside [0, C) needs no check, and
    /// an exact range outside it throws naming the bad label. When the range is unknown (labels computed on
    /// the device), a label outside [0, C) is not detected here: the kernel gives that row a NaN loss, so
    /// the mean is NaN (the Trainer then stops naming the batch) rather than a silently wrong number. A
    /// check on the device would cost a synchronisation per batch, which is what labels on the device avoid.</para>
    /// <para>A float32 target (class indices as whole numbers, as older code passes) still works: it is
    /// read to the host (one synchronisation) and a value that is not a whole number in [0, C) is refused
    /// with its index, never truncated.</para>
    /// </summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.Dtype != Dtype.Float32) return SparseCategoricalCrossEntropyOnDevice(logits, target, nameof(target));
        return SparseCategoricalCrossEntropy(logits, ClassIndicesFromFloat(target), nameof(target));
    }

    private static Tensor SparseCategoricalCrossEntropy(Tensor logits, ReadOnlySpan<long> labels, string labelsName)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var (rows, cols) = CrossEntropyShape(logits, labels.Length, labelsName);
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= cols)
                throw new ArgumentOutOfRangeException(labelsName, $"label {labels[i]} at index {i} is outside [0, {cols}) for logits {Tensor.FormatShape(logits.ShapeArray)}");
        using var onDevice = Tensor.FromArray(labels, new[] { rows }, logits.Device);
        return SparseCategoricalCrossEntropyOnDevice(logits, onDevice, labelsName);
    }

    private static (long Rows, long Cols) CrossEntropyShape(Tensor logits, long labelCount, string labelsName)
    {
        if (logits.Rank != 2) throw new ShapeMismatchException($"SparseCategoricalCrossEntropy expects logits [N, C]; got {Tensor.FormatShape(logits.ShapeArray)}");
        long rows = logits.ShapeArray[0], cols = logits.ShapeArray[1];
        if (labelCount != rows)
            throw new ShapeMismatchException($"SparseCategoricalCrossEntropy: {labelCount} labels for {rows} rows of logits {Tensor.FormatShape(logits.ShapeArray)}");
        if (rows == 0) throw new ArgumentException("SparseCategoricalCrossEntropy of an empty batch has no mean", labelsName);
        return (rows, cols);
    }

    private static Tensor SparseCategoricalCrossEntropyOnDevice(Tensor logits, Tensor labels, string labelsName) =>
        SparseCrossEntropyRows(logits, labels, labelsName).Mean();

    /// <summary>The per-row losses [N] of the fused log-softmax + negative-log-likelihood kernel.</summary>
    private static Tensor SparseCrossEntropyRows(Tensor logits, Tensor labels, string labelsName)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var logitData = logits.Float32Buffer("SparseCategoricalCrossEntropy");
        var ls = labels.ShapeArray;
        if (!(labels.Rank == 1 || labels.Rank == 2 && ls[1] == 1))
            throw new ShapeMismatchException($"SparseCategoricalCrossEntropy: labels must be [N] or [N, 1]; got {Tensor.FormatShape(ls)} for logits {Tensor.FormatShape(logits.ShapeArray)}");
        var (rows, cols) = CrossEntropyShape(logits, labels.Count, labelsName);
        if (labels.Device != logits.Device)
            throw new DeviceMismatchException($"SparseCategoricalCrossEntropy: logits on {logits.Device.Name} but labels on {labels.Device.Name}");
        // The free check: bounds known on the host (no device read).
        if (labels.Range is IntegerRange { Exact: true } r && (r.Min < 0 || r.Max >= cols))
            throw new ArgumentOutOfRangeException(labelsName,
                $"label {(r.Min < 0 ? r.Min : r.Max)} is outside [0, {cols}) for logits {Tensor.FormatShape(logits.ShapeArray)} " +
                "(known from the labels' upload, without a device read)");

        var wide = labels.To(Dtype.Int64);  // the kernel reads int64; int32 is widened on the device
        // The labels' storage lives as long as the per-row losses: the backward pass reads it.
        var kept = ReferenceEquals(wide, labels) ? labels.Detach() : wide;
        DisposeScope.Untrack(kept);
        var losses = Tensor.Empty(new[] { rows }, logits.Device);
        try
        {
            Ops.CrossEntropy(logitData, kept.RawBuffer, losses.Buffer, rows, cols);
        }
        catch
        {
            kept.Dispose();
            losses.Dispose();
            throw;
        }
        var x = logits;
        var labelBuffer = kept.RawBuffer;
        var recorded = Tensor.Record(losses, "CrossEntropy", new[] { x },
                                     g => new Tensor?[] { Gradients.CrossEntropy(x, labelBuffer, g, rows, cols) });
        recorded.Attach(kept);   // freed with the per-row losses, after any backward pass
        return recorded;
    }

    /// <summary>
    /// Sparse categorical cross-entropy (negative log-likelihood of the log-softmax) with a weight per
    /// sample: mean_i(w_i * loss_i), Keras's sample_weight (the mean over the batch, not over the weights,
    /// so weights with mean 1 over a dataset keep the unweighted loss's scale). <paramref name="target"/>
    /// holds the class indices as int64/int32 [N] (or [N, 1]) as in
    /// <see cref="SparseCategoricalCrossEntropy(Tensor, Tensor)"/>; <paramref name="sampleWeights"/> is a
    /// float32 [N] on the logits' device. What a boosted ensemble trains a network member with.
    /// </summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, Tensor target, Tensor sampleWeights)
    {
        ArgumentNullException.ThrowIfNull(target);
        var rows = target.Dtype == Dtype.Float32 ? SparseCrossEntropyRowsFromFloat(logits, target) : SparseCrossEntropyRows(logits, target, nameof(target));
        return rows.Mul(CheckSampleWeights(sampleWeights, rows.ShapeArray[0], logits, "SparseCategoricalCrossEntropy")).Mean();
    }

    /// <summary>A float32 target's class indices, read to the host (one synchronisation); a value that is not a
    /// whole number >= 0 is refused with its index, never truncated (the upper bound C is checked with the logits).</summary>
    private static long[] ClassIndicesFromFloat(Tensor target)
    {
        float[] values = target.ToArray();
        var labels = new long[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            if (!(v == MathF.Floor(v)) || v < 0 || v > long.MaxValue)  // NaN fails the comparison
                throw new ArgumentOutOfRangeException(nameof(target), $"target {v} at index {i} is not a class index (a whole number >= 0)");
            labels[i] = (long)v;
        }
        return labels;
    }

    private static Tensor SparseCrossEntropyRowsFromFloat(Tensor logits, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(logits);
        long[] labels = ClassIndicesFromFloat(target);
        var (rows, cols) = CrossEntropyShape(logits, labels.Length, nameof(target));
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= cols)
                throw new ArgumentOutOfRangeException(nameof(target), $"label {labels[i]} at index {i} is outside [0, {cols}) for logits {Tensor.FormatShape(logits.ShapeArray)}");
        using var onDevice = Tensor.FromArray(labels, new[] { rows }, logits.Device);
        return SparseCrossEntropyRows(logits, onDevice, nameof(target));
    }

    /// <summary>
    /// Categorical cross-entropy of logits [N, C] against one-hot (or soft) targets [N, C] with a weight per
    /// sample (float32 [N]): -mean_i(w_i * sum_c t log_softmax(x)).
    /// </summary>
    public static Tensor CategoricalCrossEntropy(Tensor logits, Tensor target, Tensor sampleWeights)
    {
        CheckSameShape(logits, target, "CategoricalCrossEntropy");
        if (logits.Rank != 2) throw new ShapeMismatchException($"CategoricalCrossEntropy expects logits [N, C]; got {Tensor.FormatShape(logits.ShapeArray)}");
        var w = CheckSampleWeights(sampleWeights, logits.ShapeArray[0], logits, "CategoricalCrossEntropy");
        return logits.LogSoftmax().Mul(target).Sum(1).Mul(w).Mean().Neg();
    }

    private static Tensor CheckSampleWeights(Tensor sampleWeights, long rows, Tensor logits, string loss)
    {
        ArgumentNullException.ThrowIfNull(sampleWeights);
        if (sampleWeights.Dtype != Dtype.Float32)
            throw new ArgumentException($"{loss}: sample weights must be float32; got {Tensor.DtypeName(sampleWeights.Dtype)}", nameof(sampleWeights));
        var ws = sampleWeights.ShapeArray;
        if (!(sampleWeights.Rank == 1 && ws[0] == rows || sampleWeights.Rank == 2 && ws[0] == rows && ws[1] == 1))
            throw new ShapeMismatchException($"{loss}: sample weights {Tensor.FormatShape(ws)} for logits {Tensor.FormatShape(logits.ShapeArray)}: expected [{rows}]");
        if (sampleWeights.Device != logits.Device)
            throw new DeviceMismatchException($"{loss}: logits on {logits.Device.Name} but sample weights on {sampleWeights.Device.Name}");
        return sampleWeights.Rank == 1 ? sampleWeights : sampleWeights.Reshape(rows);
    }

    /// <summary>Sparse categorical cross-entropy with int labels given on the host.</summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, ReadOnlySpan<int> labels)
    {
        var wide = new long[labels.Length];
        for (int i = 0; i < labels.Length; i++) wide[i] = labels[i];
        return SparseCategoricalCrossEntropy(logits, wide);
    }

    /// <summary>Mean absolute error: mean(|prediction - target|).</summary>
    public static Tensor MeanAbsoluteError(Tensor prediction, Tensor target)
    {
        CheckSameShape(prediction, target, "MeanAbsoluteError");
        return prediction.Sub(target).Abs().Mean();
    }

    /// <summary>
    /// The built-in loss of a Keras name: "mse" / "mean_squared_error", "mae" / "mean_absolute_error",
    /// "binary_crossentropy" (probabilities), "categorical_crossentropy" and "sparse_categorical_crossentropy"
    /// (both from logits, as PyTorch's CrossEntropyLoss: Keras's from_logits=True). An unknown name throws
    /// listing the known ones.
    /// </summary>
    public static LossFunction FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "mse" or "mean_squared_error" => MeanSquaredError,
            "mae" or "mean_absolute_error" => MeanAbsoluteError,
            "binary_crossentropy" => BinaryCrossEntropy,
            "categorical_crossentropy" => CategoricalCrossEntropy,
            "sparse_categorical_crossentropy" => SparseCategoricalCrossEntropy,
            _ => throw new ArgumentException(
                $"unknown loss '{name}'; the built-in losses are: {string.Join(", ", KnownNames)}", nameof(name)),
        };
    }

    /// <summary>The names <see cref="FromName"/> knows.</summary>
    public static IReadOnlyList<string> KnownNames { get; } = new[]
    {
        "mse", "mean_squared_error", "mae", "mean_absolute_error", "binary_crossentropy", "categorical_crossentropy",
        "sparse_categorical_crossentropy",
    };

    private static void CheckSameShape(Tensor a, Tensor b, string loss)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.ShapeArray.AsSpan().SequenceEqual(b.ShapeArray))
            throw new ShapeMismatchException($"{loss}: prediction {Tensor.FormatShape(a.ShapeArray)} and target {Tensor.FormatShape(b.ShapeArray)} differ in shape");
        Tensor.CheckSameDtype(loss, a, b);  // an int target for a float loss: named here rather than by the first op inside
    }
}
