using System.Diagnostics;
using System.Runtime.InteropServices;
using Kernels.Benchmarks.References;

namespace Kernels.Benchmarks.Engine;

/// <summary>
/// How many threads the CPU sides use, and the clock that times them. <see cref="Limit"/> must run
/// before libkernels or OpenBLAS start their threads: both read their thread count from the
/// environment once (KN_NUM_THREADS, OPENBLAS_NUM_THREADS), and .NET's Environment.SetEnvironmentVariable
/// never reaches native getenv on Unix, hence setenv.
/// </summary>
public static unsafe partial class Threading
{
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    [StructLayout(LayoutKind.Sequential)]
    struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc")]
    private static partial int clock_gettime(int clock, Timespec* time);

    const int ClockProcessCpuTime = 2;  // CLOCK_PROCESS_CPUTIME_ID
    const int ClockThreadCpuTime = 3;   // CLOCK_THREAD_CPUTIME_ID

    /// <summary>Threads of the CPU sides; 0 = every core (the libraries' defaults).</summary>
    public static int Threads { get; private set; }

    public static void Limit(int threads)
    {
        if (threads <= 0) return;
        string n = threads.ToString(System.Globalization.CultureInfo.InvariantCulture);
        setenv("KN_NUM_THREADS", n, 1);
        setenv("OPENBLAS_NUM_THREADS", n, 1);
        setenv("POCL_MAX_PTHREAD_COUNT", n, 1);  // PoCL's CPU device: worker threads that run OpenCL kernels
        HostCopy.MaxThreads = threads;
        Threads = threads;
    }

    /// <summary>
    /// The clock of a case, and its name. With one thread, time a thread spends descheduled (other
    /// processes on the cores) should count for neither side, so the clock is CPU time: the calling
    /// thread's for the CPU device, where every instruction of both sides runs on it; the process's
    /// for PoCL's OpenCL CPU device, where both sides' kernels run on PoCL's one worker thread while
    /// the caller sleeps in clFinish. Otherwise (every core; a GPU) wall-clock time.
    /// </summary>
    public static (Func<double> Clock, string Name) ClockFor(Device device)
    {
        if (Threads == 1 && device.Kind == DeviceKind.Cpu) return (ThreadCpuSeconds, "thread CPU time");
        if (Threads == 1 && device.Kind == DeviceKind.OpenCL && device.Description.Contains("Portable Computing Language", StringComparison.Ordinal))
            return (ProcessCpuSeconds, "process CPU time");
        return (WallSeconds, "wall clock");
    }

    /// <summary>CPU seconds the calling thread has run.</summary>
    public static double ThreadCpuSeconds()
    {
        Timespec t;
        if (clock_gettime(ClockThreadCpuTime, &t) != 0) throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    /// <summary>CPU seconds all threads of the process have run.</summary>
    public static double ProcessCpuSeconds()
    {
        Timespec t;
        if (clock_gettime(ClockProcessCpuTime, &t) != 0) throw new InvalidOperationException("clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    /// <summary>Wall-clock seconds (monotonic).</summary>
    public static double WallSeconds() => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
}
