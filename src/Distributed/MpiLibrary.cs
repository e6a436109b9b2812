using System.Runtime.InteropServices;
using System.Text;

namespace Kernels.Distributed;

/// <summary>
/// The MPI entry points, looked up once in the shared library opened at run time. Open MPI's handles
/// (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are addresses of exported globals: <c>#define MPI_COMM_WORLD
/// OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)</c> in its mpi.h, so GetExport gives the handle.
/// </summary>
internal sealed unsafe class MpiLibrary
{
    // Open MPI's mpi.h: #define MPI_IN_PLACE ((void *) 1); MPI_THREAD_FUNNELED = 1 (the same in MPICH).
    public static readonly void* InPlace = (void*)1;
    private const int ThreadFunneled = 1;

    /// <summary>The names tried, in order: the KERNELS_MPI_LIBRARY path alone when set; else Open MPI's
    /// soname, the MPICH soname (recognised, to be refused with a clear message) and the unversioned link.</summary>
    public static string[] Candidates()
    {
        // An explicit choice is the only one tried: a wrong path must not silently fall back to another MPI.
        if (Environment.GetEnvironmentVariable("KERNELS_MPI_LIBRARY") is { Length: > 0 } explicitPath) return new[] { explicitPath };
        return new[] { "libmpi.so.40", "libmpi.so.12", "libmpi.so" };
    }

    public string Path { get; }
    public string Version { get; }
    private readonly nint handle;

    public readonly nint CommWorld, Float, Double, Int64, Byte, OpSum, OpMax;
    public readonly delegate* unmanaged<int*, int> Initialized;
    public readonly delegate* unmanaged<int*, byte***, int, int*, int> Init_thread;
    public readonly delegate* unmanaged<int*, int> Finalized;
    public readonly delegate* unmanaged<int> Finalize;
    public readonly delegate* unmanaged<nint, int*, int> Comm_rank;
    public readonly delegate* unmanaged<nint, int*, int> Comm_size;
    public readonly delegate* unmanaged<nint, nint*, int> Ibarrier;
    public readonly delegate* unmanaged<void*, int, nint, int, nint, nint*, int> Ibcast;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int> Iallreduce;
    public readonly delegate* unmanaged<nint*, int*, void*, int> Test;
    public readonly delegate* unmanaged<nint, int, int> Abort;
    private readonly delegate* unmanaged<int, byte*, int*, int> Error_string;

    private MpiLibrary(string path, nint handle)
    {
        Path = path;
        this.handle = handle;
        if (!NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out CommWorld))
        {
            bool mpich = NativeLibrary.TryGetExport(handle, "MPIR_Err_return_comm", out _) || path.Contains(".so.12", StringComparison.Ordinal);
            string what = mpich
                ? "is MPICH (or an MPICH-ABI library: Intel MPI, MVAPICH), whose MPI_COMM_WORLD is an integer constant, not an exported global"
                : "is not Open MPI (it exports no ompi_mpi_comm_world)";
            throw new MpiException($"{path} {what}; Kernels.Distributed supports the Open MPI ABI only " +
                                   "(install openmpi-bin libopenmpi-dev, or set KERNELS_MPI_LIBRARY to libmpi.so.40)");
        }
        Float = Global("ompi_mpi_float");
        Double = Global("ompi_mpi_double");
        Int64 = Global("ompi_mpi_int64_t");
        Byte = Global("ompi_mpi_byte");
        OpSum = Global("ompi_mpi_op_sum");
        OpMax = Global("ompi_mpi_op_max");
        Initialized = (delegate* unmanaged<int*, int>)Function("MPI_Initialized");
        Init_thread = (delegate* unmanaged<int*, byte***, int, int*, int>)Function("MPI_Init_thread");
        Finalized = (delegate* unmanaged<int*, int>)Function("MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)Function("MPI_Finalize");
        Comm_rank = (delegate* unmanaged<nint, int*, int>)Function("MPI_Comm_rank");
        Comm_size = (delegate* unmanaged<nint, int*, int>)Function("MPI_Comm_size");
        Ibarrier = (delegate* unmanaged<nint, nint*, int>)Function("MPI_Ibarrier");
        Ibcast = (delegate* unmanaged<void*, int, nint, int, nint, nint*, int>)Function("MPI_Ibcast");
        Iallreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int>)Function("MPI_Iallreduce");
        Test = (delegate* unmanaged<nint*, int*, void*, int>)Function("MPI_Test");
        Abort = (delegate* unmanaged<nint, int, int>)Function("MPI_Abort");
        Error_string = (delegate* unmanaged<int, byte*, int*, int>)Function("MPI_Error_string");
        var getVersion = (delegate* unmanaged<byte*, int*, int>)Function("MPI_Get_library_version");
        var text = new byte[8192];   // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI 4; generous
        int length = 0;
        fixed (byte* t = text) getVersion(t, &length);
        Version = Encoding.ASCII.GetString(text, 0, Math.Clamp(length, 0, text.Length)).TrimEnd('\0').Split('\n')[0].Trim().TrimEnd(',');
        // CUDA-aware builds export MPIX_Query_cuda_support (Open MPI's mpi-ext.h); Debian's build does and answers 0.
        // (only meaningful after MPI_Init: asked in Initialize).
        NativeLibrary.TryGetExport(handle, "MPIX_Query_cuda_support", out cudaQuery);
    }

    private readonly nint cudaQuery;
    public bool CudaAwareAfterInit { get; private set; }

    private nint Global(string name) => NativeLibrary.TryGetExport(handle, name, out var a) ? a
        : throw new MpiException($"{Path} has no exported {name}: not the Open MPI ABI this library supports");

    private nint Function(string name) => NativeLibrary.TryGetExport(handle, name, out var a) ? a
        : throw new MpiException($"{Path} has no function {name} (an MPI-3 library is needed for the non-blocking collectives)");

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
            int provided;
            Check(Init_thread(null, null, ThreadFunneled, &provided), "MPI_Init_thread");
            if (provided < ThreadFunneled)
                throw new MpiException($"{Path}: MPI_Init_thread gave thread level {provided}; MPI_THREAD_FUNNELED (1) is needed");
        }
        if (cudaQuery != 0) CudaAwareAfterInit = ((delegate* unmanaged<int>)cudaQuery)() != 0;
    }

    public void Check(int code, string function)
    {
        if (code == 0) return;
        var text = new byte[1024];   // MPI_MAX_ERROR_STRING is 256
        int length = 0;
        fixed (byte* t = text) Error_string(code, t, &length);
        throw new MpiException($"{function} failed with MPI error {code}: {Encoding.ASCII.GetString(text, 0, Math.Clamp(length, 0, text.Length))}");
    }
}
