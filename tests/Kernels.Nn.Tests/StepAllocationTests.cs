using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// What one training step of the MNIST MLP (samples/Common/MnistNetworks.cs: 784-512-256-10, ReLU,
/// dropout, Adam, batch 128) allocates once it is warm: managed bytes on the training thread, and
/// device memory, which must come from the caching allocator's kept blocks every step.
/// </summary>
[TestFixture]
public class StepAllocationTests
{
    const int Batch = 128, WarmUp = 5, Steps = 20;

    /// <summary>
    /// Measured on the CPU device: ~20 KB per step (the autograd graph: a Tensor, its storage and its
    /// node per intermediate, closures for the backward rules, the DisposeScope's list) and 34 buffer
    /// allocations, all served by the caching allocator. The managed bound, 64 KB, is three times
    /// that for runtime variation; a per-step array the size of a batch (400 KB) or of a layer's
    /// weights fails it.
    /// </summary>
    [Test]
    public void A_warm_MLP_step_allocates_little_managed_memory_and_no_new_device_memory()
    {
        var device = Device.Cpu;
        using var network = MnistNetworks.Mlp(device);
        network.Train();
        using var optimizer = new Adam(network.Parameters(), learningRate: 1e-3f);
        var random = new Random(3);
        var pixels = new float[Batch * 784];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)random.NextDouble();
        using var input = Tensor.FromArray(pixels, new long[] { Batch, 784 }, device);
        using var labels = Tensor.FromArray(Enumerable.Range(0, Batch).Select(i => (long)(i % 10)).ToArray(), device);

        void Step()
        {
            using var scope = new DisposeScope();
            optimizer.ZeroGrad();
            Tensor loss = Losses.SparseCategoricalCrossEntropy(network.Forward(input), labels);
            loss.Backward();
            optimizer.Step();
        }

        for (int i = 0; i < WarmUp; i++) Step();
        var (hitsBefore, allocationsBefore) = device.GetAllocationCounts();
        long managedBefore = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Steps; i++) Step();
        long managedPerStep = (GC.GetAllocatedBytesForCurrentThread() - managedBefore) / Steps;
        var (hitsAfter, allocationsAfter) = device.GetAllocationCounts();
        TestContext.Out.WriteLine($"per step: {managedPerStep} managed bytes, {(double)(hitsAfter - hitsBefore) / Steps} cache hits, " +
                                  $"{(double)(allocationsAfter - allocationsBefore) / Steps} device allocations");

        Assert.That(allocationsAfter - allocationsBefore, Is.EqualTo(0), "device allocations in warm steps: every buffer should come from the cache");
        Assert.That(hitsAfter - hitsBefore, Is.GreaterThan(Steps * 10), "a step's intermediates are allocated (from the cache), so the counter moves");
        Assert.That(managedPerStep, Is.LessThan(64 * 1024), "managed bytes per warm step");
    }

    /// <summary>
    /// The DataLoader assembles batches into two host staging areas it reuses, so what one more batch
    /// costs is small: measured as the difference between an epoch of 80 batches and one of 40 (the
    /// per-epoch costs, the shuffled order and the two staging areas, cancel), over all threads
    /// (the assembly runs on the thread pool). Measured: ~1 KB per batch (the tensors, the task, the
    /// Batch); before the staging areas, 402 KB (a new 128 x 784 float array per batch, on the large
    /// object heap). The bound, 16 KB per batch, fails for any per-batch array of the batch's features.
    /// </summary>
    [Test]
    public void The_DataLoader_reuses_its_host_staging_between_batches()
    {
        long EpochBytes(int batches)
        {
            int samples = batches * Batch;
            var features = new float[samples * 784];
            var targets = new long[samples];
            for (int i = 0; i < samples; i++) targets[i] = i % 10;
            var loader = new DataLoader(new ArrayDataset(features, new long[] { 784 }, targets), Batch, shuffle: true, seed: 1);
            foreach (var batch in loader.Batches()) batch.Dispose();  // warm-up epoch (JIT, thread pool)
            long before = GC.GetTotalAllocatedBytes(precise: true);
            int seen = 0;
            foreach (var batch in loader.Batches())
            {
                seen++;
                batch.Dispose();
            }
            long bytes = GC.GetTotalAllocatedBytes(precise: true) - before;
            Assert.That(seen, Is.EqualTo(batches));
            return bytes;
        }

        EpochBytes(40);  // JIT of everything once
        long small = EpochBytes(40), large = EpochBytes(80);
        long perBatch = (large - small) / 40;
        TestContext.Out.WriteLine($"epoch of 40 batches: {small} bytes, of 80: {large} bytes; per extra batch: {perBatch} managed bytes (all threads)");
        Assert.That(perBatch, Is.LessThan(16 * 1024), "managed bytes per extra batch, all threads");
    }

    [Test]
    public void The_DataLoader_batches_hold_the_samples_in_order_across_the_staging_areas()
    {
        // Five batches of 3 (the last one of 1): feature i is [i, -i], target i % 7; unshuffled, each
        // batch must hold its own samples even though batches 1, 3 and 5 share a staging area.
        const int samples = 13;
        var features = Enumerable.Range(0, samples).SelectMany(i => new[] { (float)i, -i }).ToArray();
        var targets = Enumerable.Range(0, samples).Select(i => (long)(i % 7)).ToArray();
        var loader = new DataLoader(new ArrayDataset(features, new long[] { 2 }, targets), 3, shuffle: false);
        int first = 0;
        foreach (var batch in loader.Batches())
        {
            using (batch)
            {
                int size = Math.Min(3, samples - first);
                Assert.That(batch.Size, Is.EqualTo(size));
                Assert.That(batch.Inputs.Shape, Is.EqualTo(new long[] { size, 2 }));
                Assert.That(batch.Inputs.ToArray(), Is.EqualTo(Enumerable.Range(first, size).SelectMany(i => new[] { (float)i, -i }).ToArray()));
                Assert.That(batch.Targets.ToArray<long>(), Is.EqualTo(Enumerable.Range(first, size).Select(i => (long)(i % 7)).ToArray()));
                first += size;
            }
        }
        Assert.That(first, Is.EqualTo(samples));
    }
}
