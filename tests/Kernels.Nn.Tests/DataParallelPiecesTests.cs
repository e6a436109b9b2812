using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The pieces of data-parallel training that live in Kernels.Nn (no MPI): the per-leaf gradient hook
/// (<see cref="Tensor.OnGradientAccumulated"/>) and the shard sampler (<see cref="DistributedSampler"/>).
/// The MPI side runs under mpirun in scripts/ci-mpi.sh.
/// </summary>
[TestFixture]
public class DataParallelPiecesTests
{
    [Test]
    public void Gradient_hook_fires_once_per_backward_with_the_final_gradient_of_a_leaf_used_twice()
    {
        using var w = Tensor.FromArray(new float[] { 1, 2, 3 });
        w.RequiresGrad = true;
        var seen = new List<float[]>();
        using var hook = w.OnGradientAccumulated(t => seen.Add(t.Grad!.ToArray()));
        // y = sum(w * w) + sum(3 w): two paths into w, gradient 2 w + 3.
        using (var y = w.Mul(w).Sum().Add(w.Mul(3f).Sum())) y.Backward();
        Assert.That(seen, Has.Count.EqualTo(1), "one call per Backward, after both paths");
        Assert.That(seen[0], Is.EqualTo(new float[] { 5, 7, 9 }));
        // A second Backward accumulates: the hook sees the sum.
        using (var y = w.Sum()) y.Backward();
        Assert.That(seen, Has.Count.EqualTo(2));
        Assert.That(seen[1], Is.EqualTo(new float[] { 6, 8, 10 }));
    }

    [Test]
    public void Gradient_hooks_fire_last_layer_first_and_stop_when_disposed()
    {
        var net = new Sequential(new Dense(4, 3, seed: 1), Activation.Relu(), new Dense(3, 2, seed: 2));
        var order = new List<string>();
        var hooks = net.NamedParameters().Select(p => p.Tensor.OnGradientAccumulated(_ => order.Add(p.Name))).ToList();
        using (var x = Tensor.FromArray(new float[] { 1, -2, 3, 0.5f, 0, 1, -1, 2 }, new long[] { 2, 4 }))
        using (var y = net.Forward(x).Sum()) y.Backward();
        var names = net.NamedParameters().Select(p => p.Name).ToArray();
        Assert.That(order, Is.EquivalentTo(names), "every parameter once");
        // The second layer's parameters are ready before any of the first layer's (what lets buckets start early).
        int lastOfSecond = order.FindLastIndex(n => n.StartsWith(names[2][..names[2].IndexOf('.')], StringComparison.Ordinal));
        int firstOfFirst = order.FindIndex(n => n.StartsWith(names[0][..names[0].IndexOf('.')], StringComparison.Ordinal));
        Assert.That(lastOfSecond, Is.LessThan(firstOfFirst), $"order: {string.Join(", ", order)}");
        foreach (var h in hooks) h.Dispose();
        order.Clear();
        using (var x = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, new long[] { 1, 4 }))
        using (var y = net.Forward(x).Sum()) y.Backward();
        Assert.That(order, Is.Empty);
        net.Dispose();
    }

    [Test]
    public void Gradient_hook_on_a_computed_tensor_is_refused()
    {
        using var w = Tensor.FromArray(new float[] { 1, 2 });
        w.RequiresGrad = true;
        using var y = w.Mul(2f);
        Assert.That(() => y.OnGradientAccumulated(_ => { }), Throws.InvalidOperationException.With.Message.Contains("only a leaf"));
    }

    [TestCase(10, 3, true)]
    [TestCase(12, 4, false)]
    [TestCase(7, 2, true)]
    [TestCase(1, 3, false)]
    public void Sampler_shards_cover_one_shared_permutation_padded_to_equal_length(int count, int ranks, bool shuffle)
    {
        var shards = Enumerable.Range(0, ranks).Select(r => new DistributedSampler(count, r, ranks, shuffle, seed: 5).Indices(epoch: 2)).ToArray();
        int per = (count + ranks - 1) / ranks;
        Assert.That(shards.Select(s => s.Length), Is.All.EqualTo(per));
        // Interleaving the shards gives the permutation DataLoader would use for that epoch, then its first samples again.
        var order = Enumerable.Range(0, count).ToArray();
        if (shuffle) new Random(5 + 2).Shuffle(order);
        for (int i = 0; i < per * ranks; i++)
            Assert.That(shards[i % ranks][i / ranks], Is.EqualTo(order[i % count]), $"position {i}");
        Assert.That(shards.SelectMany(s => s).Distinct().Count(), Is.EqualTo(count), "every sample visited");
    }

    [Test]
    public void Sampler_draws_a_new_order_each_epoch_and_refuses_bad_ranks()
    {
        var s = new DistributedSampler(50, 1, 2, shuffle: true, seed: 3);
        Assert.That(s.Indices(0), Is.Not.EqualTo(s.Indices(1)));
        Assert.That(s.Indices(4), Is.EqualTo(new DistributedSampler(50, 1, 2, shuffle: true, seed: 3).Indices(4)), "the same seed and epoch on another rank object: the same shard");
        Assert.That(() => new DistributedSampler(50, 2, 2), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("rank 2 is not in 0 .. 1"));
        Assert.That(() => new DistributedSampler(0, 0, 1), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void DataLoader_with_a_sampler_batches_this_ranks_shard()
    {
        var x = Enumerable.Range(0, 10).Select(i => (float)i).ToArray();
        var data = new ArrayDataset(x, new long[] { 1 }, x.Select(v => (long)v).ToArray());
        var sampler = new DistributedSampler(10, 1, 3, shuffle: false);
        var loader = new DataLoader(data, 2, sampler);
        Assert.That(loader.BatchCount, Is.EqualTo(2));
        var seen = new List<float>();
        foreach (var b in loader.Batches()) { seen.AddRange(b.Inputs.ToArray()); b.Dispose(); }
        Assert.That(seen, Is.EqualTo(new float[] { 1, 4, 7, 0 }), "rank 1 of 3: positions 1, 4, 7, 10 (padding wraps to 0)");
        Assert.That(() => new DataLoader(data, 2, new DistributedSampler(11, 0, 2)), Throws.ArgumentException.With.Message.Contains("11 samples"));
    }

    /// <summary>Records what Fit asks of the data-parallel runtime; averaging doubles the loss so the test sees it was applied.</summary>
    private sealed class FakeParallel(int rank, int worldSize) : IDataParallel
    {
        public int Rank => rank;
        public int WorldSize => worldSize;
        public int Synchronized, Averaged;
        public void SynchronizeGradients() => Synchronized++;
        public void AverageLogs(IDictionary<string, double> logs)
        {
            Averaged++;
            logs["loss"] *= 2;
        }
    }

    [Test]
    public void Fit_with_DataParallel_trains_the_ranks_shard_syncs_each_step_averages_logs_and_leaves_checkpoints_to_rank_0()
    {
        var x = Enumerable.Range(0, 40).Select(i => (float)Math.Sin(i)).ToArray();
        var data = new ArrayDataset(x, new long[] { 2 }, Enumerable.Range(0, 20).Select(i => (long)(i % 2)).ToArray());
        var network = new Sequential(new Dense(2, 2, seed: 1));
        using var model = new Model(network);
        model.Compile(new Sgd(network.Parameters(), 0.1f), Losses.SparseCategoricalCrossEntropy);
        var fake = new FakeParallel(rank: 1, worldSize: 2);
        model.DataParallel = fake;
        string dir = Path.Combine(Path.GetTempPath(), $"ddp-fit-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var output = new StringWriter();
            var console = Console.Out;
            Console.SetOut(output);
            History history;
            try
            {
                history = model.Fit(data, epochs: 2, batchSize: 4, verbose: 1,
                                    callbacks: new Callback[] { new ModelCheckpoint(Path.Combine(dir, "w{epoch}.bin"), monitor: "loss") });
            }
            finally
            {
                Console.SetOut(console);
            }
            // Rank 1 of 2 trains 10 of the 20 samples: 3 batches of 4 per epoch, one gradient sync each.
            Assert.That(fake.Synchronized, Is.EqualTo(6));
            Assert.That(fake.Averaged, Is.EqualTo(2), "once per epoch");
            Assert.That(history["loss"], Has.Count.EqualTo(2));
            Assert.That(output.ToString(), Is.Empty, "rank 1 prints no progress");
            Assert.That(Directory.GetFiles(dir), Is.Empty, "rank 1 writes no checkpoint");

            // The same on rank 0 writes the checkpoints and prints.
            model.DataParallel = new FakeParallel(rank: 0, worldSize: 2);
            Console.SetOut(output);
            try { model.Fit(data, epochs: 1, batchSize: 4, verbose: 1, callbacks: new Callback[] { new ModelCheckpoint(Path.Combine(dir, "w{epoch}.bin"), monitor: "loss") }); }
            finally { Console.SetOut(console); }
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EqualTo(new[] { "w1.bin" }));
            Assert.That(output.ToString(), Does.Contain("Epoch 1/1"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
