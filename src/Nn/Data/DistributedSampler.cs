namespace Kernels.Nn;

/// <summary>
/// Which samples one rank of a data-parallel job visits each epoch (PyTorch's DistributedSampler):
/// every rank draws the same seeded permutation of all samples (the one a <see cref="DataLoader"/>
/// with the same seed uses: <c>new Random(seed + epoch).Shuffle</c>), pads it by repeating its first
/// samples to a multiple of the rank count, and takes every <see cref="WorldSize"/>-th sample from
/// position <see cref="Rank"/>. So every rank has the same number of samples and batches, and batch b
/// of all ranks together is batch b of one process with a batch that many times larger.
/// Pure arithmetic, no communication: it lives here, usable without Kernels.Distributed.
/// </summary>
public sealed class DistributedSampler
{
    /// <summary>The shard of rank <paramref name="rank"/> of <paramref name="worldSize"/> over <paramref name="datasetCount"/> samples.</summary>
    public DistributedSampler(int datasetCount, int rank, int worldSize, bool shuffle = true, int seed = 0)
    {
        if (datasetCount <= 0) throw new ArgumentOutOfRangeException(nameof(datasetCount), $"the dataset has {datasetCount} samples: nothing to shard");
        if (worldSize <= 0) throw new ArgumentOutOfRangeException(nameof(worldSize), $"world size {worldSize} must be positive");
        if (rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} is not in 0 .. {worldSize - 1}");
        DatasetCount = datasetCount;
        Rank = rank;
        WorldSize = worldSize;
        Shuffle = shuffle;
        Seed = seed;
    }

    /// <summary>Samples in the whole dataset.</summary>
    public int DatasetCount { get; }
    /// <summary>This rank.</summary>
    public int Rank { get; }
    /// <summary>The number of ranks.</summary>
    public int WorldSize { get; }
    /// <summary>Whether each epoch draws a new permutation.</summary>
    public bool Shuffle { get; }
    /// <summary>Seed of the permutation (epoch e uses seed + e), the same on every rank.</summary>
    public int Seed { get; }

    /// <summary>Samples per rank per epoch: ceil(DatasetCount / WorldSize) (the last ones repeat when it does not divide).</summary>
    public int Count => (DatasetCount + WorldSize - 1) / WorldSize;

    /// <summary>This rank's sample indices for <paramref name="epoch"/>, in visiting order.</summary>
    public int[] Indices(int epoch)
    {
        var order = Enumerable.Range(0, DatasetCount).ToArray();
        if (Shuffle) new Random(Seed + epoch).Shuffle(order);
        var mine = new int[Count];
        for (int i = 0; i < mine.Length; i++)
            mine[i] = order[(i * WorldSize + Rank) % DatasetCount];   // padding wraps to the start
        return mine;
    }
}
