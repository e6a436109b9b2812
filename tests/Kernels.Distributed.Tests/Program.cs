// Checks of Kernels.Distributed, one case per run (scripts/ci-mpi.sh starts each under
// mpirun -np 2, or without mpirun for the single-process cases). A case prints "OK <case>" and exits
// 0 when every check holds, else "FAIL <case>: <what>" and exits 1. All ranks run the same checks.
using System.Diagnostics;
using Kernels;
using Kernels.Distributed;
using Kernels.Nn;

static class Program
{
    static int failures;

    static int Main(string[] args)
    {
        string name = args.Length > 0 ? args[0] : "";
        try
        {
            switch (name)
            {
                case "collectives": Collectives(); break;
                case "allreduce-sizes": AllReduceSizes(); break;
                case "equivalence-mlp": Equivalence(cnn: false, breakSync: args.Contains("--no-sync"), inPlace: args.Contains("--in-place")); break;
                case "equivalence-cnn": Equivalence(cnn: true, breakSync: args.Contains("--no-sync"), inPlace: args.Contains("--in-place")); break;
                case "single-process": SingleProcess(); break;
                case "missing-library": MissingLibrary(); break;
                case "not-mpi": NotMpi(); break;
                case "rank-killed": Failure(kill: true); break;
                case "rank-stalls": Failure(kill: false); break;
                case "resume": Resume(); break;
                case "accumulation": Accumulation(); break;
                case "wrong-library": return WrongLibrary();
                case "bench-allreduce": BenchAllReduce(); return 0;
                default:
                    Console.Error.WriteLine("usage: Kernels.Distributed.Tests collectives|equivalence-mlp|equivalence-cnn|single-process|missing-library|not-mpi|rank-killed|rank-stalls|resume|wrong-library [--no-sync]");
                    return 2;
            }
        }
        catch (Exception e) when (e is not CollectiveTimeoutException)
        {
            Fail($"{e.GetType().Name}: {e.Message}");
        }
        var world = Mpi.Init();
        string who = world.IsMpi ? $" (rank {world.Rank} of {world.Size})" : "";
        Console.WriteLine(failures == 0 ? $"OK {name}{who}" : $"FAIL {name}{who}: {failures} check(s) failed");
        return failures == 0 ? 0 : 1;
    }

    static void Fail(string what)
    {
        failures++;
        Console.WriteLine($"  check failed: {what}");
    }

    static void Check(bool ok, string what)
    {
        if (!ok) Fail(what);
    }

    // ---- (b) collectives against hand computations -------------------------------------------------

    static void Collectives()
    {
        var w = Mpi.Init();
        Check(w.IsMpi && w.Size == 2, $"expected 2 MPI ranks, got IsMpi={w.IsMpi} Size={w.Size}");
        int n = w.Size, r = w.Rank;
        Check(w.LocalRank == r, $"local rank {w.LocalRank} on one machine should equal rank {r}");
        Console.WriteLine($"  rank {r}: {w.Library}; CUDA-aware: {w.CudaAware}");

        // Broadcast: rank 0's values everywhere, other ranks' values discarded.
        var b = r == 0 ? new float[] { 1.5f, -2f, 3.25f } : new float[] { 9f, 9f, 9f };
        w.Broadcast(b);
        Check(b.SequenceEqual(new[] { 1.5f, -2f, 3.25f }), $"broadcast float: got {string.Join(", ", b)}");
        var bl = new long[] { r == 0 ? long.MaxValue - 5 : 0 };
        w.Broadcast(bl);
        Check(bl[0] == long.MaxValue - 5, $"broadcast long: got {bl[0]}");

        // Sum: rank k contributes (k + 1) * v, so the sum is n (n + 1) / 2 * v.
        var v = new float[] { 1f, 0.5f, -2f, 0f };
        var f = v.Select(x => (r + 1) * x).ToArray();
        w.AllReduce(f);
        float tri = n * (n + 1) / 2f;
        Check(f.SequenceEqual(v.Select(x => tri * x)), $"all-reduce float sum: got {string.Join(", ", f)}, expected {string.Join(", ", v.Select(x => tri * x))}");
        var d = new double[] { 0.1 * (r + 1), -1e300 * (r + 1) };
        w.AllReduce(d);
        Check(d[0] == 0.1 * 1 + 0.1 * 2 && d[1] == -1e300 * 1 + -1e300 * 2, $"all-reduce double sum: got {d[0]}, {d[1]}");
        var l = new long[] { (1L << 40) * (r + 1), -r };
        w.AllReduce(l);
        Check(l[0] == (1L << 40) * 3 && l[1] == -1, $"all-reduce long sum: got {l[0]}, {l[1]}");
        // Max: rank k contributes k and -k.
        var m = new float[] { r, -r };
        w.AllReduce(m, ReduceOperation.Max);
        Check(m[0] == n - 1 && m[1] == 0, $"all-reduce float max: got {m[0]}, {m[1]}");
        var ml = new long[] { r * 7L };
        w.AllReduce(ml, ReduceOperation.Max);
        Check(ml[0] == 7L * (n - 1), $"all-reduce long max: got {ml[0]}");

        // Non-blocking: element i holds r + i, the sum n i + n (n - 1) / 2; polled with Test, then Wait.
        var big = new float[100_000];
        for (int i = 0; i < big.Length; i++) big[i] = r + i;
        var request = w.AllReduceAsync(big.AsMemory());
        int polls = 0;
        while (!request.Test() && polls < 1_000_000) polls++;
        request.Wait();
        bool allRight = true;
        for (int i = 0; i < big.Length && allRight; i++)
            if (big[i] != n * (float)i + n * (n - 1) / 2f) { allRight = false; Fail($"all-reduce async: element {i} = {big[i]}, expected {n * (float)i + n * (n - 1) / 2f}"); }
        Check(request.IsComplete, "async request not complete after Wait");

        // An empty all-reduce completes at once; a barrier returns on every rank.
        var empty = Array.Empty<float>();
        w.AllReduce(empty);
        w.Barrier();
    }

    // ---- (a) equivalence ----------------------------------------------------------------------------

    const int PerRankBatch = 16, Steps = 8, Seed = 7;
    const float Lr = 0.05f;

    /// <summary>
    /// All-reduce sums on any number of ranks, for counts below, at and above the rank count (Open MPI's ring,
    /// the default this library sets, splits the buffer into one chunk per rank; a count smaller than the rank
    /// count must still come out right). Values are small integers and halves: every sum is exact in float.
    /// </summary>
    static void AllReduceSizes()
    {
        var w = Mpi.Init();
        Check(w.IsMpi, "expected an MPI job");
        foreach (int count in new[] { 1, 2, 3, 4, 5, 7, 64, 1000, 100_003 })
        {
            var data = new float[count];
            for (int i = 0; i < count; i++) data[i] = (w.Rank + 1) + 0.5f * (i % 7);
            w.AllReduce(data, ReduceOperation.Sum, $"all-reduce of {count} floats");
            float ranks = w.Size * (w.Size + 1) / 2f;
            int wrong = Enumerable.Range(0, count).Count(i => data[i] != ranks + w.Size * 0.5f * (i % 7));
            Check(wrong == 0, $"{w.Size} ranks, {count} floats: {wrong} sums wrong (first {data[0]}, expected {ranks})");
            var async = new float[count];
            for (int i = 0; i < count; i++) async[i] = w.Rank == 1 ? i % 5 : -(i % 3);
            var request = w.AllReduceAsync(async, ReduceOperation.Max, $"max of {count} floats");
            request.Wait();
            int wrongMax = Enumerable.Range(0, count).Count(i => async[i] != (w.Size > 1 ? i % 5 : -(i % 3)));
            Check(wrongMax == 0, $"{w.Size} ranks, {count} floats: {wrongMax} maxima wrong");
        }
        if (w.Rank == 0) Console.WriteLine($"  all-reduce sum and max on {w.Size} ranks, 1 to 100,003 floats: exact");
    }

    static Sequential Network(bool cnn) => cnn
        ? new Sequential(
            new Reshape(1, 8, 8),
            new Conv2D(1, 4, kernelSize: 3, padding: 1, bias: false, seed: 11),
            new BatchNorm2D(4),
            Activation.Relu(),
            new MaxPool2D(2),
            new Flatten(),
            new Dense(4 * 4 * 4, 3, seed: 12))
        : new Sequential(
            new Dense(20, 32, seed: 21),
            Activation.Relu(),
            new Dense(32, 3, seed: 22));

    /// <summary>Samples drawn from a seeded generator, labels from a fixed rule so there is something to learn.</summary>
    static ArrayDataset Data(bool cnn, int count)
    {
        int features = cnn ? 64 : 20;
        var random = new Random(123);
        var x = new float[count * features];
        var y = new long[count];
        for (int i = 0; i < count; i++)
        {
            double s = 0;
            for (int j = 0; j < features; j++) { x[i * features + j] = (float)(random.NextDouble() * 2 - 1); s += x[i * features + j] * (j % 3 - 1); }
            y[i] = s > 0.5 ? 2 : s < -0.5 ? 0 : 1;
        }
        return new ArrayDataset(x, cnn ? new long[] { 64 } : new long[] { 20 }, y);
    }

    static float[][] Weights(Module network) => network.Parameters().Select(p => p.ToArray()).ToArray();

    static double MaxDifference(float[][] a, float[][] b) =>
        a.Zip(b).Max(t => t.First.Zip(t.Second).Max(u => (double)Math.Abs(u.First - u.Second)));

    /// <summary>
    /// Trains with Fit on 2 ranks (per-rank batch B, <see cref="Steps"/> steps, SGD with momentum), then
    /// rank 0 trains the same network alone and compares. MLP: one process with batch 2B through Fit.
    /// CNN with BatchNorm: BatchNorm normalises each rank's B samples with their own statistics (as
    /// PyTorch's DDP without SyncBatchNorm), so the one-process reference computes each step's gradient
    /// as the mean of the gradients of the two per-rank halves of the 2B batch; the plain 2B run is
    /// reported beside it to show the difference the per-rank statistics make.
    /// </summary>
    static void Equivalence(bool cnn, bool breakSync, bool inPlace)
    {
        var w = Mpi.Init();
        Check(w.Size == 2, $"expected 2 ranks, got {w.Size}");
        var data = Data(cnn, 2 * PerRankBatch * Steps);   // exactly Steps steps: no padding, no short batch

        var network = Network(cnn);
        var initial = Weights(network);
        // Small buckets, so that the gradients travel in several all-reduces started during backward.
        // On the CPU the buckets go through pinned host arrays by default; --in-place all-reduces the device's memory
        // (the path a CUDA-aware MPI takes on a GPU).
        using var ddp = new DistributedDataParallel(network, w, bucketBytes: 512, firstBucketBytes: 128, inPlaceOnDevice: inPlace ? true : null);
        Check(ddp.InPlaceOnDevice == inPlace, $"InPlaceOnDevice is {ddp.InPlaceOnDevice} on {network.Parameters().First().Device.Name} with --in-place {inPlace}");
        var model = new Model(network);
        model.Compile(new Sgd(network.Parameters(), Lr, momentum: 0.9f), Losses.SparseCategoricalCrossEntropy);
        // --no-sync: the negative control (gradients not averaged); the comparison must then fail.
        if (breakSync) ddp.Dispose();   // its gradient hooks gone: no bucket is ever started
        model.DataParallel = breakSync ? new NoSync(ddp) : ddp;
        var history = model.Fit(data, epochs: 1, batchSize: PerRankBatch, shuffle: true, seed: Seed, verbose: 0);
        var trained = Weights(network);

        // Every rank holds the same weights, bit for bit: same start (broadcast), same averaged gradients.
        var flat = trained.SelectMany(a => a).ToArray();
        var max = (float[])flat.Clone();
        var negMin = flat.Select(x => -x).ToArray();
        w.AllReduce(max, ReduceOperation.Max);
        w.AllReduce(negMin, ReduceOperation.Max);
        double spread = max.Zip(negMin).Max(t => (double)t.First + t.Second);
        Check(spread == 0, $"the ranks' weights differ by up to {spread:g3} after training");
        if (!breakSync)
        {
            Check(ddp.BucketCount >= 3, $"expected several gradient buckets, got {ddp.BucketCount}");
            Check(ddp.BucketsStartedDuringBackward == (long)ddp.BucketCount * Steps,
                  $"{ddp.BucketsStartedDuringBackward} of {ddp.BucketCount * Steps} bucket all-reduces started during backward (the rest waited for the optimizer step)");
        }
        double moved = MaxDifference(initial, trained);
        Check(moved > 1e-3, $"training moved the weights by only {moved:g3}: the comparison would prove nothing");

        if (w.Rank == 0)
        {
            double reference = cnn ? ReferenceHalves(data) : ReferenceFit(data);
            double error = MaxDifference(trained, referenceWeights!);
            double plain = cnn ? MaxDifference(trained, PlainDoubleBatch(data)) : error;
            Console.WriteLine($"  {(cnn ? "CNN+BatchNorm" : "MLP")}: {Steps} steps in {ddp.BucketCount} buckets ({(inPlace ? "all-reduced in device memory" : "staged through host arrays")}), 2 ranks x batch {PerRankBatch} vs 1 process: " +
                              $"max |w_2ranks - w_1process| = {error:g3} (weights moved up to {moved:g3}; loss {history["loss"][0]:F4} vs {reference:F4})" +
                              (cnn ? $"; vs plain batch {2 * PerRankBatch} (one BatchNorm over both halves): {plain:g3}" : ""));
            Check(error <= Tolerance, $"2-rank weights differ from the 1-process reference by {error:g3} > {Tolerance:g3}");
        }
        if (cnn && !breakSync) BuffersFromRankZero(w, inPlace);
        w.Barrier();
    }

    /// <summary>
    /// BatchNorm's running statistics after a synchronisation are rank 0's, bit for bit, on every rank (they
    /// ride in gradient bucket 0: rank 0 adds its values, the others zeros). Each rank first runs a forward
    /// pass on its own data, so the statistics differ per rank before the synchronisation (checked: the
    /// control); with BroadcastBuffers off they stay per rank.
    /// </summary>
    static void BuffersFromRankZero(Mpi w, bool inPlace)
    {
        foreach (bool broadcast in new[] { true, false })
        {
            var network = Network(true);
            using var ddp = new DistributedDataParallel(network, w, bucketBytes: 512, firstBucketBytes: 128, inPlaceOnDevice: inPlace) { BroadcastBuffers = broadcast };
            var buffers = network.NamedBuffers().Select(b => b.Tensor).Where(t => t.Dtype == Dtype.Float32).ToArray();
            Check(buffers.Length > 0, "the CNN has BatchNorm buffers to synchronise");
            var data = Data(true, 8 * (w.Rank + 1));   // per-rank data: different batch statistics
            var x = new float[8 * 64];
            var y = new long[8];
            for (int i = 0; i < 8; i++) data.Get(8 * w.Rank + i, x.AsSpan(i * 64, 64), y.AsSpan(i, 1));
            using (var scope = new DisposeScope())
            {
                Losses.SparseCategoricalCrossEntropy(network.Forward(Tensor.FromArray(x, new long[] { 8, 64 })),
                                                     Tensor.FromArray(y, new long[] { 8 })).Backward();
            }
            var own = buffers.SelectMany(b => b.ToArray()).ToArray();
            var rootValues = (float[])own.Clone();
            w.Broadcast(rootValues, 0, "rank 0's buffers before the synchronisation");
            Check(w.Rank == 0 || !own.SequenceEqual(rootValues), "control: rank 1's own running statistics already equal rank 0's, the check would prove nothing");
            ddp.SynchronizeGradients();
            var after = buffers.SelectMany(b => b.ToArray()).ToArray();
            if (broadcast)
                Check(after.SequenceEqual(rootValues), $"rank {w.Rank}: after the synchronisation the running statistics are not rank 0's " +
                      $"(first values {string.Join(", ", after.Take(4))} against rank 0's {string.Join(", ", rootValues.Take(4))})");
            else
                Check(after.SequenceEqual(own), $"rank {w.Rank}: with BroadcastBuffers off the synchronisation changed this rank's running statistics");
        }
        if (w.Rank == 0) Console.WriteLine("  BatchNorm running statistics after a synchronisation: rank 0's on both ranks (bit for bit); per rank with BroadcastBuffers off");
    }

    // float32: the two runs sum the same products in a different order (per-rank sums then the average,
    // against one sum over 2B), about 1e-7 relative per step; 8 momentum steps stay far below 1e-5.
    const double Tolerance = 1e-5;
    static float[][]? referenceWeights;

    static double ReferenceFit(ArrayDataset data)
    {
        var network = Network(false);
        var model = new Model(network);
        model.Compile(new Sgd(network.Parameters(), Lr, momentum: 0.9f), Losses.SparseCategoricalCrossEntropy);
        var history = model.Fit(data, epochs: 1, batchSize: 2 * PerRankBatch, shuffle: true, seed: Seed, verbose: 0);
        referenceWeights = Weights(network);
        return history["loss"][0];
    }

    /// <summary>One process, each step: the 2B batch of Fit's order, split as the sampler splits it
    /// (rank r gets positions r, r + 2, ...), half a loss each, backward on both, one step.</summary>
    static double ReferenceHalves(ArrayDataset data)
    {
        var network = Network(true);
        var optimizer = new Sgd(network.Parameters(), Lr, momentum: 0.9f);
        var order = Enumerable.Range(0, data.Count).ToArray();
        new Random(Seed).Shuffle(order);   // epoch 0 of the sampler and of DataLoader
        double lossSum = 0;
        var x = new float[PerRankBatch * 64];
        var y = new long[PerRankBatch];
        for (int s = 0; s < Steps; s++)
        {
            optimizer.ZeroGrad();
            for (int r = 0; r < 2; r++)
            {
                using var scope = new DisposeScope();
                for (int i = 0; i < PerRankBatch; i++)
                    data.Get(order[2 * PerRankBatch * s + 2 * i + r], x.AsSpan(i * 64, 64), y.AsSpan(i, 1));
                var loss = Losses.SparseCategoricalCrossEntropy(network.Forward(Tensor.FromArray(x, new long[] { PerRankBatch, 64 })),
                                                                Tensor.FromArray(y, new long[] { PerRankBatch }));
                lossSum += loss.Item() / 2;
                loss.Mul(0.5f).Backward();
            }
            optimizer.Step();
        }
        referenceWeights = Weights(network);
        return lossSum / Steps;
    }

    /// <summary>
    /// Gradient accumulation: each rank trains its B samples of a step as two micro-batches of B / 2 (the first
    /// backward inside NoSync, the second outside, each loss halved), one all-reduce per step; the weights must
    /// equal 1 process x batch 2B through Fit (the MLP reference of equivalence-mlp).
    /// </summary>
    static void Accumulation()
    {
        var w = Mpi.Init();
        Check(w.Size == 2, $"expected 2 ranks, got {w.Size}");
        var data = Data(false, 2 * PerRankBatch * Steps);
        var network = Network(false);
        using var ddp = new DistributedDataParallel(network, w, bucketBytes: 512, firstBucketBytes: 128);
        var optimizer = new Sgd(network.Parameters(), Lr, momentum: 0.9f);
        var order = Enumerable.Range(0, data.Count).ToArray();
        new Random(Seed).Shuffle(order);   // epoch 0 of the sampler and of DataLoader
        int half = PerRankBatch / 2;
        var x = new float[half * 20];
        var y = new long[half];
        for (int s = 0; s < Steps; s++)
        {
            optimizer.ZeroGrad();
            for (int part = 0; part < 2; part++)
            {
                using var noSync = part == 0 ? ddp.NoSync() : null;
                using var scope = new DisposeScope();
                for (int i = 0; i < half; i++)   // the sampler's shard: rank r gets positions r, r + 2, ... of the step's 2B
                    data.Get(order[2 * PerRankBatch * s + 2 * (part * half + i) + w.Rank], x.AsSpan(i * 20, 20), y.AsSpan(i, 1));
                Losses.SparseCategoricalCrossEntropy(network.Forward(Tensor.FromArray(x, new long[] { half, 20 })),
                                                     Tensor.FromArray(y, new long[] { half })).Mul(0.5f).Backward();
                if (part == 0)
                {
                    try { ddp.SynchronizeGradients(); Fail("SynchronizeGradients inside NoSync was accepted"); }
                    catch (InvalidOperationException e) { Check(e.Message.Contains("NoSync"), $"the refusal names NoSync: {e.Message}"); }
                }
            }
            ddp.SynchronizeGradients();
            optimizer.Step();
        }
        Check(ddp.BucketsStartedDuringBackward == (long)ddp.BucketCount * Steps,
              $"{ddp.BucketsStartedDuringBackward} bucket all-reduces started during backward, expected {ddp.BucketCount * Steps} (one per bucket per step, by the last backward)");
        var trained = Weights(network);
        if (w.Rank == 0)
        {
            ReferenceFit(data);
            double error = MaxDifference(trained, referenceWeights!);
            Console.WriteLine($"  MLP, 2 ranks x 2 accumulated micro-batches of {half} vs 1 process x batch {2 * PerRankBatch}: max |w difference| = {error:g3}");
            Check(error <= Tolerance, $"accumulated 2-rank weights differ from the 1-process reference by {error:g3} > {Tolerance:g3}");
        }
        w.Barrier();
    }

    static float[][] PlainDoubleBatch(ArrayDataset data)
    {
        var network = Network(true);
        var model = new Model(network);
        model.Compile(new Sgd(network.Parameters(), Lr, momentum: 0.9f), Losses.SparseCategoricalCrossEntropy);
        model.Fit(data, epochs: 1, batchSize: 2 * PerRankBatch, shuffle: true, seed: Seed, verbose: 0);
        return Weights(network);
    }

    /// <summary>The negative control: shards and log averaging as DDP, gradients left per rank.</summary>
    sealed class NoSync(DistributedDataParallel inner) : IDataParallel
    {
        public int Rank => inner.Rank;
        public int WorldSize => inner.WorldSize;
        public void SynchronizeGradients() { }
        public void AverageLogs(IDictionary<string, double> logs) => inner.AverageLogs(logs);
    }

    // ---- single process, no MPI ---------------------------------------------------------------------

    static void SingleProcess()
    {
        Check(!Mpi.LaunchedByMpi(), "this case runs without mpirun");
        var w = Mpi.Init();
        Check(!w.IsMpi && w.Size == 1 && w.Rank == 0, $"expected a world of one without MPI, got IsMpi={w.IsMpi} Size={w.Size} Rank={w.Rank}");
        var f = new float[] { 1, 2, 3 };
        w.AllReduce(f);
        w.AllReduce(f, ReduceOperation.Max);
        w.Broadcast(f);
        w.Barrier();
        var request = w.AllReduceAsync(f.AsMemory());
        Check(request.Test(), "a world of one completes at once");
        request.Wait();
        Check(f.SequenceEqual(new float[] { 1, 2, 3 }), $"collectives of one process must leave the data: got {string.Join(", ", f)}");

        // Fit with DistributedDataParallel in a world of one equals Fit alone, bit for bit.
        var data = Data(false, 96);
        float[][] Train(bool parallel)
        {
            var network = Network(false);
            using var ddp = parallel ? new DistributedDataParallel(network, w) : null;
            var model = new Model(network) { DataParallel = ddp };
            model.Compile(new Sgd(network.Parameters(), Lr, momentum: 0.9f), Losses.SparseCategoricalCrossEntropy);
            model.Fit(data, epochs: 2, batchSize: 16, seed: Seed, verbose: 0);
            return Weights(network);
        }
        double difference = MaxDifference(Train(true), Train(false));
        Check(difference == 0, $"DDP in a world of one changed training: weights differ by {difference:g3}");

        // Which memory MPI may be handed: the CPU's always; OpenCL's never (a cl_mem is a handle), refused by name.
        Check(w.CanAllReduceInPlace(Device.Cpu, out _), "a CPU buffer can be all-reduced in place");
        using (var cpuDefault = new DistributedDataParallel(Network(false), w))
        using (var cpuInPlace = new DistributedDataParallel(Network(false), w, inPlaceOnDevice: true))
            Check(!cpuDefault.InPlaceOnDevice && cpuInPlace.InPlaceOnDevice, $"on the CPU: staged by default (got in place {cpuDefault.InPlaceOnDevice}), in place when asked (got {cpuInPlace.InPlaceOnDevice})");
        using (var cpuBuffer = DeviceBuffer.FromArray(Device.Cpu, new float[] { 4, 5 }))
            w.AllReduceAsync(cpuBuffer, 2).Wait();
        if (Device.All.FirstOrDefault(d => d.Kind == DeviceKind.OpenCL) is { } opencl)
        {
            Check(!w.CanAllReduceInPlace(opencl, out var why) && why.Contains("OpenCL"), $"OpenCL memory refused with a reason naming OpenCL, got '{why}'");
            using var clBuffer = DeviceBuffer.FromArray(opencl, new float[] { 1, 2 });
            try { w.AllReduceAsync(clBuffer, 2); Fail("an OpenCL buffer was accepted for an in-place all-reduce"); }
            catch (NotSupportedException e) { Check(e.Message.Contains(opencl.Name), $"the refusal names the device: {e.Message}"); }
            var network = Network(false).To(opencl);
            try { using var _ = new DistributedDataParallel(network, w, inPlaceOnDevice: true); Fail("DDP in device memory was accepted on OpenCL"); }
            catch (NotSupportedException e) { Check(e.Message.Contains("OpenCL"), $"the DDP refusal says why: {e.Message}"); }
            using var staged = new DistributedDataParallel(network, w);
            Check(!staged.InPlaceOnDevice, "on OpenCL DDP stages through host memory by itself");
        }
    }

    static void MissingLibrary()
    {
        // Pretend mpirun started us, with a library that does not exist.
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_SIZE", "2");
        Environment.SetEnvironmentVariable("KERNELS_MPI_LIBRARY", "/nonexistent/libmpi.so.40");
        try
        {
            Mpi.Init();
            Fail("Init found an MPI library at /nonexistent");
        }
        catch (MpiNotFoundException e)
        {
            Console.WriteLine($"  {e.Message}");
            Check(e.Tried.SequenceEqual(new[] { "/nonexistent/libmpi.so.40" }), $"tried: {string.Join(", ", e.Tried)}");
            Check(e.Message.Contains("/nonexistent/libmpi.so.40") && e.Message.Contains("openmpi-bin libopenmpi-dev") && e.Message.Contains("mpich libmpich12"),
                  "the message names the library tried and the packages");
        }
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_SIZE", null);
        Environment.SetEnvironmentVariable("KERNELS_MPI_LIBRARY", null);
    }

    static void NotMpi()
    {
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_SIZE", "2");
        Environment.SetEnvironmentVariable("KERNELS_MPI_LIBRARY", "libc.so.6");
        try
        {
            Mpi.Init();
            Fail("Init accepted libc.so.6 as an MPI library");
        }
        catch (MpiNotFoundException e) { Fail($"libc.so.6 should load and be refused as not an MPI library: {e.Message}"); }
        catch (MpiException e)
        {
            Console.WriteLine($"  {e.Message}");
            Check(e.Message.Contains("libc.so.6 is neither Open MPI") && e.Message.Contains("nor an MPICH-ABI library"), "the message says the library is neither Open MPI nor MPICH");
        }
        Environment.SetEnvironmentVariable("OMPI_COMM_WORLD_SIZE", null);
        Environment.SetEnvironmentVariable("KERNELS_MPI_LIBRARY", null);
    }

    /// <summary>
    /// Started by one MPI's launcher with the other MPI's library (KERNELS_MPI_LIBRARY, set by the script):
    /// each process would initialise a world of its own and train alone. Init must refuse, naming both sizes.
    /// Returns the exit code itself: Main's closing Mpi.Init would throw again.
    /// </summary>
    static int WrongLibrary()
    {
        try
        {
            var w = Mpi.Init();
            Fail($"Init accepted {w.Library} with a world of {w.Size}");
        }
        catch (MpiException e) when (e is not MpiNotFoundException)
        {
            Console.WriteLine($"  {e.Message}");
            Check(e.Message.Contains("sees a world of 1 process(es) but the launcher started 2") && e.Message.Contains("different MPIs"),
                  "the message says the library's world is not the launcher's");
        }
        Console.WriteLine(failures == 0 ? "OK wrong-library" : $"FAIL wrong-library: {failures} check(s) failed");
        return failures == 0 ? 0 : 1;
    }

    // ---- all-reduce timing (scripts/bench-mpi-allreduce.sh; not a check) ----------------------------

    /// <summary>Mpi.AllReduce (MPI_Iallreduce + MPI_Test polling) for the sizes and repetitions of
    /// benchmarks/mpi/allreduce_bench.c, median of 5 batches, in the same format.</summary>
    static void BenchAllReduce()
    {
        var w = Mpi.Init();
        for (long n = 1024; n <= (16L << 20); n *= 4)
        {
            var x = GC.AllocateArray<float>((int)n, pinned: true);
            for (int i = 0; i < n; i++) x[i] = i;
            int reps = n <= 65536 ? 200 : n <= (1L << 20) ? 40 : 8;
            var t = new double[5];
            for (int b = 0; b < 5; b++)
            {
                w.Barrier();
                var watch = Stopwatch.StartNew();
                for (int r = 0; r < reps; r++) w.AllReduce(x.AsSpan());
                t[b] = watch.Elapsed.TotalSeconds / reps;
            }
            Array.Sort(t);
            if (w.Rank == 0) Console.WriteLine($"C# Mpi.AllReduce {n,9} floats {t[2] * 1e6,10:F1} us {n * 4.0 / t[2] / 1e9,7:F2} GB/s");
        }
    }

    // ---- (c) a rank dies or stalls mid-run ----------------------------------------------------------

    /// <summary>
    /// Trains with Fit on 2 ranks; at batch 3 rank 1 either kills itself (SIGKILL: mpirun notices and
    /// ends the job naming rank 1) or stops answering (sleeps: rank 0's next gradient all-reduce times
    /// out after Mpi.Timeout, KERNELS_MPI_TIMEOUT_S in the script, with a CollectiveTimeoutException
    /// naming rank 1, and MPI_Abort ends the job). Either way the job must not finish.
    /// </summary>
    static void Failure(bool kill)
    {
        var w = Mpi.Init();
        var network = Network(false);
        var ddp = new DistributedDataParallel(network, w);
        var model = new Model(network) { DataParallel = ddp };
        model.Compile(new Sgd(network.Parameters(), Lr), Losses.SparseCategoricalCrossEntropy);
        var callback = new LambdaCallback
        {
            BatchEnd = (batch, _) =>
            {
                // The last rank (rank 1 of 2; rank 2 of 3, where rank 1 keeps waiting and must not be named).
                if (w.Rank != w.Size - 1 || batch != 2) return;
                Console.WriteLine($"  rank {w.Rank}: {(kill ? "killing itself" : "stalling")} after batch 3 (pid {Environment.ProcessId})");
                Console.Out.Flush();
                if (kill) Process.GetCurrentProcess().Kill();
                else Thread.Sleep(TimeSpan.FromMinutes(10));
            },
        };
        model.Fit(Data(false, 2 * PerRankBatch * Steps), epochs: 5, batchSize: PerRankBatch, callbacks: new[] { callback }, verbose: 0);
        Fail($"training finished although rank {w.Size - 1} died");
    }

    // ---- a restarted job resumes from the last backup ----------------------------------------------

    // 4 epochs straight, against 2 epochs, a crash, and new objects restored from the backup (written by
    // rank 0, read by every rank) for 2 more: every rank ends with the uninterrupted run's weights, bit for bit.
    static void Resume()
    {
        var w = Mpi.Init();
        Check(w.Size == 2, $"expected 2 ranks, got {w.Size}");
        var data = Data(false, 2 * PerRankBatch * 4);
        // One file name for the job: rank 0's random number, broadcast.
        var id = new long[] { Random.Shared.NextInt64(1L << 40) };
        w.Broadcast(id.AsSpan());
        string path = Path.Combine(Path.GetTempPath(), $"kn-resume-{id[0]}.safetensors");

        float[][] Run(Callback[] callbacks, out BackupAndRestore? backup)
        {
            var network = Network(false);
            using var ddp = new DistributedDataParallel(network, w);
            var model = new Model(network) { DataParallel = ddp };
            model.Compile(new Adam(network.Parameters(), 0.01f), Losses.SparseCategoricalCrossEntropy);
            backup = callbacks.OfType<BackupAndRestore>().FirstOrDefault();
            model.Fit(data, epochs: 4, batchSize: PerRankBatch, seed: Seed, verbose: 0, callbacks: callbacks);
            return Weights(network);
        }
        var straight = Run(Array.Empty<Callback>(), out _);
        var crash = new LambdaCallback { EpochEnd = (epoch, _) => { if (epoch == 1) throw new IOException("simulated crash after epoch 2"); } };
        try
        {
            Run(new Callback[] { new BackupAndRestore(path), crash }, out _);
            Fail("the crashing run finished");
        }
        catch (IOException e) when (e.Message.StartsWith("simulated crash", StringComparison.Ordinal)) { }
        w.Barrier();   // a restarted job starts after rank 0 wrote: here, after its epoch-2 save
        Check(File.Exists(path), $"rank {w.Rank}: no backup at {path} after the crash");
        var resumed = Run(new Callback[] { new BackupAndRestore(path) }, out var restore);
        Check(restore!.RestoredEpoch == 2, $"rank {w.Rank} resumed from epoch {restore.RestoredEpoch}, expected 2");
        double difference = MaxDifference(resumed, straight);
        Check(difference == 0, $"rank {w.Rank}: resumed weights differ from the uninterrupted run's by {difference:g3}");
        w.Barrier();
        Check(!File.Exists(path), "the completed run left its backup behind");
        if (w.Rank == 0) Console.WriteLine($"  resume: 4 epochs straight == 2 epochs + crash + restore + 2 epochs on both ranks (max difference {difference:g3})");
        File.Delete(path);
    }
}
