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
    /// Sparse categorical cross-entropy of logits [N, C] against class indices in [0, C): one fused
    /// log-softmax + negative-log-likelihood kernel per direction, stable for large logits.
    /// </summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, ReadOnlySpan<long> labels) =>
        SparseCategoricalCrossEntropy(logits, labels, nameof(labels));

    /// <summary>
    /// Sparse categorical cross-entropy against a target tensor of class indices, one per row, stored
    /// as float32 as datasets yield them (<see cref="Dataset.Get"/>): so it serves as a
    /// <see cref="LossFunction"/> directly. A value that is not a whole number in [0, C) is refused
    /// with its index, never truncated.
    /// </summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(target);
        float[] values = target.ToArray();
        var labels = new long[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            // NaN fails the comparison; the upper bound C is checked with the logits, below.
            if (!(v == MathF.Floor(v)) || v < 0 || v > long.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(target), $"target {v} at index {i} is not a class index (a whole number >= 0)");
            labels[i] = (long)v;
        }
        return SparseCategoricalCrossEntropy(logits, labels, nameof(target));
    }

    private static Tensor SparseCategoricalCrossEntropy(Tensor logits, ReadOnlySpan<long> labels, string labelsName)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2) throw new ShapeMismatchException($"SparseCategoricalCrossEntropy expects logits [N, C]; got {Tensor.FormatShape(logits.ShapeArray)}");
        long rows = logits.ShapeArray[0], cols = logits.ShapeArray[1];
        if (labels.Length != rows)
            throw new ShapeMismatchException($"SparseCategoricalCrossEntropy: {labels.Length} labels for {rows} rows of logits {Tensor.FormatShape(logits.ShapeArray)}");
        if (rows == 0) throw new ArgumentException("SparseCategoricalCrossEntropy of an empty batch has no mean", labelsName);
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= cols)
                throw new ArgumentOutOfRangeException(labelsName, $"label {labels[i]} at index {i} is outside [0, {cols}) for logits {Tensor.FormatShape(logits.ShapeArray)}");

        var labelBuffer = DeviceBuffer.Allocate(logits.Device, sizeof(long) * rows);
        labelBuffer.Write(labels);
        var losses = Tensor.Empty(new[] { rows }, logits.Device);
        Ops.CrossEntropy(logits.Buffer, labelBuffer, losses.Buffer, rows, cols);
        var x = logits;
        var recorded = Tensor.Record(losses, "CrossEntropy", new[] { x },
                                     g => new Tensor?[] { Gradients.CrossEntropy(x, labelBuffer, g, rows, cols) });
        recorded.Attach(labelBuffer);   // freed with the per-row losses, after any backward pass
        return recorded.Mean();
    }

    /// <summary>Sparse categorical cross-entropy with int labels.</summary>
    public static Tensor SparseCategoricalCrossEntropy(Tensor logits, ReadOnlySpan<int> labels)
    {
        var wide = new long[labels.Length];
        for (int i = 0; i < labels.Length; i++) wide[i] = labels[i];
        return SparseCategoricalCrossEntropy(logits, wide);
    }

    private static void CheckSameShape(Tensor a, Tensor b, string loss)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.ShapeArray.AsSpan().SequenceEqual(b.ShapeArray))
            throw new ShapeMismatchException($"{loss}: prediction {Tensor.FormatShape(a.ShapeArray)} and target {Tensor.FormatShape(b.ShapeArray)} differ in shape");
    }
}
