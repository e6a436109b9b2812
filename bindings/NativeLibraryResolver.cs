using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Kernels;

/// <summary>
/// Finds libkernels for this assembly's imports: next to the assembly, then in
/// runtimes/&lt;rid&gt;/native/ under it (the NuGet layout), then through the system's own search.
/// When none works, the <see cref="DllNotFoundException"/> lists every place tried and why it failed,
/// so "it does not load" becomes "this file is missing" or "that file lacks libOpenCL.so.1".
/// Once loaded, the library's version must match the header the bindings were generated from.
/// </summary>
internal static unsafe class NativeLibraryResolver
{
    static readonly Lock s_gate = new();
    static nint s_library;
    // Set when the library found is another version; reported as ErrorNotSupported (these bindings
    // do not support that build) on every later attempt instead of loading it again.
    static string? s_versionError;

    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries",
        Justification = "The resolver must be in place before the first P/Invoke of this assembly, and it only affects this assembly's imports.")]
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);

    static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName != NativeMethods.Library)
            return 0;
        lock (s_gate)
        {
            // The runtime asks once per imported function; answer from the first load.
            if (s_versionError is not null)
                throw new KernelsException(Status.ErrorNotSupported, s_versionError);
            if (s_library != 0)
                return s_library;

            (nint library, string path) = Load(libraryName, assembly, searchPath);
            s_versionError = VersionMismatch(library, path);
            if (s_versionError is not null)
                throw new KernelsException(Status.ErrorNotSupported, s_versionError);
            s_library = library;
            return library;
        }
    }

    [UnconditionalSuppressMessage("SingleFile", "IL3000:Avoid accessing Assembly file path when publishing as a single file",
        Justification = "An empty Location (single-file app) falls back to AppContext.BaseDirectory.")]
    static (nint Library, string Path) Load(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        OSPlatform os = CurrentOS();
        string fileName = LibraryFileName(os);
        string assemblyDirectory = Path.GetDirectoryName(assembly.Location) is { Length: > 0 } directory
            ? directory
            : AppContext.BaseDirectory; // single-file apps have no assembly location

        var tried = new List<string>();
        foreach (string candidate in Candidates(assemblyDirectory, os, RuntimeInformation.ProcessArchitecture,
                                                RuntimeInformation.RuntimeIdentifier))
        {
            if (!File.Exists(candidate))
            {
                tried.Add($"{candidate} (not found)");
                continue;
            }
            try
            {
                return (NativeLibrary.Load(candidate), candidate);
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                // The file is there but the loader refused it: usually a missing dependency
                // (libOpenCL.so.1, libopenblas) or the wrong architecture. Its message says which.
                tried.Add($"{candidate} (exists but did not load: {e.Message.ReplaceLineEndings(" ").Trim()})");
            }
        }

        if (NativeLibrary.TryLoad(libraryName, assembly, searchPath, out nint library))
            return (library, libraryName);
        tried.Add($"'{libraryName}' through the system search ({SystemSearchDescription()}): not found");

        var message = new StringBuilder();
        message.Append($"Could not load the native library {fileName}. Tried, in order:");
        foreach (string attempt in tried)
            message.Append("\n  ").Append(attempt);
        message.Append("\nBuild it (cmake -S native -B build/native && cmake --build build/native) and rebuild the .NET project, ")
               .Append("or put it next to ").Append(assembly.GetName().Name).Append(".dll.");
        throw new DllNotFoundException(message.ToString());
    }

    static OSPlatform CurrentOS() =>
        OperatingSystem.IsWindows() ? OSPlatform.Windows : OperatingSystem.IsMacOS() ? OSPlatform.OSX : OSPlatform.Linux;

    /// <summary>
    /// The library's file name as CMake names it on <paramref name="os"/>: kernels.dll on Windows
    /// (no lib prefix, with MSVC and with mingw-w64 alike), libkernels.dylib on macOS, libkernels.so elsewhere.
    /// </summary>
    internal static string LibraryFileName(OSPlatform os) =>
        os == OSPlatform.Windows ? "kernels.dll" : os == OSPlatform.OSX ? "libkernels.dylib" : "libkernels.so";

    /// <summary>
    /// The files tried, in order: next to the assembly, then runtimes/&lt;rid&gt;/native/ (the NuGet layout)
    /// for the RID the runtime reports (when it is more specific) and the portable one (win-x64, linux-arm64, ...).
    /// </summary>
    internal static IEnumerable<string> Candidates(string assemblyDirectory, OSPlatform os, Architecture architecture,
                                                   string reportedRid)
    {
        string rid = os == OSPlatform.Windows ? "win" : os == OSPlatform.OSX ? "osx" : "linux";
        string portable = $"{rid}-{architecture.ToString().ToLowerInvariant()}";
        var directories = new List<string> { assemblyDirectory };
        if (reportedRid != portable)
            directories.Add(Path.Combine(assemblyDirectory, "runtimes", reportedRid, "native"));
        directories.Add(Path.Combine(assemblyDirectory, "runtimes", portable, "native"));
        string fileName = LibraryFileName(os);
        return directories.Distinct().Select(d => Path.Combine(d, fileName));
    }

    static string SystemSearchDescription() =>
        OperatingSystem.IsWindows() ? "the application directory, System32, PATH"
        : OperatingSystem.IsMacOS() ? "DYLD_LIBRARY_PATH, /usr/local/lib, /usr/lib"
        : "LD_LIBRARY_PATH, /etc/ld.so.cache, /lib, /usr/lib";

    /// <summary>
    /// Calls kn_get_version through the raw export: the generated import cannot be used here, since
    /// binding it would ask this very resolver again.
    /// </summary>
    static string? VersionMismatch(nint library, string path)
    {
        if (!NativeLibrary.TryGetExport(library, "kn_get_version", out nint export))
            return $"{path} has no kn_get_version export: it is not libkernels, or a build far older than these bindings.";
        var getVersion = (delegate* unmanaged<int*, int*, int*, Status>)export;
        int major, minor, patch;
        Status status = getVersion(&major, &minor, &patch);
        if (status != Status.Ok)
            return $"{path}: kn_get_version returned {status}.";
        // KERNELS_ACCEPT_OTHER_NATIVE_VERSION=1 lets the benchmarks' A/B check run these bindings over
        // the reference commit's library (scripts/ci-bench.sh): a function that library lacks then fails
        // at its first call (EntryPointNotFoundException), which that check reports as "not comparable".
        // Nothing else should set it: a changed signature under a matching name is not detected.
        if ((major != NativeConstants.KN_VERSION_MAJOR || minor != NativeConstants.KN_VERSION_MINOR)
            && Environment.GetEnvironmentVariable("KERNELS_ACCEPT_OTHER_NATIVE_VERSION") != "1")
            return $"{path} is libkernels {major}.{minor}.{patch}, but Kernels.Bindings was generated from kernels.h " +
                   $"{NativeConstants.KN_VERSION_MAJOR}.{NativeConstants.KN_VERSION_MINOR}.{NativeConstants.KN_VERSION_PATCH}; " +
                   "major and minor versions must match. Rebuild the native library and the bindings from the same checkout.";
        return null;
    }
}
