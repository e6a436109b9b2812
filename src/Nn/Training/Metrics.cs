namespace Kernels.Nn;

/// <summary>
/// A quantity accumulated over batches (Torchnet's meter / Keras's metric): Reset, Update per batch,
/// Result at the end. Classification metrics read the predicted class as the arg-max of [N, C]
/// outputs (C &gt; 1), or "output &gt;= 0.5" for one output per sample (binary, probabilities);
/// targets are class indices [N] (int64, int32, or float32 whole numbers) or one-hot rows [N, C].
/// </summary>
public abstract class Metric
{
    /// <summary>Short name shown in progress lines and History ("accuracy").</summary>
    public abstract string Name { get; }

    /// <summary>Forgets everything seen.</summary>
    public abstract void Reset();

    /// <summary>Adds one batch.</summary>
    public abstract void Update(Tensor prediction, Tensor target);

    /// <summary>The value over everything since Reset.</summary>
    public abstract double Result();

    /// <summary>
    /// The built-in metric of a Keras name: "accuracy" (also "acc", "categorical_accuracy",
    /// "sparse_categorical_accuracy", "binary_accuracy": one <see cref="Accuracy"/> reads the kind of target),
    /// "precision", "recall", "f1" / "f1_score". An unknown name throws listing the known ones.
    /// </summary>
    public static Metric FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "accuracy" or "acc" or "categorical_accuracy" or "sparse_categorical_accuracy" or "binary_accuracy" => new Accuracy(),
            "precision" => new Precision(),
            "recall" => new Recall(),
            "f1" or "f1_score" => new F1Score(),
            _ => throw new ArgumentException($"unknown metric '{name}'; the built-in metrics are: {string.Join(", ", KnownNames)}", nameof(name)),
        };
    }

    /// <summary>The names <see cref="FromName"/> knows.</summary>
    public static IReadOnlyList<string> KnownNames { get; } = new[]
    {
        "accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy", "precision", "recall", "f1", "f1_score",
    };

    /// <summary>The values of a target tensor on the host (one read), whatever its element type.</summary>
    private static float[] TargetValues(Tensor target) => target.Dtype switch
    {
        Dtype.Int64 => Array.ConvertAll(target.ToArray<long>(), v => (float)v),
        Dtype.Int32 => Array.ConvertAll(target.ToArray<int>(), v => (float)v),
        _ => target.ToArray(),
    };

    /// <summary>Predicted and true class of each sample, and the number of classes (reads both tensors to the host).</summary>
    internal static (int[] Predicted, int[] Actual, int Classes) Classes(Tensor prediction, Tensor target)
    {
        var p = prediction.ToArray();
        var t = TargetValues(target);
        long n = prediction.Rank == 0 ? 1 : prediction.ShapeArray[0];
        long c = n == 0 ? 1 : p.Length / n;
        var predicted = new int[n];
        var actual = new int[n];
        int classes = c > 1 ? (int)c : 2;
        for (long i = 0; i < n; i++)
        {
            if (c > 1)
            {
                int best = 0;
                for (int j = 1; j < c; j++) if (p[i * c + j] > p[i * c + best]) best = j;
                predicted[i] = best;
            }
            else predicted[i] = p[i] >= 0.5f ? 1 : 0;
        }
        if (t.Length == n * c && c > 1)
        {
            for (long i = 0; i < n; i++)
            {
                int best = 0;
                for (int j = 1; j < c; j++) if (t[i * c + j] > t[i * c + best]) best = j;
                actual[i] = best;
            }
        }
        else if (t.Length == n)
        {
            for (long i = 0; i < n; i++)
            {
                float v = c > 1 ? t[i] : (t[i] >= 0.5f ? 1 : 0);
                if (v < 0 || v >= classes || v != MathF.Floor(v))
                    throw new ArgumentOutOfRangeException(nameof(target), $"target {t[i]} at index {i} is not a class index in [0, {classes})");
                actual[i] = (int)v;
            }
        }
        else
        {
            throw new ShapeMismatchException($"metric: prediction {Tensor.FormatShape(prediction.ShapeArray)} and target {Tensor.FormatShape(target.ShapeArray)} do not match (targets must be class indices [N] or one-hot [N, C])");
        }
        return (predicted, actual, classes);
    }
}

/// <summary>Counts of (actual class, predicted class): the basis of accuracy, precision, recall and F1.</summary>
public class ConfusionMatrix : Metric
{
    private long[,] counts = new long[0, 0];

    /// <inheritdoc/>
    public override string Name => "confusion";

    /// <summary>counts[actual, predicted].</summary>
    public long[,] Counts => (long[,])counts.Clone();

    /// <inheritdoc/>
    public override void Reset() => counts = new long[0, 0];

    /// <inheritdoc/>
    public override void Update(Tensor prediction, Tensor target)
    {
        var (predicted, actual, classes) = Classes(prediction, target);
        if (counts.GetLength(0) < classes)
        {
            var grown = new long[classes, classes];
            for (int i = 0; i < counts.GetLength(0); i++)
                for (int j = 0; j < counts.GetLength(1); j++) grown[i, j] = counts[i, j];
            counts = grown;
        }
        for (int i = 0; i < predicted.Length; i++) counts[actual[i], predicted[i]]++;
    }

    /// <summary>Samples seen.</summary>
    public override double Result() => counts.Cast<long>().Sum();

    private protected long Total => counts.Cast<long>().Sum();
    private protected int ClassCount => counts.GetLength(0);
    private protected long Count(int actual, int predicted) => counts[actual, predicted];
    private protected long PredictedAs(int c) { long s = 0; for (int a = 0; a < ClassCount; a++) s += counts[a, c]; return s; }
    private protected long ActuallyIs(int c) { long s = 0; for (int p = 0; p < ClassCount; p++) s += counts[c, p]; return s; }

    // Binary problems report the positive class (1); multi-class ones the unweighted mean over classes.
    private protected double PerClass(Func<int, double> score)
    {
        if (ClassCount == 0) return double.NaN;
        if (ClassCount == 2) return score(1);
        return Enumerable.Range(0, ClassCount).Average(score);
    }
}

/// <summary>
/// Fraction of samples whose predicted class is the true class. With integer class-index targets
/// (int64 / int32 [N]) and [N, C] outputs (C &gt; 1) it is computed on the device: arg-max, compare and a
/// running sum of hits stay there, and <see cref="Result"/> reads one number (one synchronisation per
/// Result, none per batch); <see cref="ConfusionMatrix.Counts"/> then stays empty. Other targets (float32
/// indices, one-hot rows, binary outputs) go through the host confusion matrix, one read of the
/// prediction and the target per batch. A device-path target outside [0, C) counts as a miss (not
/// detected: checking would need a read); the loss reports it (see Losses.SparseCategoricalCrossEntropy).
/// </summary>
public sealed class Accuracy : ConfusionMatrix
{
    private Tensor? deviceHits;   // float32 scalar on the device: samples predicted right so far (exact below 2^24)
    private long deviceSeen;

    /// <inheritdoc/>
    public override string Name => "accuracy";

    /// <inheritdoc/>
    public override void Reset()
    {
        base.Reset();
        deviceHits?.Dispose();
        deviceHits = null;
        deviceSeen = 0;
    }

    /// <inheritdoc/>
    public override void Update(Tensor prediction, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        ArgumentNullException.ThrowIfNull(target);
        bool onDevice = target.Dtype != Dtype.Float32 && prediction.Rank == 2 && prediction.ShapeArray[1] > 1 &&
                        target.Count == prediction.ShapeArray[0] && target.Device == prediction.Device;
        if (!onDevice)
        {
            base.Update(prediction, target);
            return;
        }
        using var noGrad = Tensor.NoGrad();
        using var scope = new DisposeScope();
        // Class indices below 2^24 are exact in float32, so comparing there is exact.
        var predicted = prediction.ArgMaxOnDevice(1).To(Dtype.Float32);
        var actual = target.Reshape(target.Count).To(Dtype.Float32);
        var hits = predicted.Eq(actual).Sum();
        var total = deviceHits is null ? hits : deviceHits.Add(hits);
        scope.Detach(total);  // the metric owns the running sum
        deviceHits?.Dispose();
        deviceHits = total;
        deviceSeen += target.Count;
    }

    /// <inheritdoc/>
    public override double Result()
    {
        long total = Total + deviceSeen;
        double correct = deviceHits?.Item() ?? 0;  // the one read of the device path
        for (int c = 0; c < ClassCount; c++) correct += Count(c, c);
        return total == 0 ? double.NaN : correct / total;
    }
}

/// <summary>Of the samples predicted as a class, the fraction that are (positive class for binary, macro mean otherwise).</summary>
public sealed class Precision : ConfusionMatrix
{
    /// <inheritdoc/>
    public override string Name => "precision";
    /// <inheritdoc/>
    public override double Result() => PerClass(c => PredictedAs(c) == 0 ? 0 : (double)Count(c, c) / PredictedAs(c));
}

/// <summary>Of the samples of a class, the fraction predicted as it (positive class for binary, macro mean otherwise).</summary>
public sealed class Recall : ConfusionMatrix
{
    /// <inheritdoc/>
    public override string Name => "recall";
    /// <inheritdoc/>
    public override double Result() => PerClass(c => ActuallyIs(c) == 0 ? 0 : (double)Count(c, c) / ActuallyIs(c));
}

/// <summary>Harmonic mean of precision and recall (positive class for binary, macro mean otherwise).</summary>
public sealed class F1Score : ConfusionMatrix
{
    /// <inheritdoc/>
    public override string Name => "f1";
    /// <inheritdoc/>
    public override double Result() => PerClass(c =>
    {
        double tp = Count(c, c), predicted = PredictedAs(c), actual = ActuallyIs(c);
        return predicted + actual == 0 ? 0 : 2 * tp / (predicted + actual);
    });
}
