namespace Kernels.Nn;

/// <summary>
/// Batch losses left on the device until someone needs a number. <c>Model.Fit</c> and
/// <see cref="Trainer.Test"/> add each batch's loss (a one-element tensor) without reading it, and read
/// every pending one in a single copy (stacked on the device, then one <see cref="Tensor.ToArray()"/>)
/// when a value is asked for: at the end of an epoch or an evaluation, for a progress-line refresh, or
/// when a callback reads its batch logs. A read waits for the device's queued work, so reading once per
/// epoch instead of once per batch lets a GPU run ahead of the host. The mean is then summed on the host
/// in double, batch by batch in order, exactly as the per-batch reads did, so the numbers are the same;
/// a NaN or infinite loss (or gradient, through the checked loss) is found at that read and reported
/// with the batch it came from.
/// </summary>
internal sealed class PendingLosses : IDisposable
{
    // Enough for any epoch of MNIST-sized data between reads; beyond it, a read (bounded memory).
    private const int MaxPending = 4096;

    /// <summary>One batch: its loss, the loss made NaN by a non-finite gradient (null: no gradient
    /// check), its sample count and its 0-based index.</summary>
    private readonly record struct Entry(Tensor Loss, Tensor? Checked, long Samples, int Batch);

    /// <summary>What a bad batch becomes: (0-based batch, its loss, whether only a gradient was
    /// non-finite, the 0-based index of the last batch read with it) -> the exception to throw.</summary>
    private readonly Func<int, double, bool, int, Exception> fault;
    private readonly List<Entry> pending = new();
    private double sum;
    private long samples;

    public PendingLosses(Func<int, double, bool, int, Exception> fault) => this.fault = fault;

    /// <summary>Keeps the batch's loss (and its gradient-checked twin, see <c>Trainer</c>) on the device:
    /// a detached view of each, owned here whatever scope is open.</summary>
    public void Add(Tensor loss, Tensor? checkedLoss, long batchSamples, int batch)
    {
        pending.Add(new Entry(Keep(loss), checkedLoss is null ? null : Keep(checkedLoss), batchSamples, batch));
        if (pending.Count >= MaxPending) Flush();
    }

    /// <summary>Sample-weighted mean loss of every batch since <see cref="Reset"/> (reads the pending ones).</summary>
    public double Mean
    {
        get
        {
            Flush();
            return samples == 0 ? double.NaN : sum / samples;
        }
    }

    /// <summary>Forgets everything added (the pending losses are freed unread).</summary>
    public void Reset()
    {
        Discard();
        sum = 0;
        samples = 0;
    }

    /// <summary>Reads the pending losses in one copy and adds them to the sum; throws the fault of the
    /// first non-finite one (the pending losses are freed either way).</summary>
    public void Flush()
    {
        if (pending.Count == 0) return;
        try
        {
            var probes = Read(pending.Select(e => e.Checked ?? e.Loss));
            float[]? losses = null;
            int last = pending[^1].Batch;
            for (int i = 0; i < pending.Count; i++)
            {
                // The checked loss equals the loss while every gradient is finite (loss + 0 * sum).
                double value = probes[i];
                if (!float.IsFinite(probes[i]))
                {
                    losses ??= Read(pending.Select(e => e.Loss));   // a second read, only on a fault
                    value = losses[i];
                    throw fault(pending[i].Batch, value, double.IsFinite(value), last);
                }
                sum += value * pending[i].Samples;
                samples += pending[i].Samples;
            }
        }
        finally
        {
            Discard();
        }
    }

    public void Dispose() => Discard();

    private static Tensor Keep(Tensor t)
    {
        var kept = t.Detach();
        DisposeScope.Untrack(kept);
        return kept;
    }

    private static float[] Read(IEnumerable<Tensor> scalars)
    {
        using var noGrad = Tensor.NoGrad();
        using var scope = new DisposeScope();
        return Tensor.Stack(scalars.Select(s => s.Reshape()).ToList()).ToArray();
    }

    private void Discard()
    {
        foreach (var e in pending)
        {
            e.Loss.Dispose();
            e.Checked?.Dispose();
        }
        pending.Clear();
    }
}
