namespace Kernels.Nn;

/// <summary>
/// A quantity accumulated over batches (Torchnet's meter / Keras's metric): Reset, Update per batch,
/// Result at the end. Classification metrics read the predicted class as the arg-max of [N, C]
/// outputs (C &gt; 1), or "output &gt;= 0.5" for one output per sample (binary, probabilities);
/// targets are class indices [N] or one-hot rows [N, C].
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

    /// <summary>Predicted and true class of each sample, and the number of classes.</summary>
    internal static (int[] Predicted, int[] Actual, int Classes) Classes(Tensor prediction, Tensor target)
    {
        var p = prediction.ToArray();
        var t = target.ToArray();
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

/// <summary>Fraction of samples whose predicted class is the true class.</summary>
public sealed class Accuracy : ConfusionMatrix
{
    /// <inheritdoc/>
    public override string Name => "accuracy";
    /// <inheritdoc/>
    public override double Result()
    {
        long total = Total, correct = 0;
        for (int c = 0; c < ClassCount; c++) correct += Count(c, c);
        return total == 0 ? double.NaN : (double)correct / total;
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
