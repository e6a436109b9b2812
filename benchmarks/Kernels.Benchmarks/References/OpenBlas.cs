using System.Runtime.InteropServices;

namespace Kernels.Benchmarks.References;

/// <summary>
/// The CPU reference: OpenBLAS's cblas_sgemm from Debian's libopenblas, called directly. Debian's build
/// is LP64 (32-bit blasint) with DYNAMIC_ARCH, so it picks its kernel for the CPU at load time;
/// <see cref="CoreName"/> says which one it chose and goes into every result file, because that choice
/// (not our code) decides what "1.0x OpenBLAS" means on a given machine.
/// </summary>
public static unsafe partial class OpenBlas
{
    const string Library = "libopenblas.so.0";
    const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [LibraryImport(Library)] private static partial void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);
    [LibraryImport(Library)] private static partial nint openblas_get_corename();
    [LibraryImport(Library)] private static partial nint openblas_get_config();
    [LibraryImport(Library)] private static partial int openblas_get_num_threads();

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    /// <summary>
    /// Makes OpenBLAS use its AVX-512 kernels ("SkylakeX") on a CPU with AVX-512. Debian 12's OpenBLAS
    /// 0.3.21 predates AMD Zen 4/5, and this workplace's machines export OPENBLAS_CORETYPE=Haswell
    /// besides, so by default it runs its AVX2 kernels, at about half the SGEMM speed of its AVX-512
    /// ones here (measured: ~200 against ~360 GFLOP/s at n = 1024 on 2 cores). A reference must be the
    /// library at its best on the machine, so OPENBLAS_CORETYPE is set to KERNELS_OPENBLAS_CORETYPE
    /// when that is set (e.g. "Haswell", to compare with the AVX2 kernels), else to SkylakeX where the
    /// CPU has AVX-512 F/BW/DQ/VL. Must run before libopenblas is loaded: OpenBLAS reads the variable
    /// once, when the library is opened. (Environment.SetEnvironmentVariable would not do: on Unix .NET
    /// keeps its own copy of the environment, which native getenv never sees.)
    /// </summary>
    public static void PreferWidestKernels()
    {
        string? wanted = Environment.GetEnvironmentVariable("KERNELS_OPENBLAS_CORETYPE");
        if (wanted is null && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported &&
            System.Runtime.Intrinsics.X86.Avx512DQ.IsSupported && System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported)
            wanted = "SkylakeX";
        if (!string.IsNullOrEmpty(wanted)) setenv("OPENBLAS_CORETYPE", wanted, 1);
    }

    /// <summary>Null when OpenBLAS loads, else why not (with the command that installs it).</summary>
    public static string? Unavailable => NativeLibrary.TryLoad(Library, out _) ? null
        : $"{Library} not found; install libopenblas-dev (scripts/install-prereqs.sh)";

    /// <summary>The kernel family OpenBLAS picked for this CPU, e.g. "Haswell" or "SkylakeX".</summary>
    public static string CoreName => Marshal.PtrToStringUTF8(openblas_get_corename()) ?? "?";

    /// <summary>Build configuration: version, threading, DYNAMIC_ARCH and so on.</summary>
    public static string Config => Marshal.PtrToStringUTF8(openblas_get_config()) ?? "?";

    /// <summary>Threads OpenBLAS runs on (OPENBLAS_NUM_THREADS, else every core).</summary>
    public static int Threads => openblas_get_num_threads();

    /// <summary>C = alpha op(A) op(B) + beta C, row-major, exactly as kn_gemm_f32 is called in the same case.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
                             float* b, int ldb, float beta, float* c, int ldc) =>
        cblas_sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
