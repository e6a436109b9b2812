using System.Diagnostics;

namespace Kernels.Distributed;

/// <summary>
/// Data-parallel training over MPI (what PyTorch's DistributedDataParallel does over NCCL/Gloo): one
/// replica of the network per process, each on its own shard of every batch, kept identical by
/// averaging the gradients before each optimizer step.
/// <list type="bullet">
/// <item>At construction, rank 0's parameters and buffers are broadcast to every rank.</item>
/// <item>Gradients are averaged in buckets of about <see cref="BucketBytes"/> (25 MB by default, the first
/// one 1 MB, as DDP), filled in reverse parameter order (the order backward produces them). A hook on each parameter
/// (<see cref="Tensor.OnGradientAccumulated"/>) notes its gradient ready; when a bucket is complete its
/// gradients are copied into a flat pinned host staging array and its all-reduce is started
/// (MPI_Iallreduce) while backward goes on with the layers before it. Buckets start strictly in
/// order, so every rank issues the same collectives in the same order.</item>
/// <item><see cref="SynchronizeGradients"/> (Model.Fit calls it before the optimizer step) starts any
/// bucket not started yet (a parameter without a gradient contributes zeros), waits for each with the
/// <see cref="Mpi.Timeout"/>, divides by the rank count and writes the averages back into the gradients.</item>
/// <item>Buffers (BatchNorm's running statistics) are per rank during the step and, with
/// <see cref="BroadcastBuffers"/> (default, as DDP), replaced by rank 0's at each synchronisation. They
/// travel in the first bucket, behind its gradients: rank 0 puts its values there, the other ranks
/// zeros, so the sum is rank 0's values exactly (x + 0 = x), and no broadcast of its own is needed (it
/// had cost a collective per step: 80-160 us each on the 2-rank MNIST CNN).
/// BatchNorm normalises each rank's batch with that rank's own batch statistics (not synchronised).</item>
/// </list>
/// Where the all-reduce runs (<see cref="InPlaceOnDevice"/>): on CUDA with a <see cref="Mpi.CudaAware"/> library,
/// each bucket is a buffer on the GPU, the gradients are copied into it by the device, MPI all-reduces it
/// there and the device scales it and copies the averages back: no round trip through host memory.
/// Otherwise the bucket is a pinned host array the gradients are read into and written back from: OpenCL
/// (a cl_mem is not an address), CUDA with an MPI that is not CUDA-aware, parameters on several devices, and
/// the CPU by default (its memory is host memory, so in place is possible, and <c>inPlaceOnDevice: true</c>
/// asks for it, but the pinned arrays measured faster: MNIST CNN on 2 ranks, 9.7-10.5 against 10.3-12.9 s
/// per epoch over three interleaved runs). Use it with
/// <c>model.DataParallel = new DistributedDataParallel(model.Network)</c>, or with a <see cref="Trainer"/>:
/// <c>trainer.BeforeUpdate = _ =&gt; ddp.SynchronizeGradients()</c>. One Backward per optimizer step.
/// </summary>
public sealed class DistributedDataParallel : IDataParallel, IDisposable
{
    private readonly Mpi world;
    private readonly Tensor[] parameters;
    private readonly Tensor[] buffers;
    private readonly Device? device;   // the device of every parameter when the all-reduce runs in its memory
    private readonly Bucket[] buckets;
    private readonly Dictionary<Tensor, (int Bucket, int Slot)> where = new(ReferenceEqualityComparer.Instance);
    private readonly List<IDisposable> hooks = new();
    private int nextToStart;   // buckets start in index order on every rank
    private long step;

    /// <summary>Replicates <paramref name="network"/> across the ranks of <paramref name="world"/>: rank 0's
    /// parameters and buffers are broadcast to the others now (a collective: every rank constructs it).</summary>
    /// <param name="network">The replica on this rank (created the same way on every rank).</param>
    /// <param name="world">The job (default: <see cref="Mpi.Init"/>).</param>
    /// <param name="bucketBytes">Target size of a gradient bucket (PyTorch's bucket_cap_mb, 25 MB).</param>
    /// <param name="firstBucketBytes">Target size of the first bucket (the last layers' gradients), smaller so
    /// that its all-reduce starts early in backward (PyTorch's 1 MB first bucket).</param>
    /// <param name="inPlaceOnDevice">Whether to all-reduce in device memory (<see cref="InPlaceOnDevice"/>): null chooses
    /// (yes on CUDA with a CUDA-aware MPI, else staged), false stages through host memory, true demands it
    /// (NotSupportedException naming the device and the reason where MPI cannot address the memory).</param>
    public DistributedDataParallel(Module network, Mpi? world = null, long bucketBytes = 25L << 20, long firstBucketBytes = 1L << 20,
                                   bool? inPlaceOnDevice = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        if (bucketBytes <= 0) throw new ArgumentOutOfRangeException(nameof(bucketBytes), $"bucket size {bucketBytes} bytes must be positive");
        if (firstBucketBytes <= 0) throw new ArgumentOutOfRangeException(nameof(firstBucketBytes), $"first bucket size {firstBucketBytes} bytes must be positive");
        this.world = world ?? Mpi.Init();
        Network = network;
        BucketBytes = bucketBytes;
        parameters = network.Parameters().Where(p => p.RequiresGrad).ToArray();
        var parameterSet = new HashSet<Tensor>(parameters, ReferenceEqualityComparer.Instance);
        buffers = network.NamedState().Select(s => s.Tensor).Where(t => !parameterSet.Contains(t) && t.Dtype == Dtype.Float32).ToArray();
        var devices = parameters.Concat(buffers).Select(t => t.Device).Distinct().ToArray();
        string why = devices.Length == 1 ? "" : $"the parameters are on {devices.Length} devices ({string.Join(", ", devices.Select(d => d.Name))})";
        bool possible = devices.Length == 1 && this.world.CanAllReduceInPlace(devices[0], out why);
        if (inPlaceOnDevice == true && !possible) throw new NotSupportedException($"DistributedDataParallel: cannot all-reduce in device memory: {why}");
        if (possible && (inPlaceOnDevice == true || (inPlaceOnDevice is null && devices[0].Kind == DeviceKind.Cuda))) device = devices[0];

        // Buckets in reverse parameter order: the last layer's gradients are ready first.
        var list = new List<Bucket>();
        var current = new List<Tensor>();
        long bytes = 0;
        for (int i = parameters.Length - 1; i >= 0; i--)
        {
            var p = parameters[i];
            if (p.Count > int.MaxValue) throw new ArgumentException($"parameter {i} has {p.Count} elements: more than one MPI call can take");
            long cap = list.Count == 0 ? Math.Min(firstBucketBytes, bucketBytes) : bucketBytes;
            if (current.Count > 0 && bytes + 4 * p.Count > cap)
            {
                list.Add(new Bucket(list.Count, current.ToArray(), list.Count == 0 ? buffers : Array.Empty<Tensor>()));
                current.Clear();
                bytes = 0;
            }
            current.Add(p);
            bytes += 4 * p.Count;
        }
        if (current.Count > 0) list.Add(new Bucket(list.Count, current.ToArray(), list.Count == 0 ? buffers : Array.Empty<Tensor>()));
        buckets = list.ToArray();
        foreach (var b in buckets)
            for (int s = 0; s < b.Parameters.Length; s++) where[b.Parameters[s]] = (b.Index, s);

        if (device is not null && this.world.Size > 1)
            foreach (var b in buckets) b.OnDevice = DeviceBuffer.Allocate(device, 4 * b.Floats);
        BroadcastFromRoot(parameters.Concat(buffers), "broadcast of the initial parameters and buffers from rank 0");
        if (this.world.Size > 1)
            foreach (var p in parameters) hooks.Add(p.OnGradientAccumulated(GradientReady));
    }

    /// <summary>The replicated network.</summary>
    public Module Network { get; }
    /// <summary>The job.</summary>
    public Mpi World => world;
    /// <inheritdoc/>
    public int Rank => world.Rank;
    /// <inheritdoc/>
    public int WorldSize => world.Size;
    /// <summary>The target size of one gradient bucket in bytes.</summary>
    public long BucketBytes { get; }
    /// <summary>How many buckets the gradients travel in.</summary>
    public int BucketCount => buckets.Length;
    /// <summary>Whether the gradient buckets are all-reduced in the parameters' device memory (no host staging):
    /// by default on CUDA with a <see cref="Mpi.CudaAware"/> MPI library, on the CPU when asked; see the class summary.</summary>
    public bool InPlaceOnDevice => device is not null;
    /// <summary>Whether buffers (BatchNorm running statistics) are replaced by rank 0's at each synchronisation (default true, as DDP).
    /// Set it alike on every rank (it changes the size of the first bucket's all-reduce); a change applies from the next step.</summary>
    public bool BroadcastBuffers { get; set; } = true;
    /// <summary>Buckets whose all-reduce was started during backward (not by <see cref="SynchronizeGradients"/>) since construction:
    /// how much communication could overlap computation.</summary>
    public long BucketsStartedDuringBackward { get; private set; }
    /// <summary>Where this rank's data-parallel time went since construction (seconds, from Stopwatch
    /// timestamps around each phase): what PyTorch's DDP logs as its communication and copy times.</summary>
    public DataParallelTimings Timings => timings;
    private DataParallelTimings timings;

    /// <summary>
    /// Gradient accumulation (PyTorch's <c>no_sync()</c>): backward passes run inside <c>using (ddp.NoSync())</c>
    /// only accumulate into the gradients; the first backward after it starts the buckets with the
    /// accumulated sums, and <see cref="SynchronizeGradients"/> then averages them once. So k micro-batches of
    /// B / k on each rank train as one batch of B per rank, at one all-reduce per optimizer step.
    /// </summary>
    public IDisposable NoSync()
    {
        noSync++;
        return new NoSyncScope(this);
    }

    private int noSync;

    private sealed class NoSyncScope(DistributedDataParallel owner) : IDisposable
    {
        private bool disposed;
        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            owner.noSync--;
        }
    }

    private void GradientReady(Tensor p)
    {
        if (noSync > 0) return;   // accumulating: the last backward of the step starts the buckets
        var (b, slot) = where[p];
        var bucket = buckets[b];
        if (bucket.Request is not null)
            throw new InvalidOperationException($"DistributedDataParallel: a second Backward reached parameter {Array.IndexOf(parameters, p)} before the optimizer step; " +
                                                "to accumulate gradients over several Backward calls, run all but the last inside using (ddp.NoSync())");
        if (!bucket.Ready[slot]) { bucket.Ready[slot] = true; bucket.ReadyCount++; }
        while (nextToStart < buckets.Length && buckets[nextToStart].ReadyCount == buckets[nextToStart].Parameters.Length)
        {
            Start(buckets[nextToStart]);
            nextToStart++;
            BucketsStartedDuringBackward++;
        }
        // MPI moves non-blocking collectives forward only inside MPI calls: give it a turn.
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < nextToStart; i++) buckets[i].Request?.Test();
        timings.Start += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    private void Start(Bucket bucket)
    {
        if (bucket.OnDevice is { } flat) { StartOnDevice(bucket, flat); return; }
        long t0 = Stopwatch.GetTimestamp();
        var staging = bucket.Staging;
        long offset = 0;
        foreach (var p in bucket.Parameters)
        {
            var span = staging.AsSpan((int)offset, (int)p.Count);
            if (p.Grad is { } g) g.Buffer.Read<float>(span);   // waits for the kernels that wrote it
            else span.Clear();                                   // unused this step: contributes zeros
            offset += p.Count;
        }
        bucket.CarriesBuffers = BroadcastBuffers;   // decided at the start: the sizes must match at the end
        if (bucket.CarriesBuffers)
            foreach (var b in bucket.Buffers)
            {
                var span = staging.AsSpan((int)offset, (int)b.Count);
                if (world.IsRoot) b.Buffer.Read<float>(span);
                else span.Clear();
                offset += b.Count;
            }
        long t1 = Stopwatch.GetTimestamp();
        bucket.Request = world.AllReduceAsync(staging.AsMemory(0, (int)offset), ReduceOperation.Sum,
                                              $"all-reduce of gradient bucket {bucket.Index} ({offset} floats, step {step + 1})");
        timings.CopyToStaging += Stopwatch.GetElapsedTime(t0, t1).TotalSeconds;
        timings.Start += Stopwatch.GetElapsedTime(t1).TotalSeconds;
    }

    /// <summary>The bucket on the device: the gradients (and rank 0's buffers, or zeros) copied into it by the device,
    /// then MPI all-reduces that memory (after the device's queued work is done).</summary>
    private void StartOnDevice(Bucket bucket, DeviceBuffer flat)
    {
        long t0 = Stopwatch.GetTimestamp();
        long offset = 0;
        foreach (var p in bucket.Parameters)
        {
            if (p.Grad is { } g) flat.CopyFrom(g.Buffer, 0, 4 * offset, 4 * p.Count);
            else flat.Fill(0f, offset, p.Count);   // unused this step: contributes zeros
            offset += p.Count;
        }
        bucket.CarriesBuffers = BroadcastBuffers;
        if (bucket.CarriesBuffers)
            foreach (var b in bucket.Buffers)
            {
                if (world.IsRoot) flat.CopyFrom(b.Buffer, 0, 4 * offset, 4 * b.Count);
                else flat.Fill(0f, offset, b.Count);
                offset += b.Count;
            }
        long t1 = Stopwatch.GetTimestamp();
        bucket.Request = world.AllReduceAsync(flat, (int)offset, ReduceOperation.Sum,
                                              $"all-reduce of gradient bucket {bucket.Index} ({offset} floats on {flat.Device.Name}, step {step + 1})");
        timings.CopyToStaging += Stopwatch.GetElapsedTime(t0, t1).TotalSeconds;
        timings.Start += Stopwatch.GetElapsedTime(t1).TotalSeconds;
    }

    /// <summary>The averages from the device bucket: scaled there by 1/ranks (the gradients, not the buffers), copied back by the device.</summary>
    private void FinishOnDevice(Bucket bucket, DeviceBuffer flat)
    {
        long gradients = bucket.Parameters.Sum(p => p.Count);
        Ops.Unary(UnaryOp.Scale, flat, flat, gradients, alpha: 1f / world.Size);
        long offset = 0;
        foreach (var p in bucket.Parameters)
        {
            GradientOf(p).Buffer.CopyFrom(flat, 4 * offset, 0, 4 * p.Count);
            offset += p.Count;
        }
        if (bucket.CarriesBuffers)
            foreach (var b in bucket.Buffers)
            {
                b.Buffer.CopyFrom(flat, 4 * offset, 0, 4 * b.Count);
                offset += b.Count;
            }
    }

    /// <summary>p's gradient, made (zeros) where this rank's backward did not reach p: the average still lands there.</summary>
    private static Tensor GradientOf(Tensor p)
    {
        if (p.Grad is null)
        {
            var zeros = Tensor.Zeros(p.Shape.ToArray(), p.Device);
            DisposeScope.Untrack(zeros);   // the gradient belongs to the parameter, not to the step's scope
            p.Grad = zeros;
        }
        return p.Grad;
    }

    /// <inheritdoc/>
    public void SynchronizeGradients()
    {
        if (noSync > 0)
            throw new InvalidOperationException("DistributedDataParallel: SynchronizeGradients inside NoSync(): leave the NoSync scope and run the step's last Backward first");
        step++;
        if (world.Size == 1) return;
        while (nextToStart < buckets.Length) Start(buckets[nextToStart++]);
        float scale = 1f / world.Size;
        foreach (var bucket in buckets)
        {
            long t0 = Stopwatch.GetTimestamp();
            bucket.Request!.Wait();
            long t1 = Stopwatch.GetTimestamp();
            timings.Wait += Stopwatch.GetElapsedTime(t0, t1).TotalSeconds;
            if (bucket.OnDevice is { } flat)
            {
                FinishOnDevice(bucket, flat);
                bucket.Reset();
                timings.CopyBack += Stopwatch.GetElapsedTime(t1).TotalSeconds;
                continue;
            }
            var staging = bucket.Staging;
            long offset = 0;
            foreach (var p in bucket.Parameters)
            {
                var span = staging.AsSpan((int)offset, (int)p.Count);
                Scale(span, scale);
                GradientOf(p).Buffer.Write<float>(span);
                offset += p.Count;
            }
            if (bucket.CarriesBuffers)
                foreach (var b in bucket.Buffers)
                {
                    b.Buffer.Write<float>(staging.AsSpan((int)offset, (int)b.Count));   // rank 0's values: the others added zeros
                    offset += b.Count;
                }
            bucket.Reset();
            timings.CopyBack += Stopwatch.GetElapsedTime(t1).TotalSeconds;
        }
        nextToStart = 0;
        // Without parameters to train there is no bucket to ride in.
        if (BroadcastBuffers && buckets.Length == 0 && buffers.Length > 0) BroadcastFromRoot(buffers, $"broadcast of the buffers from rank 0 (step {step})");
        timings.Steps++;
    }

    /// <summary>span *= factor, a vector at a time (the bucket is still in cache from the all-reduce).</summary>
    private static void Scale(Span<float> span, float factor)
    {
        var vectors = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(span);
        for (int i = 0; i < vectors.Length; i++) vectors[i] *= factor;
        for (int i = vectors.Length * System.Numerics.Vector<float>.Count; i < span.Length; i++) span[i] *= factor;
    }

    /// <inheritdoc/>
    public void AverageLogs(IDictionary<string, double> logs)
    {
        ArgumentNullException.ThrowIfNull(logs);
        if (world.Size == 1) return;
        var keys = logs.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        // The key names must agree, or the values would be averaged with another metric's.
        var check = new double[] { keys.Length, NamesHash(keys) };
        var max = (double[])check.Clone();
        world.AllReduce(max, ReduceOperation.Max, "check that every rank logs the same names");
        if (max[0] != check[0] || max[1] != check[1])
            throw new MpiException($"rank {Rank}: the ranks log different names; this rank has {string.Join(", ", keys)}");
        var values = keys.Select(k => logs[k]).ToArray();
        world.AllReduce(values, ReduceOperation.Sum, "average of the epoch logs");
        for (int i = 0; i < keys.Length; i++) logs[keys[i]] = values[i] / world.Size;
    }

    /// <summary>FNV-1a of the names, 24 bits (exact in a double). Not string.GetHashCode: that one is
    /// randomised per process, so two ranks would never agree.</summary>
    private static double NamesHash(IEnumerable<string> names)
    {
        uint h = 2166136261;
        foreach (char c in string.Join("\n", names)) h = (h ^ c) * 16777619;
        return h & 0xFFFFFF;
    }

    private void BroadcastFromRoot(IEnumerable<Tensor> tensors, string what)
    {
        if (world.Size == 1) return;
        var list = tensors.ToArray();
        long total = list.Sum(t => t.Count);
        if (total == 0) return;
        var flat = new float[total];
        long offset = 0;
        if (world.IsRoot)
            foreach (var t in list) { t.Buffer.Read<float>(flat.AsSpan((int)offset, (int)t.Count)); offset += t.Count; }
        world.Broadcast(flat, 0, what);
        offset = 0;
        foreach (var t in list) { t.Buffer.Write<float>(flat.AsSpan((int)offset, (int)t.Count)); offset += t.Count; }
    }

    /// <summary>Removes the gradient hooks (the network trains alone again).</summary>
    public void Dispose()
    {
        foreach (var h in hooks) h.Dispose();
        hooks.Clear();
        foreach (var b in buckets)
            if (b.Request is null || b.Request.IsComplete) b.OnDevice?.Dispose();   // one in flight stays with its request
    }

    /// <summary>Seconds spent in each phase of gradient averaging (see <see cref="Timings"/>).</summary>
    public struct DataParallelTimings
    {
        /// <summary>Optimizer steps synchronised.</summary>
        public long Steps;
        /// <summary>Reading gradients into the host staging buckets (includes waiting for the kernels that wrote them).</summary>
        public double CopyToStaging;
        /// <summary>Starting the all-reduces (MPI_Iallreduce) and the MPI_Test polls made during backward.</summary>
        public double Start;
        /// <summary>Waiting for the all-reduces to complete in SynchronizeGradients (communication not hidden, and the slower rank).</summary>
        public double Wait;
        /// <summary>Scaling by 1/ranks and writing the averages back into the gradients (and rank 0's buffers into the buffers).</summary>
        public double CopyBack;
    }

    private sealed class Bucket
    {
        public Bucket(int index, Tensor[] parameters, Tensor[] buffers)
        {
            Index = index;
            Parameters = parameters;
            Buffers = buffers;
            Ready = new bool[parameters.Length];
            // Pinned: MPI reads and writes it while the collective is in flight.
            Floats = parameters.Sum(p => p.Count) + buffers.Sum(b => b.Count);
            if (Floats > int.MaxValue) throw new ArgumentException($"gradient bucket {index} holds {Floats} floats: more than one MPI call can take");
        }

        public long Floats { get; }
        /// <summary>The bucket in device memory (the all-reduce in place), or null: staged through <see cref="Staging"/>.</summary>
        public DeviceBuffer? OnDevice { get; set; }
        private float[]? staging;
        /// <summary>The pinned host bucket (made on first use: not needed when the bucket is on the device).</summary>
        public float[] Staging => staging ??= GC.AllocateArray<float>((int)Floats, pinned: true);

        public int Index { get; }
        public Tensor[] Parameters { get; }
        /// <summary>The buffers that ride behind the gradients (rank 0's values; bucket 0 only).</summary>
        public Tensor[] Buffers { get; }
        /// <summary>Whether this step's all-reduce carries the buffers (BroadcastBuffers when it started).</summary>
        public bool CarriesBuffers { get; set; }
        public bool[] Ready { get; }
        public int ReadyCount { get; set; }
        public MpiRequest? Request { get; set; }

        public void Reset()
        {
            Array.Clear(Ready);
            ReadyCount = 0;
            Request = null;
        }
    }
}
