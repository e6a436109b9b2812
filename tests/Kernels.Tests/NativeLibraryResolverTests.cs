// Where NativeLibraryResolver looks for the native library on each OS: the file name CMake gives it and
// the NuGet runtimes/<rid>/native/ folders, checked for Windows, Linux and macOS from whichever OS runs
// the tests (the Windows DLL itself is built and tested under wine by scripts/ci-windows.sh).
using System.Runtime.InteropServices;
using NUnit.Framework;

namespace Kernels.Tests;

public sealed class NativeLibraryResolverTests
{
    static readonly string App = Path.Combine(Path.GetTempPath(), "app");

    static string In(params string[] parts) => Path.Combine([App, .. parts]);

    [Test]
    public void LibraryFileName_IsWhatCMakeBuildsOnEachOS()
    {
        Assert.Multiple(() =>
        {
            Assert.That(NativeLibraryResolver.LibraryFileName(OSPlatform.Windows), Is.EqualTo("kernels.dll"));
            Assert.That(NativeLibraryResolver.LibraryFileName(OSPlatform.Linux), Is.EqualTo("libkernels.so"));
            Assert.That(NativeLibraryResolver.LibraryFileName(OSPlatform.OSX), Is.EqualTo("libkernels.dylib"));
        });
    }

    [Test]
    public void Candidates_OnWindowsX64_AreNextToTheAppThenTheWinX64PackageFolder()
    {
        var candidates = NativeLibraryResolver.Candidates(App, OSPlatform.Windows, Architecture.X64, "win-x64");
        Assert.That(candidates, Is.EqualTo(new[]
        {
            In("kernels.dll"),
            In("runtimes", "win-x64", "native", "kernels.dll"),   // Kernels.Native.win-x64's layout
        }));
    }

    [Test]
    public void Candidates_WithAMoreSpecificReportedRid_TryItBeforeThePortableOne()
    {
        var candidates = NativeLibraryResolver.Candidates(App, OSPlatform.Windows, Architecture.X64, "win10-x64");
        Assert.That(candidates, Is.EqualTo(new[]
        {
            In("kernels.dll"),
            In("runtimes", "win10-x64", "native", "kernels.dll"),
            In("runtimes", "win-x64", "native", "kernels.dll"),
        }));
    }

    [Test]
    public void Candidates_OnLinuxAndMacOS_UseTheirNamesAndRids()
    {
        Assert.Multiple(() =>
        {
            Assert.That(NativeLibraryResolver.Candidates(App, OSPlatform.Linux, Architecture.X64, "linux-x64"),
                Is.EqualTo(new[] { In("libkernels.so"), In("runtimes", "linux-x64", "native", "libkernels.so") }));
            Assert.That(NativeLibraryResolver.Candidates(App, OSPlatform.OSX, Architecture.Arm64, "osx-arm64"),
                Is.EqualTo(new[] { In("libkernels.dylib"), In("runtimes", "osx-arm64", "native", "libkernels.dylib") }));
        });
    }
}
