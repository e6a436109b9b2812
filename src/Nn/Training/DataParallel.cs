namespace Kernels.Nn;

/// <summary>
/// What <see cref="Model.Fit(Dataset, int, int, double, Dataset?, bool, IEnumerable{Callback}?, int, int, int)"/>
/// needs from a data-parallel runtime (Kernels.Distributed's DistributedDataParallel over MPI) to train one
/// replica per process: Fit then reads this rank's shard (<see cref="DistributedSampler"/>), averages the
/// gradients before each optimizer step, averages the epoch's logs over the ranks, and leaves logging
/// and checkpoints to rank 0. Kernels.Nn itself has no MPI dependency.
/// </summary>
public interface IDataParallel
{
    /// <summary>This process's rank, 0 .. <see cref="WorldSize"/> - 1.</summary>
    int Rank { get; }
    /// <summary>The number of replicas.</summary>
    int WorldSize { get; }
    /// <summary>Makes every parameter's gradient the average over the ranks (waiting for the all-reduces
    /// started during backward). Called by Fit between backward and the optimizer step, on every rank.</summary>
    void SynchronizeGradients();
    /// <summary>Replaces each value by its average over the ranks (every rank passes the same keys).
    /// Called by Fit at each epoch end, on every rank.</summary>
    void AverageLogs(IDictionary<string, double> logs);
}
