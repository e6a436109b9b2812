using System.Runtime.InteropServices;
using System.Text;

namespace Kernels.Distributed;

/// <summary>The two binary interfaces of MPI libraries: how handles (MPI_Comm, MPI_Datatype, MPI_Op,
/// MPI_Request) are represented, and the values of MPI_IN_PLACE and MPI_STATUS_IGNORE.</summary>
internal enum MpiAbi
{
    /// <summary>Open MPI (libmpi.so.40): handles are pointers, the addresses of exported globals.</summary>
    OpenMpi,
    /// <summary>MPICH (libmpich.so.12 / libmpi.so.12) and the libraries of the MPICH ABI initiative: handles
    /// are 32-bit integers, the predefined ones compile-time constants of mpi.h.</summary>
    Mpich,
}

/// <summary>
/// The MPI entry points, looked up once in the shared library opened at run time. Open MPI's handles
/// (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are addresses of exported globals: <c>#define MPI_COMM_WORLD
/// OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)</c> in its mpi.h, so GetExport gives the handle.
/// MPICH's are <c>int</c> constants (<c>#define MPI_COMM_WORLD ((MPI_Comm)0x44000000)</c>): they are copied
/// below from Debian 12's libmpich-dev 4.0.2 mpi.h, and the functions that take or return a handle are
/// called with <c>int</c> parameters. A handle is held here as an nint either way (an MPICH one zero- or
/// sign-extended); the methods below pass it at the width the library's ABI declares.
/// </summary>
internal sealed unsafe class MpiLibrary
{
    // MPI_THREAD_FUNNELED = 1 in both mpi.h files.
    private const int ThreadFunneled = 1;

    /// <summary>MPICH 4.0.2's mpi.h (Debian 12 libmpich-dev, /usr/include/x86_64-linux-gnu/mpich/mpi.h).
    /// These values are the ABI shared by MPICH 3.1 and later, Intel MPI, MVAPICH2 and Cray MPT.</summary>
    private static class MpichHandles
    {
        public const int CommWorld = 0x44000000;   // MPI_COMM_WORLD
        public const int Float = 0x4c00040a;       // MPI_FLOAT
        public const int Double = 0x4c00080b;      // MPI_DOUBLE
        public const int Int64 = 0x4c00083a;       // MPI_INT64_T (Open MPI side: ompi_mpi_int64_t)
        public const int Byte = 0x4c00010d;        // MPI_BYTE
        public const int Int = 0x4c000405;         // MPI_INT
        public const int AnySource = -2;           // MPI_ANY_SOURCE (Open MPI's is -1)
        public const int OpMax = 0x58000001;       // MPI_MAX
        public const int OpSum = 0x58000003;       // MPI_SUM
        public const int InPlace = -1;             // #define MPI_IN_PLACE (void *) -1
        public const int StatusIgnore = 1;         // #define MPI_STATUS_IGNORE (MPI_Status *)1
    }

    /// <summary>The names tried, in order: the KERNELS_MPI_LIBRARY path alone when set; else the sonames of
    /// the MPI whose launcher started this process first (Hydra, MPICH's mpiexec, sets PMI_RANK and no
    /// OMPI_ or PMIX_ variables), then the other's, then the unversioned link.</summary>
    public static string[] Candidates()
    {
        // An explicit choice is the only one tried: a wrong path must not silently fall back to another MPI.
        if (Environment.GetEnvironmentVariable("KERNELS_MPI_LIBRARY") is { Length: > 0 } explicitPath) return new[] { explicitPath };
        bool hydra = Environment.GetEnvironmentVariable("PMI_RANK") is not null &&
                     Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is null &&
                     Environment.GetEnvironmentVariable("PMIX_RANK") is null;
        // Debian's libmpich12 ships libmpich.so.12 only; libmpi.so.12 is the ABI initiative's common name.
        return hydra
            ? new[] { "libmpich.so.12", "libmpi.so.12", "libmpi.so.40", "libmpi.so" }
            : new[] { "libmpi.so.40", "libmpich.so.12", "libmpi.so.12", "libmpi.so" };
    }

    public string Path { get; }
    public string Version { get; }
    public MpiAbi Abi { get; }
    private readonly nint handle;

    public readonly nint CommWorld, Float, Double, Int64, Byte, Int, OpSum, OpMax;
    /// <summary>MPI_ANY_SOURCE: -1 in Open MPI's mpi.h, -2 in MPICH's.</summary>
    public readonly int AnySource;
    /// <summary>MPI_IN_PLACE: (void *) 1 in Open MPI's mpi.h, (void *) -1 in MPICH's.</summary>
    public readonly void* InPlace;
    /// <summary>MPI_STATUS_IGNORE: NULL in Open MPI's mpi.h, (MPI_Status *) 1 in MPICH's.</summary>
    private readonly void* statusIgnore;
    public readonly delegate* unmanaged<int*, int> Initialized;
    public readonly delegate* unmanaged<int*, byte***, int, int*, int> Init_thread;
    public readonly delegate* unmanaged<int*, int> Finalized;
    public readonly delegate* unmanaged<int> Finalize;
    private readonly delegate* unmanaged<int, byte*, int*, int> Error_string;
    // The functions with a handle parameter, called through the methods below at the ABI's handle width.
    private readonly nint commRank, commSize, ibarrier, ibcast, iallreduce, test, abort, isend, irecv, cancel;

    private MpiLibrary(string path, nint handle)
    {
        Path = path;
        this.handle = handle;
        if (NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out CommWorld))
        {
            Abi = MpiAbi.OpenMpi;
            InPlace = (void*)1;
            statusIgnore = null;
            Float = Global("ompi_mpi_float");
            Double = Global("ompi_mpi_double");
            Int64 = Global("ompi_mpi_int64_t");
            Byte = Global("ompi_mpi_byte");
            Int = Global("ompi_mpi_int");
            AnySource = -1;
            OpSum = Global("ompi_mpi_op_sum");
            OpMax = Global("ompi_mpi_op_max");
        }
        else if (NativeLibrary.TryGetExport(handle, "MPIR_Err_return_comm", out _))
        {
            // MPIR_ is the prefix of MPICH's internals, exported by MPICH and the libraries built from it.
            Abi = MpiAbi.Mpich;
            InPlace = (void*)MpichHandles.InPlace;
            statusIgnore = (void*)MpichHandles.StatusIgnore;
            CommWorld = MpichHandles.CommWorld;
            Float = MpichHandles.Float;
            Double = MpichHandles.Double;
            Int64 = MpichHandles.Int64;
            Byte = MpichHandles.Byte;
            Int = MpichHandles.Int;
            AnySource = MpichHandles.AnySource;
            OpSum = MpichHandles.OpSum;
            OpMax = MpichHandles.OpMax;
        }
        else
        {
            throw new MpiException($"{path} is neither Open MPI (it exports no ompi_mpi_comm_world) nor an MPICH-ABI library " +
                                   "(no MPIR_Err_return_comm); Kernels.Distributed supports those two ABIs " +
                                   "(install openmpi-bin libopenmpi-dev or mpich libmpich12, or set KERNELS_MPI_LIBRARY to libmpi.so.40 or libmpich.so.12)");
        }
        Initialized = (delegate* unmanaged<int*, int>)Function("MPI_Initialized");
        Init_thread = (delegate* unmanaged<int*, byte***, int, int*, int>)Function("MPI_Init_thread");
        Finalized = (delegate* unmanaged<int*, int>)Function("MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)Function("MPI_Finalize");
        commRank = Function("MPI_Comm_rank");
        commSize = Function("MPI_Comm_size");
        ibarrier = Function("MPI_Ibarrier");
        ibcast = Function("MPI_Ibcast");
        iallreduce = Function("MPI_Iallreduce");
        test = Function("MPI_Test");
        abort = Function("MPI_Abort");
        isend = Function("MPI_Isend");
        irecv = Function("MPI_Irecv");
        cancel = Function("MPI_Cancel");
        Error_string = (delegate* unmanaged<int, byte*, int*, int>)Function("MPI_Error_string");
        var getVersion = (delegate* unmanaged<byte*, int*, int>)Function("MPI_Get_library_version");
        var text = new byte[8192];   // MPI_MAX_LIBRARY_VERSION_STRING: 256 in Open MPI 4, 8192 in MPICH 4
        int length = 0;
        fixed (byte* t = text) getVersion(t, &length);
        Version = Encoding.ASCII.GetString(text, 0, Math.Clamp(length, 0, text.Length)).TrimEnd('\0').Split('\n')[0].Trim().TrimEnd(',');
        Version = string.Join(" ", Version.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));   // MPICH: "MPICH Version:\t4.0.2"
        // CUDA-aware builds export MPIX_Query_cuda_support (Open MPI's mpi-ext.h; MPICH 4 exports it too);
        // Debian's builds do and answer 0 (only meaningful after MPI_Init: asked in Initialize).
        NativeLibrary.TryGetExport(handle, "MPIX_Query_cuda_support", out cudaQuery);
    }

    private readonly nint cudaQuery;
    public bool CudaAwareAfterInit { get; private set; }

    private nint Global(string name) => NativeLibrary.TryGetExport(handle, name, out var a) ? a
        : throw new MpiException($"{Path} has no exported {name}: not the Open MPI ABI this library supports");

    private nint Function(string name) => NativeLibrary.TryGetExport(handle, name, out var a) ? a
        : throw new MpiException($"{Path} has no function {name} (an MPI-3 library is needed for the non-blocking collectives)");

    // ---- The calls that take a handle: nint for Open MPI, int for MPICH ------------------------------

    public int CommRank(int* rank) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int*, int>)commRank)(CommWorld, rank)
        : ((delegate* unmanaged<int, int*, int>)commRank)((int)CommWorld, rank);

    public int CommSize(int* size) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int*, int>)commSize)(CommWorld, size)
        : ((delegate* unmanaged<int, int*, int>)commSize)((int)CommWorld, size);

    public int Ibarrier(nint* request)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<nint, nint*, int>)ibarrier)(CommWorld, request);
        int r = 0;
        int code = ((delegate* unmanaged<int, int*, int>)ibarrier)((int)CommWorld, &r);
        *request = r;
        return code;
    }

    public int Ibcast(void* buffer, int count, nint type, int root, nint* request)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<void*, int, nint, int, nint, nint*, int>)ibcast)(buffer, count, type, root, CommWorld, request);
        int r = 0;
        int code = ((delegate* unmanaged<void*, int, int, int, int, int*, int>)ibcast)(buffer, count, (int)type, root, (int)CommWorld, &r);
        *request = r;
        return code;
    }

    /// <summary>MPI_Iallreduce in place on MPI_COMM_WORLD.</summary>
    public int IallreduceInPlace(void* buffer, int count, nint type, nint op, nint* request)
    {
        if (Abi == MpiAbi.OpenMpi)
            return ((delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int>)iallreduce)(InPlace, buffer, count, type, op, CommWorld, request);
        int r = 0;
        int code = ((delegate* unmanaged<void*, void*, int, int, int, int, int*, int>)iallreduce)(InPlace, buffer, count, (int)type, (int)op, (int)CommWorld, &r);
        *request = r;
        return code;
    }

    /// <summary>MPI_Test with MPI_STATUS_IGNORE; writes the request back (MPI sets it to MPI_REQUEST_NULL when done).</summary>
    public int Test(nint* request, int* flag)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<nint*, int*, void*, int>)test)(request, flag, statusIgnore);
        int r = (int)*request;
        int code = ((delegate* unmanaged<int*, int*, void*, int>)test)(&r, flag, statusIgnore);
        *request = r;
        return code;
    }

    /// <summary>MPI_Isend on MPI_COMM_WORLD.</summary>
    public int Isend(void* buffer, int count, nint type, int destination, int tag, nint* request) =>
        PointToPoint(isend, buffer, count, type, destination, tag, request);

    /// <summary>MPI_Irecv on MPI_COMM_WORLD (source may be <see cref="AnySource"/>).</summary>
    public int Irecv(void* buffer, int count, nint type, int source, int tag, nint* request) =>
        PointToPoint(irecv, buffer, count, type, source, tag, request);

    /// <summary>MPI_Isend and MPI_Irecv share one signature: (buf, count, datatype, peer, tag, comm, request).</summary>
    private int PointToPoint(nint function, void* buffer, int count, nint type, int peer, int tag, nint* request)
    {
        if (Abi == MpiAbi.OpenMpi)
            return ((delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int>)function)(buffer, count, type, peer, tag, CommWorld, request);
        int r = 0;
        int code = ((delegate* unmanaged<void*, int, int, int, int, int, int*, int>)function)(buffer, count, (int)type, peer, tag, (int)CommWorld, &r);
        *request = r;
        return code;
    }

    /// <summary>MPI_Cancel (the request still has to be completed, by MPI_Test, afterwards).</summary>
    public int Cancel(nint* request)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<nint*, int>)cancel)(request);
        int r = (int)*request;
        return ((delegate* unmanaged<int*, int>)cancel)(&r);
    }

    public int Abort(int errorCode) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int, int>)abort)(CommWorld, errorCode)
        : ((delegate* unmanaged<int, int, int>)abort)((int)CommWorld, errorCode);

    public static MpiLibrary Open()
    {
        var tried = Candidates();
        var reasons = new List<string>();
        foreach (var name in tried)
        {
            if (NativeLibrary.TryLoad(name, out var h)) return new MpiLibrary(name, h);
            reasons.Add($"{name}: not found or not loadable");
        }
        throw new MpiNotFoundException(tried, string.Join("; ", reasons));
    }

    public void Initialize()
    {
        int already;
        Check(Initialized(&already), "MPI_Initialized");
        if (already == 0)
        {
            if (Abi == MpiAbi.OpenMpi) ChooseNonBlockingAllReduce();
            int provided;
            Check(Init_thread(null, null, ThreadFunneled, &provided), "MPI_Init_thread");
            if (provided < ThreadFunneled)
                throw new MpiException($"{Path}: MPI_Init_thread gave thread level {provided}; MPI_THREAD_FUNNELED (1) is needed");
        }
        if (cudaQuery != 0) CudaAwareAfterInit = ((delegate* unmanaged<int>)cudaQuery)() != 0;
    }

    /// <summary>
    /// Open MPI's non-blocking all-reduce (coll/libnbc) picks, by default, an algorithm that ran at half the
    /// speed of its own blocking MPI_Allreduce here (2 ranks, shared memory, 1 M floats: 740 us against 342 us);
    /// forced to the ring (reduce-scatter then all-gather, what NCCL and Gloo use for large buffers) it runs
    /// as fast as the blocking one (352 us; 262 K floats 93 against 92 us). Every collective here is
    /// non-blocking (the timeout needs it), so the ring is the default unless the user chose an algorithm
    /// (the OMPI_MCA_ variable, read by MPI_Init: mpirun -x or --mca pass it to every rank alike). Set in the
    /// native environment: .NET's Environment.SetEnvironmentVariable does not reach getenv on Unix.
    /// </summary>
    private static void ChooseNonBlockingAllReduce()
    {
        const string name = "OMPI_MCA_coll_libnbc_iallreduce_algorithm";
        if (OperatingSystem.IsWindows() || Environment.GetEnvironmentVariable(name) is not null) return;
        SetNativeEnvironment(name, "1", overwrite: 0);   // 1: ring
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetNativeEnvironment([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    public void Check(int code, string function)
    {
        if (code == 0) return;
        var text = new byte[1024];   // MPI_MAX_ERROR_STRING: 256 in Open MPI, 512 in MPICH
        int length = 0;
        fixed (byte* t = text) Error_string(code, t, &length);
        throw new MpiException($"{function} failed with MPI error {code}: {Encoding.ASCII.GetString(text, 0, Math.Clamp(length, 0, text.Length))}");
    }
}
