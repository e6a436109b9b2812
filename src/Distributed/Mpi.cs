using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Kernels.Distributed;

/// <summary>A reduction for <see cref="Mpi.AllReduce(Span{float}, ReduceOperation, string?)"/> and its kin.</summary>
public enum ReduceOperation
{
    /// <summary>Element-wise sum over the ranks.</summary>
    Sum,
    /// <summary>Element-wise maximum over the ranks.</summary>
    Max,
}

/// <summary>
/// The processes of one job (MPI_COMM_WORLD), through the system's MPI library opened at run time
/// (NativeLibrary, function pointers: no build-time MPI dependency, as libkernels opens OpenCL).
/// <para>Supported ABIs: Open MPI (libmpi.so.40, Debian's openmpi-bin/libopenmpi-dev), whose handles
/// are the addresses of exported globals (ompi_mpi_comm_world, ompi_mpi_float, ompi_mpi_op_sum, ...),
/// and MPICH (libmpich.so.12 / libmpi.so.12, Debian's mpich/libmpich12), whose handles are integer
/// constants (MPI_COMM_WORLD = 0x44000000, ...). The library tells which: Open MPI exports
/// ompi_mpi_comm_world, MPICH its MPIR_ internals. Without KERNELS_MPI_LIBRARY the launcher picks the
/// library tried first (Hydra, MPICH's mpiexec: libmpich.so.12; otherwise libmpi.so.40), and a world
/// whose size differs from the launcher's (the other MPI's library, each rank alone) is refused.
/// <see cref="Library"/> names the library opened.</para>
/// <para>Without an MPI launcher (no OMPI_COMM_WORLD_SIZE / PMIX_RANK / PMI_RANK in the environment)
/// nothing is loaded: <see cref="Init"/> gives a world of one process in which every collective is
/// the identity, so the same program runs with and without mpirun.</para>
/// <para>Every collective, blocking or not, is a non-blocking MPI call polled with MPI_Test until it
/// completes or <see cref="Timeout"/> passes; then the rank asks every other rank, point to point,
/// whether it is waiting in a collective (ranks answer these liveness queries while they wait; the asker
/// gives them 2 s), and a <see cref="CollectiveTimeoutException"/> names the operation and the ranks
/// that did not answer; if nothing catches it, the job is ended with MPI_Abort so that no rank hangs. MPI is initialised with MPI_THREAD_FUNNELED: call it from the
/// thread that called <see cref="Init"/>.</para>
/// </summary>
public sealed unsafe class Mpi : IDisposable
{
    private static readonly Lock s_gate = new();
    private static Mpi? s_world;

    private readonly MpiLibrary? lib;
    private bool finalized;

    private Mpi(MpiLibrary? lib, int rank, int size)
    {
        this.lib = lib;
        Rank = rank;
        Size = size;
        LocalRank = ReadInt("OMPI_COMM_WORLD_LOCAL_RANK") ?? ReadInt("MPI_LOCALRANKID") ?? 0;
        LocalSize = ReadInt("OMPI_COMM_WORLD_LOCAL_SIZE") ?? ReadInt("MPI_LOCALNRANKS") ?? 1;
        if (Environment.GetEnvironmentVariable("KERNELS_MPI_TIMEOUT_S") is { } s && double.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out var secs) && secs > 0)
            Timeout = TimeSpan.FromSeconds(secs);
    }

    /// <summary>This process's rank, 0 .. <see cref="Size"/> - 1.</summary>
    public int Rank { get; }
    /// <summary>The number of processes in the job (1 without mpirun).</summary>
    public int Size { get; }
    /// <summary>The rank among the processes on this machine: which GPU to use. Open MPI's mpirun sets
    /// OMPI_COMM_WORLD_LOCAL_RANK, MPICH's Hydra MPI_LOCALRANKID; 0 when neither is set (PMI_RANK is the
    /// rank in the whole job, not on this machine, so it is not used here).</summary>
    public int LocalRank { get; }
    /// <summary>The number of processes on this machine (OMPI_COMM_WORLD_LOCAL_SIZE, Hydra's MPI_LOCALNRANKS).</summary>
    public int LocalSize { get; }
    /// <summary>Whether a real MPI library is in use (false: the world of one process).</summary>
    public bool IsMpi => lib is not null;
    /// <summary>The library opened and its version string (MPI_Get_library_version), or "none".</summary>
    public string Library => lib is null ? "none (single process, no MPI launcher)" : $"{lib.Path}: {lib.Version}";
    /// <summary>Whether the MPI library says it can read and write CUDA device memory (MPIX_Query_cuda_support,
    /// asked after MPI_Init): <see cref="AllReduceAsync(DeviceBuffer, int, ReduceOperation, string?)"/> then takes
    /// CUDA buffers, and <see cref="DistributedDataParallel"/> all-reduces CUDA gradients without host staging.</summary>
    public bool CudaAware => lib?.CudaAwareAfterInit ?? false;
    /// <summary>How long a collective may take before <see cref="CollectiveTimeoutException"/> (default 60 s;
    /// the KERNELS_MPI_TIMEOUT_S environment variable sets the initial value).</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(60);
    /// <summary>Whether rank 0 (the one that writes logs and checkpoints).</summary>
    public bool IsRoot => Rank == 0;

    /// <summary>
    /// The job's world, initialised once per process (MPI_Init_thread, FUNNELED) on the first call;
    /// later calls return the same object. MPI_Finalize runs at process exit or at <see cref="Dispose"/>.
    /// </summary>
    /// <exception cref="MpiNotFoundException">Started by mpirun but no MPI library could be opened.</exception>
    /// <exception cref="MpiException">The library found is neither Open MPI nor MPICH-ABI, its world's size is not the
    /// launcher's, or MPI_Init_thread failed.</exception>
    public static Mpi Init()
    {
        lock (s_gate)
        {
            if (s_world is not null)
            {
                if (s_world.finalized) throw new MpiException("MPI was finalized in this process (Mpi.Dispose); it cannot be initialised again");
                return s_world;
            }
            if (!LaunchedByMpi())
                return s_world = new Mpi(null, 0, 1);
            var lib = MpiLibrary.Open();
            int rank, size;
            lib.Initialize();
            lib.Check(lib.CommRank(&rank), "MPI_Comm_rank");
            lib.Check(lib.CommSize(&size), "MPI_Comm_size");
            // Open MPI's library under MPICH's launcher (or the reverse) initialises a world of one per
            // process: every rank would train alone, silently. The launcher says how many there should be.
            if (LauncherSize() is int launched && launched != size)
                throw new MpiException($"{lib.Path} ({lib.Abi}) sees a world of {size} process(es) but the launcher started {launched}: " +
                                       "the launcher and the library are from different MPIs (use mpirun.openmpi with libmpi.so.40, " +
                                       "mpirun.mpich with libmpich.so.12; KERNELS_MPI_LIBRARY chooses the library)");
            var world = new Mpi(lib, rank, size);
            // An unhandled exception (a collective timeout, a failed step) on one rank ends the whole job
            // instead of leaving the other ranks blocked in their next collective.
            AppDomain.CurrentDomain.UnhandledException += (_, e) => world.Abort($"unhandled exception on rank {world.Rank}: {e.ExceptionObject}", 1);
            AppDomain.CurrentDomain.ProcessExit += (_, _) => world.Dispose();
            return s_world = world;
        }
    }

    /// <summary>Whether an MPI launcher started this process (Open MPI, PMIx or Hydra/PMI variables).</summary>
    public static bool LaunchedByMpi() =>
        Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null ||
        Environment.GetEnvironmentVariable("PMIX_RANK") is not null ||
        Environment.GetEnvironmentVariable("PMI_RANK") is not null;

    /// <summary>The job size the launcher announced: OMPI_COMM_WORLD_SIZE (Open MPI) or PMI_SIZE (Hydra, PMI).</summary>
    private static int? LauncherSize() => ReadInt("OMPI_COMM_WORLD_SIZE") ?? ReadInt("PMI_SIZE");

    private static int? ReadInt(string name) => int.TryParse(Environment.GetEnvironmentVariable(name), out var v) ? v : null;

    /// <summary>The device this rank should train on: the CUDA GPU number <see cref="LocalRank"/> (modulo
    /// the count) when there are CUDA devices, else the CPU (one process per GPU, as with PyTorch's DDP).</summary>
    public Device DeviceForLocalRank()
    {
        var gpus = Device.All.Where(d => d.Kind == DeviceKind.Cuda).ToArray();
        return gpus.Length == 0 ? Device.Cpu : gpus[LocalRank % gpus.Length];
    }

    // ---- Collectives --------------------------------------------------------------------------------

    /// <summary>Waits until every rank has called Barrier (MPI_Ibarrier, polled with the timeout).</summary>
    public void Barrier(string? what = null)
    {
        if (lib is null) return;
        nint request;
        lib.Check(lib.Ibarrier(&request), "MPI_Ibarrier");
        new MpiRequest(this, request, default, what ?? "barrier").Wait();
    }

    /// <summary>Copies <paramref name="data"/> of rank <paramref name="root"/> into every rank's <paramref name="data"/> (same length on every rank).</summary>
    public void Broadcast(Span<float> data, int root = 0, string? what = null) => BroadcastBytes(MemoryMarshal.AsBytes(data), root, what);
    /// <inheritdoc cref="Broadcast(Span{float}, int, string?)"/>
    public void Broadcast(Span<double> data, int root = 0, string? what = null) => BroadcastBytes(MemoryMarshal.AsBytes(data), root, what);
    /// <inheritdoc cref="Broadcast(Span{float}, int, string?)"/>
    public void Broadcast(Span<long> data, int root = 0, string? what = null) => BroadcastBytes(MemoryMarshal.AsBytes(data), root, what);

    private void BroadcastBytes(Span<byte> bytes, int root, string? what)
    {
        if (root < 0 || root >= Size) throw new ArgumentOutOfRangeException(nameof(root), $"root rank {root} is not in 0 .. {Size - 1}");
        if (lib is null || bytes.Length == 0) return;
        CheckCount(bytes.Length, "broadcast");
        fixed (byte* p = bytes)
        {
            nint request;
            lib.Check(lib.Ibcast(p, bytes.Length, lib.Byte, root, &request), "MPI_Ibcast");
            // The span stays fixed for the whole wait: Wait returns only when the operation is complete.
            new MpiRequest(this, request, default, what ?? $"broadcast of {bytes.Length} bytes from rank {root}").Wait();
        }
    }

    /// <summary>Replaces <paramref name="data"/> on every rank by the element-wise sum (or max) over the ranks.</summary>
    public void AllReduce(Span<float> data, ReduceOperation op = ReduceOperation.Sum, string? what = null)
    {
        fixed (float* p = data) AllReduceRaw(p, data.Length, lib?.Float ?? 0, op, what).Wait();
    }
    /// <inheritdoc cref="AllReduce(Span{float}, ReduceOperation, string?)"/>
    public void AllReduce(Span<double> data, ReduceOperation op = ReduceOperation.Sum, string? what = null)
    {
        fixed (double* p = data) AllReduceRaw(p, data.Length, lib?.Double ?? 0, op, what).Wait();
    }
    /// <inheritdoc cref="AllReduce(Span{float}, ReduceOperation, string?)"/>
    public void AllReduce(Span<long> data, ReduceOperation op = ReduceOperation.Sum, string? what = null)
    {
        fixed (long* p = data) AllReduceRaw(p, data.Length, lib?.Int64 ?? 0, op, what).Wait();
    }

    /// <summary>
    /// Starts an in-place all-reduce of <paramref name="data"/> (MPI_Iallreduce) and returns at once;
    /// the memory is pinned until the request completes. Call <see cref="MpiRequest.Test"/> now and then
    /// (MPI progresses inside MPI calls) and <see cref="MpiRequest.Wait"/> before reading the result.
    /// </summary>
    public MpiRequest AllReduceAsync(Memory<float> data, ReduceOperation op = ReduceOperation.Sum, string? what = null) =>
        AllReducePinned(data.Pin(), data.Length, lib?.Float ?? 0, op, what);
    /// <inheritdoc cref="AllReduceAsync(Memory{float}, ReduceOperation, string?)"/>
    public MpiRequest AllReduceAsync(Memory<double> data, ReduceOperation op = ReduceOperation.Sum, string? what = null) =>
        AllReducePinned(data.Pin(), data.Length, lib?.Double ?? 0, op, what);

    /// <summary>
    /// Starts an in-place all-reduce of the first <paramref name="count"/> floats of a device buffer, handing
    /// MPI the buffer's own memory (<see cref="DeviceBuffer.Address"/>): a CPU buffer always (host memory), a
    /// CUDA buffer when the library is <see cref="CudaAware"/>. Waits for the device's queued work first
    /// (<see cref="Device.Synchronize"/>: MPI reads the memory itself); the request holds the buffer until it
    /// completes. Write nothing to the buffer before <see cref="MpiRequest.Wait"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">An OpenCL buffer, or a CUDA buffer with an MPI library that is not
    /// CUDA-aware (stage it through host memory: <see cref="AllReduceAsync(Memory{float}, ReduceOperation, string?)"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">count is negative or more than the buffer holds.</exception>
    public MpiRequest AllReduceAsync(DeviceBuffer buffer, int count, ReduceOperation op = ReduceOperation.Sum, string? what = null)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (count < 0 || count > buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(count), $"all-reduce of {count} floats from a buffer of {buffer.Length} floats on {buffer.Device.Name}");
        if (!CanAllReduceInPlace(buffer.Device, out var why)) throw new NotSupportedException($"all-reduce of a buffer on {buffer.Device.Name}: {why}");
        if (lib is null || count == 0) return new MpiRequest(this, 0, default, what ?? $"all-reduce ({op}) of {count} elements");
        buffer.Device.Synchronize();
        var request = AllReduceRaw((void*)buffer.Address(), count, lib.Float, op, what);
        request.Keep(buffer);
        return request;
    }

    /// <summary>Whether <see cref="AllReduceAsync(DeviceBuffer, int, ReduceOperation, string?)"/> can hand MPI the memory of
    /// a buffer on <paramref name="device"/> (CPU: always; CUDA: with a <see cref="CudaAware"/> library; OpenCL: never); if not, why.</summary>
    public bool CanAllReduceInPlace(Device device, out string why)
    {
        ArgumentNullException.ThrowIfNull(device);
        why = device.Kind switch
        {
            DeviceKind.Cpu => "",
            DeviceKind.Cuda when CudaAware || lib is null => "",
            DeviceKind.Cuda => $"the MPI library ({Library}) is not CUDA-aware (MPIX_Query_cuda_support)",
            _ => $"{device.Kind} memory is not addressable by MPI (an OpenCL cl_mem is a handle)",
        };
        return why.Length == 0;
    }

    /// <summary>Starts the all-reduce on pinned memory; the request keeps the pin until it completes (released
    /// at once when the start fails).</summary>
    private MpiRequest AllReducePinned(System.Buffers.MemoryHandle pin, int count, nint type, ReduceOperation op, string? what)
    {
        try
        {
            var request = AllReduceRaw(pin.Pointer, count, type, op, what);
            request.Keep(pin);
            return request;
        }
        catch
        {
            pin.Dispose();
            throw;
        }
    }

    private MpiRequest AllReduceRaw(void* p, int count, nint type, ReduceOperation op, string? what)
    {
        what ??= $"all-reduce ({op}) of {count} elements";
        if (lib is null || count == 0) return new MpiRequest(this, 0, default, what);
        CheckCount(count, "all-reduce");
        nint request;
        nint mpiOp = op == ReduceOperation.Sum ? lib.OpSum : lib.OpMax;
        lib.Check(lib.IallreduceInPlace(p, count, type, mpiOp, &request), "MPI_Iallreduce");
        return new MpiRequest(this, request, default, what);
    }

    private static void CheckCount(long count, string what)
    {
        if (count > int.MaxValue) throw new ArgumentException($"{what} of {count} elements: an MPI count is a 32-bit int; split it");
    }

    /// <summary>Ends every process of the job (MPI_Abort) after printing <paramref name="message"/> to stderr.</summary>
    public void Abort(string message, int errorCode = 1)
    {
        Console.Error.WriteLine($"kernels-mpi: aborting the job: {message}");
        Console.Error.Flush();
        if (lib is null || finalized) Environment.Exit(errorCode);
        lib!.Abort(errorCode);
    }

    /// <summary>MPI_Finalize (once; later collectives throw).</summary>
    public void Dispose()
    {
        lock (s_gate)
        {
            if (finalized || lib is null) { finalized = true; return; }
            try { CancelLivenessReceives(); } catch (MpiException) { }   // best effort: finalizing anyway
            finalized = true;
            int done;
            lib.Finalized(&done);
            if (done == 0) lib.Finalize();
        }
    }

    // ---- Requests ----------------------------------------------------------------------------------

    internal bool Test(ref nint request, string what)
    {
        if (finalized) throw new MpiException($"{what}: MPI was finalized");
        int flag;
        fixed (nint* r = &request)
            lib!.Check(lib.Test(r, &flag), "MPI_Test");
        return flag != 0;
    }

    internal CollectiveTimeoutException TimedOut(string what, TimeSpan waited)
    {
        // A pending collective does not say who is missing: ask. Every rank waiting in a collective answers
        // (MpiRequest.Wait calls AnswerQueries); a rank that died, hangs or is still computing does not.
        var others = Enumerable.Range(0, Size).Where(r => r != Rank).ToArray();
        int[]? missing = FindMissing(LivenessGrace);
        string Ranks(IReadOnlyList<int> r) => (r.Count == 1 ? "rank " : "ranks ") + string.Join(", ", r);
        string detail;
        if (missing is null)   // the query itself failed: say what can be said
        {
            missing = others;
            detail = (others.Length == 1 ? $"rank {others[0]}" : $"one or more of ranks {string.Join(", ", others)}") +
                     " did not arrive (died, hangs, or took another path through the program)";
        }
        else if (missing.Length == 0)
            detail = $"every other rank answered from inside a collective within {LivenessGrace.TotalSeconds:0.#} s: they arrived after the limit, or the ranks took different paths through the program";
        else
        {
            var waiting = others.Except(missing).ToArray();
            detail = $"{Ranks(missing)} did not arrive (no answer to a liveness query within {LivenessGrace.TotalSeconds:0.#} s: " +
                     $"died, hangs, or still computing)" + (waiting.Length > 0 ? $"; {Ranks(waiting)} answered from inside a collective" : "");
        }
        return new CollectiveTimeoutException(what, Rank, missing, waited, detail);
    }

    // ---- Who did not arrive: a liveness query that every waiting rank answers -------------------------

    /// <summary>How long a rank whose collective timed out waits for the others' answers.</summary>
    internal static readonly TimeSpan LivenessGrace = TimeSpan.FromSeconds(2);
    // Point-to-point tags (MPI guarantees tags up to 32767). Nothing else here sends point-to-point, and
    // collectives travel in their own context, so these cannot meet another message. Payload: {rank, round}.
    private const int QueryTag = 32101, AnswerTag = 32102;
    private readonly int[] queryIn = GC.AllocateArray<int>(2, pinned: true);    // pinned for the posted receives
    private readonly int[] answerIn = GC.AllocateArray<int>(2, pinned: true);
    private nint queryReceive, answerReceive;   // posted receives (0: none posted)
    private readonly List<(nint Request, int[] Payload)> sends = new();   // in flight; tiny, so they complete at once
    private int round;

    /// <summary>Answers the liveness queries of ranks whose collective timed out; called while this rank waits in one.</summary>
    internal void AnswerQueries()
    {
        if (lib is null || finalized || Size < 2) return;
        for (int i = 0; i < Size; i++)
        {
            if (!Received(ref queryReceive, queryIn, QueryTag)) break;
            Send(queryIn[0], AnswerTag, queryIn[1]);
        }
        for (int i = sends.Count - 1; i >= 0; i--)
        {
            var (request, _) = sends[i];
            if (TestRaw(ref request)) sends.RemoveAt(i);
        }
    }

    /// <summary>The ranks that answered no query within <paramref name="grace"/> (null if the query could not be made).</summary>
    private int[]? FindMissing(TimeSpan grace)
    {
        if (lib is null || Size < 2) return Array.Empty<int>();
        try
        {
            round++;
            var heard = new bool[Size];
            heard[Rank] = true;
            for (int r = 0; r < Size; r++)
                if (r != Rank) Send(r, QueryTag, round);
            var clock = Stopwatch.StartNew();
            while (heard.Contains(false) && clock.Elapsed < grace)
            {
                AnswerQueries();   // the others may be asking at the same time
                if (Received(ref answerReceive, answerIn, AnswerTag))
                {
                    if (answerIn[1] == round && answerIn[0] >= 0 && answerIn[0] < Size) heard[answerIn[0]] = true;
                    continue;
                }
                Thread.Sleep(1);
            }
            return Enumerable.Range(0, Size).Where(r => !heard[r]).ToArray();
        }
        catch (MpiException)
        {
            return null;
        }
    }

    /// <summary>Whether a message arrived in <paramref name="payload"/> (posting the receive first if none is).</summary>
    private bool Received(ref nint receive, int[] payload, int tag)
    {
        if (receive == 0)
        {
            nint r;
            fixed (int* p = payload) lib!.Check(lib.Irecv(p, 2, lib.Int, lib.AnySource, tag, &r), "MPI_Irecv");
            receive = r;
        }
        if (!TestRaw(ref receive)) return false;
        receive = 0;
        return true;
    }

    private void Send(int destination, int tag, int value)
    {
        var payload = GC.AllocateArray<int>(2, pinned: true);
        payload[0] = Rank;
        payload[1] = value;
        nint r;
        fixed (int* p = payload) lib!.Check(lib.Isend(p, 2, lib.Int, destination, tag, &r), "MPI_Isend");
        sends.Add((r, payload));   // the payload stays referenced (pinned, alive) until the send completes
    }

    private bool TestRaw(ref nint request)
    {
        int flag;
        fixed (nint* r = &request) lib!.Check(lib.Test(r, &flag), "MPI_Test");
        return flag != 0;
    }

    /// <summary>Cancels the posted liveness receives before MPI_Finalize (a pending receive at finalize is an error).</summary>
    private void CancelLivenessReceives()
    {
        Cancel(ref queryReceive);
        Cancel(ref answerReceive);

        void Cancel(ref nint receive)
        {
            if (receive == 0) return;
            nint r = receive;
            receive = 0;
            if (lib!.Cancel(&r) != 0) return;
            var clock = Stopwatch.StartNew();
            while (!TestRaw(ref r) && clock.ElapsedMilliseconds < 100) { }   // a cancelled receive completes
        }
    }
}

/// <summary>A non-blocking collective in flight (<see cref="Mpi.AllReduceAsync(Memory{float}, ReduceOperation, string?)"/>).</summary>
public sealed class MpiRequest
{
    private readonly Mpi world;
    private nint handle;
    private MemoryHandle pin;
    private DeviceBuffer? deviceMemory;   // a device buffer MPI reads and writes: kept alive until completion
    private readonly Stopwatch started = Stopwatch.StartNew();

    internal MpiRequest(Mpi world, nint handle, MemoryHandle pin, string operation)
    {
        this.world = world;
        this.handle = handle;
        this.pin = pin;
        Operation = operation;
        // 0: no MPI operation (a world of one, an empty buffer). No real request is 0 in either ABI: an Open MPI
        // request is a pointer, an MPICH one an int whose top byte holds its kind (MPI_REQUEST_NULL is 0x2c000000).
        IsComplete = handle == 0;
    }

    /// <summary>What this request does, for messages.</summary>
    public string Operation { get; }
    /// <summary>Whether the operation has completed (its buffer may be read).</summary>
    public bool IsComplete { get; private set; }

    internal void Keep(MemoryHandle memory) => pin = memory;
    internal void Keep(DeviceBuffer memory) => deviceMemory = memory;

    /// <summary>Lets MPI progress the operation (MPI_Test); true once it is complete.</summary>
    public bool Test()
    {
        if (IsComplete) return true;
        if (world.Test(ref handle, Operation)) Complete();
        return IsComplete;
    }

    /// <summary>Polls MPI_Test until the operation completes, or throws <see cref="CollectiveTimeoutException"/>
    /// once it has been waited for longer than <see cref="Mpi.Timeout"/> (counted from this call).</summary>
    public void Wait()
    {
        if (IsComplete) return;
        var waited = Stopwatch.StartNew();
        var spin = new SpinWait();
        while (!Test())
        {
            world.AnswerQueries();   // a rank whose collective timed out asks who is waiting
            if (waited.Elapsed > world.Timeout) throw world.TimedOut(Operation, waited.Elapsed);
            spin.SpinOnce(sleep1Threshold: -1);   // yields, never sleeps 1 ms: the other rank may be one step away
        }
    }

    private void Complete()
    {
        IsComplete = true;
        pin.Dispose();
        pin = default;
        deviceMemory = null;
    }
}
