using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Regressions from the hostile-input probe (issue 12): IDX headers whose dimension product
/// overflows, gzip bombs and corrupt gzip, weights files that name a parameter twice, racing
/// Tensor.Dispose, huge shapes, saving leftovers and collisions, and non-finite training data.
/// Each test failed before its fix.
/// </summary>
[TestFixture]
public class HostileInputTests
{
    private string dir = "";

    [SetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-hostile-").FullName;

    [TearDown]
    public void RemoveDirectory()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    private static byte[] IdxHeader(params uint[] dims)
    {
        var header = new byte[4 + 4 * dims.Length];
        header[2] = 0x08;
        header[3] = (byte)dims.Length;
        for (int d = 0; d < dims.Length; d++)
        {
            header[4 + 4 * d] = (byte)(dims[d] >> 24);
            header[5 + 4 * d] = (byte)(dims[d] >> 16);
            header[6 + 4 * d] = (byte)(dims[d] >> 8);
            header[7 + 4 * d] = (byte)dims[d];
        }
        return header;
    }

    private static byte[] Gzip(params byte[][] parts)
    {
        using var memory = new MemoryStream();
        using (var gz = new GZipStream(memory, CompressionLevel.Fastest, leaveOpen: true))
            foreach (var p in parts) gz.Write(p);
        return memory.ToArray();
    }

    private string WriteFile(string name, byte[] bytes)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---- IDX: dimension products ------------------------------------------------------------------

    [Test]
    public void Idx_dimension_product_that_wraps_to_the_data_size_is_refused()
    {
        // 16 * 0x40008000 * 0x3fff8001 = 2^64 + 524288: in unchecked long arithmetic exactly the data size.
        var path = WriteFile("wrap-idx3-ubyte", IdxHeader(16, 1073774592, 1073709057).Concat(new byte[524288]).ToArray());
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("[16, 1073774592, 1073709057]"));
        Assert.That(e.Message, Does.Not.Match(@"(^|[\s(])-\d"), "no negative byte counts in the message");
    }

    [Test]
    public void Idx_dimension_product_that_wraps_to_zero_is_refused()
    {
        var path = WriteFile("zero-idx4-ubyte", IdxHeader(65536, 65536, 65536, 65536));
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("[65536, 65536, 65536, 65536]"));
    }

    [Test]
    public void Idx_declared_size_above_the_limit_is_refused_before_reading_the_data()
    {
        var path = WriteFile("big-idx1-ubyte", IdxHeader(5000).Concat(new byte[5000]).ToArray());
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path, maxDataBytes: 4096))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("5000").And.Contain("4096"));
        Assert.That(IdxFile.Read(path, maxDataBytes: 5000).Data, Has.Length.EqualTo(5000), "exactly at the limit loads");
    }

    [Test]
    public void Mnist_rows_times_cols_is_not_computed_in_int()
    {
        // 0 images of 65536 x 32768 pixels: rows * cols = 2^31 overflows an int.
        var mnist = Path.Combine(dir, "mnist");
        Directory.CreateDirectory(mnist);
        foreach (var prefix in new[] { "train", "t10k" })
        {
            File.WriteAllBytes(Path.Combine(mnist, $"{prefix}-images-idx3-ubyte"), IdxHeader(0, 65536, 32768));
            File.WriteAllBytes(Path.Combine(mnist, $"{prefix}-labels-idx1-ubyte"), IdxHeader(0));
        }
        var (train, _) = Mnist.Load(mnist);
        Assert.That(train.FeatureShape, Is.EqualTo(new[] { 65536L * 32768 }));
        Assert.That(train.Count, Is.Zero);
    }

    // ---- IDX: gzip ----------------------------------------------------------------------------------

    [Test]
    public void Gzip_bomb_behind_a_small_header_is_not_inflated_past_the_declared_size()
    {
        // A 10-byte IDX followed by 256 MiB of zeros: ~250 KB compressed. Reading must stop right after
        // the declared bytes, not inflate everything into memory first.
        var zeros = new byte[1 << 20];
        var parts = new List<byte[]> { IdxHeader(10), new byte[10] };
        for (int i = 0; i < 256; i++) parts.Add(zeros);
        var path = WriteFile("bomb-idx1-ubyte.gz", Gzip(parts.ToArray()));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain(path).And.Contain("trailing data"));
        Assert.That(allocated, Is.LessThan(16L << 20), $"allocated {allocated} bytes to refuse the bomb");
    }

    [Test]
    public void Gzip_whose_header_declares_more_than_deflate_can_hold_is_refused_before_inflating()
    {
        // 1 GiB declared in a file of ~40 bytes: deflate inflates at most ~1032:1.
        var path = WriteFile("liar-idx1-ubyte.gz", Gzip(IdxHeader(1u << 30)));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain(path).And.Contain("1073741824"));
        Assert.That(allocated, Is.LessThan(1L << 20));
    }

    [Test]
    public void Gzip_with_a_bad_crc_names_the_file_and_the_checksum()
    {
        var gz = Gzip(IdxHeader(3), new byte[] { 7, 1, 9 });
        gz[^8] ^= 0xff;   // the CRC32 in the trailer
        var path = WriteFile("crc-idx1-ubyte.gz", gz);
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("CRC"));
        Assert.That(e.Message, Does.Not.Contain("unsupported compression method"));
    }

    [Test]
    public void Gzip_with_corrupt_deflate_data_names_the_file()
    {
        var gz = Gzip(IdxHeader(3), new byte[] { 7, 1, 9 });
        gz[10] = 0xff;   // first byte of the deflate stream: block type 3 does not exist
        var path = WriteFile("deflate-idx1-ubyte.gz", gz);
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("deflate"));
        Assert.That(e.Message, Does.Not.Contain("unsupported compression method"));
    }

    [Test]
    public void Truncated_gzip_says_truncated_not_zero_bytes()
    {
        var gz = Gzip(IdxHeader(3), new byte[] { 7, 1, 9 });
        var path = WriteFile("cut-idx1-ubyte.gz", gz[..10]);
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("truncated"));
        Assert.That(e.Message, Does.Not.Contain("0 bytes is too short"));
    }

    [Test]
    public void Gzip_cut_inside_its_trailer_is_refused()
    {
        // Found by the fuzzer: the framework's GZipStream inflates a file whose trailer was cut off
        // and checks nothing, so the IDX inside looked whole.
        var gz = Gzip(IdxHeader(3), new byte[] { 7, 1, 9 });
        var path = WriteFile("trailer-idx1-ubyte.gz", gz[..^3]);
        var e = Assert.Throws<InvalidDataException>(() => IdxFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("truncated"));
    }

    [Test]
    public void Gzip_round_trip_still_loads()
    {
        var path = WriteFile("ok-idx2-ubyte.gz", Gzip(IdxHeader(2, 3), new byte[] { 1, 2, 3, 4, 5, 6 }));
        var (dims, data) = IdxFile.Read(path);
        Assert.That(dims, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(data, Is.EqualTo(new byte[] { 1, 2, 3, 4, 5, 6 }));
    }

    // ---- Weights files ------------------------------------------------------------------------------

    internal static Sequential ThreeLayers(int seed) =>
        new(new Dense(3, 4, seed: seed), Activation.Relu(), new Dense(4, 2, seed: seed + 1));

    /// <summary>A weights file with the given entries (name, shape, values), written byte by byte.</summary>
    internal static byte[] WeightsBytes(IEnumerable<(string Name, long[] Shape, float[] Values)> entries, int? count = null)
    {
        var list = entries.ToList();
        using var memory = new MemoryStream();
        using (var w = new BinaryWriter(memory, Encoding.UTF8, leaveOpen: true))
        {
            w.Write("KNWEIGHT"u8);
            w.Write(1);
            w.Write(count ?? list.Count);
            foreach (var (name, shape, values) in list)
            {
                var bytes = Encoding.UTF8.GetBytes(name);
                w.Write(bytes.Length);
                w.Write(bytes);
                w.Write(shape.Length);
                foreach (var d in shape) w.Write(d);
                foreach (var v in values) w.Write(v);
            }
        }
        return memory.ToArray();
    }

    internal static float[][] Snapshot(Module m) => m.NamedState().Select(p => p.Tensor.ToArray()).ToArray();

    [Test]
    public void Weights_file_naming_a_parameter_twice_is_refused_and_the_model_is_unchanged()
    {
        using var model = ThreeLayers(1);
        var state = model.NamedState().ToDictionary(p => p.Name, p => p.Tensor);
        var w0 = state["0.weight"];
        var bytes = WeightsBytes(new[]
        {
            ("0.weight", w0.ShapeArray, new float[w0.Count]),
            ("0.weight", w0.ShapeArray, new float[w0.Count]),
            ("2.weight", state["2.weight"].ShapeArray, new float[state["2.weight"].Count]),
            ("2.bias", state["2.bias"].ShapeArray, new float[state["2.bias"].Count]),
        });
        var path = WriteFile("repeated.knw", bytes);
        var before = Snapshot(model);
        var e = Assert.Throws<InvalidDataException>(() => WeightsFile.Load(model, path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("'0.weight'").And.Contain("more than once"));
        Assert.That(Snapshot(model), Is.EqualTo(before), "a refused file changes nothing");
    }

    [Test]
    public void Weights_file_with_a_corrupt_name_length_gives_a_short_message()
    {
        using var model = ThreeLayers(1);
        var good = WeightsBytes(model.NamedState().Select(p => (p.Name, p.Tensor.ShapeArray, p.Tensor.ToArray())));
        BitConverter.GetBytes(1000).CopyTo(good, 16);   // the first name's length, now reaching into the data
        var path = WriteFile("namelength.knw", good);
        var e = Assert.Throws<InvalidDataException>(() => WeightsFile.Load(model, path))!;
        Assert.That(e.Message, Does.Contain(path));
        Assert.That(e.Message.Length, Is.LessThan(path.Length + 250), $"message: {e.Message}");
    }

    // ---- Saving -------------------------------------------------------------------------------------

    [Test]
    public void Saving_to_an_unwritable_path_names_the_target()
    {
        using var model = ThreeLayers(1);
        var target = Path.Combine(dir, "no-such-directory", "model.knw");
        var e = Assert.Catch<IOException>(() => WeightsFile.Save(model, target))!;
        Assert.That(e.Message, Does.Contain(target));
        Assert.That(e.Message, Does.Not.Contain(".tmp"));
    }

    [Test]
    public void Saving_removes_temporaries_left_by_dead_processes_and_keeps_those_of_live_ones()
    {
        using var model = ThreeLayers(1);
        var target = Path.Combine(dir, "model.knw");
        int deadPid = DeadProcessId();
        var stale = WriteFile($".model.knw.{deadPid}.tmp", new byte[1000]);
        var staleUnique = WriteFile($".model.knw.{deadPid}.0123456789abcdef.tmp", new byte[1000]);
        var live = WriteFile($".model.knw.{Environment.ProcessId}.fedcba9876543210.tmp", new byte[10]);   // another save of ours, in flight
        var unrelated = WriteFile($".other.knw.{deadPid}.tmp", new byte[10]);
        WeightsFile.Save(model, target);
        Assert.That(File.Exists(stale), Is.False, "the temporary of a killed save is removed");
        Assert.That(File.Exists(staleUnique), Is.False);
        Assert.That(File.Exists(live), Is.True, "a temporary of a running process is left alone");
        Assert.That(File.Exists(unrelated), Is.True, "temporaries of other targets are left alone");
    }

    [Test]
    public void Kill_9_during_saves_keeps_the_last_file_loadable_and_the_next_save_removes_the_leftovers()
    {
        // The child is this test executable, which (see SaveLoopChild) saves a 4 MB model to the
        // target in a loop; it is killed (SIGKILL) while a temporary exists, i.e. mid-save.
        var target = Path.Combine(dir, "model.knw");
        using (var first = new Sequential(new Dense(1024, 1024, seed: 5))) WeightsFile.Save(first, target);
        int leftovers = 0;
        for (int kill = 0; kill < 2; kill++)
        {
            var output = new System.Text.StringBuilder();
            using var child = StartSaveLoopChild(target, output);
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (Directory.GetFiles(dir, $".model.knw.{child.Id}*.tmp").Length == 0)
            {
                if (child.HasExited || DateTime.UtcNow > deadline)
                {
                    if (!child.HasExited) child.Kill();
                    Assert.Fail($"the child never started a save; its output:\n{output}");
                }
                Thread.Sleep(1);
            }
            child.Kill();   // SIGKILL on Unix: no finally, no cleanup
            child.WaitForExit();
            leftovers += Directory.GetFiles(dir, $".model.knw.{child.Id}*.tmp").Length;
        }
        Assert.That(leftovers, Is.GreaterThan(0), "a kill landed mid-save (the test tested something)");
        using var model = new Sequential(new Dense(1024, 1024, seed: 6));
        WeightsFile.Load(model, target);   // the last complete save, whichever process wrote it
        WeightsFile.Save(model, target);
        Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EqualTo(new[] { "model.knw" }), "the killed saves' temporaries are gone");
    }

    private static Process StartSaveLoopChild(string target, System.Text.StringBuilder output)
    {
        var apphost = Path.Combine(AppContext.BaseDirectory, "Kernels.Nn.Tests");
        var start = File.Exists(apphost)
            ? new ProcessStartInfo(apphost)
            : new ProcessStartInfo("dotnet", $"exec \"{Path.Combine(AppContext.BaseDirectory, "Kernels.Nn.Tests.dll")}\"");
        start.Environment[SaveLoopChild.TargetVariable] = target;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        var child = Process.Start(start)!;
        child.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        child.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        return child;
    }

    private static int DeadProcessId()
    {
        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }

    [Test]
    public void Two_threads_saving_to_one_path_do_not_collide()
    {
        using var model = ThreeLayers(1);
        var target = Path.Combine(dir, "model.knw");
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = Enumerable.Range(0, 4).Select(_ => new Thread(() =>
        {
            for (int i = 0; i < 25; i++)
            {
                try { WeightsFile.Save(model, target); }
                catch (Exception e) { errors.Add(e); }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.That(errors, Is.Empty, string.Join("\n", errors.Select(e => e.Message).Distinct()));
        using var copy = ThreeLayers(7);
        WeightsFile.Load(copy, target);
        Assert.That(Snapshot(copy), Is.EqualTo(Snapshot(model)));
        Assert.That(Directory.GetFiles(dir), Is.EqualTo(new[] { target }), "no temporary left");
    }

    // ---- Tensor lifetime ----------------------------------------------------------------------------

    [Test]
    public void Racing_disposes_keep_the_live_count_and_a_detached_view_intact()
    {
        const int rounds = 20_000;
        long liveBefore = Tensor.LiveCount;
        var views = new Tensor[rounds];
        var tensors = new Tensor[rounds];
        for (int i = 0; i < rounds; i++)
        {
            tensors[i] = Tensor.Full(new long[] { 2 }, i);
            views[i] = tensors[i].Detach();
        }
        // Both threads meet before each tensor (a spinning rendezvous), then dispose it at once.
        int arrived = 0;
        void DisposeAll()
        {
            for (int i = 0; i < rounds; i++)
            {
                Interlocked.Increment(ref arrived);
                int target = 2 * (i + 1);
                while (Volatile.Read(ref arrived) < target) { }
                tensors[i].Dispose();
            }
        }
        var other = new Thread(DisposeAll);
        other.Start();
        DisposeAll();
        other.Join();
        Assert.That(Tensor.LiveCount, Is.EqualTo(liveBefore + rounds), "each tensor counted out once; the views remain");
        for (int i = 0; i < rounds; i++)
        {
            Assert.That(views[i].ToArray(), Is.EqualTo(new float[] { i, i }), $"view {i} still reads its storage");
            views[i].Dispose();
        }
        Assert.That(Tensor.LiveCount, Is.EqualTo(liveBefore));
    }

    [Test]
    public void Finalizers_and_disposes_on_other_threads_free_each_storage_once()
    {
        // A guard, not a regression (it passed before the Interlocked fix too): half of each pair of
        // tensors sharing storage is dropped for the finalizer thread, the other half disposed on
        // another thread; every device buffer is freed exactly once (no crash, none left live).
        const int pairs = 2000;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var buffersBefore = Device.Cpu.GetMemoryStats().LiveBuffers;
        long liveBefore = Tensor.LiveCount;
        var views = new System.Collections.Concurrent.BlockingCollection<Tensor>();
        var disposer = new Thread(() => { foreach (var v in views.GetConsumingEnumerable()) v.Dispose(); });
        disposer.Start();
        MakePairs(pairs, views);
        views.CompleteAdding();
        disposer.Join();
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.That(Device.Cpu.GetMemoryStats().LiveBuffers, Is.EqualTo(buffersBefore), "every storage was freed, by its last user");
        Assert.That(Tensor.LiveCount, Is.EqualTo(liveBefore + pairs), "the dropped tensors were never disposed, so they still count");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void MakePairs(int pairs, System.Collections.Concurrent.BlockingCollection<Tensor> views)
    {
        for (int i = 0; i < pairs; i++)
        {
            var t = Tensor.Full(new long[] { 16 }, i);   // dropped: only the finalizer can free its storage
            views.Add(t.Detach());
            if (i % 100 == 0) GC.Collect();
        }
    }

    [Test]
    public void Huge_shapes_give_an_argument_exception_naming_the_shape()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros(new long[] { 1L << 62, 4 }))!;
        Assert.That(e.Message, Does.Contain("[4611686018427387904, 4]"));
        var bytes = Assert.Throws<ArgumentException>(() => Tensor.Zeros(new long[] { 1L << 61, 2 }))!;   // 2^62 elements, 2^64 bytes
        Assert.That(bytes.Message, Does.Contain("[2305843009213693952, 2]"));
    }

    // ---- Training faults ----------------------------------------------------------------------------

    private static LossFunction SparseCrossEntropy => Losses.SparseCategoricalCrossEntropy;

    private static Model SmallModel(out Sequential network)
    {
        network = new Sequential(new Dense(2, 8, seed: 1), Activation.Tanh(), new Dense(8, 3, seed: 2));
        var model = new Model(network);
        model.Compile(new Adam(network.Parameters(), 0.01f), SparseCrossEntropy);
        return model;
    }

    [Test]
    public void Infinite_input_stops_training_at_its_own_batch_with_the_model_still_finite()
    {
        using var model = SmallModel(out var network);
        // Fit's per-step check (one read per batch); by default Fit finds a bad batch at its next
        // read, after the steps up to it (FitReadsTests).
        model.CheckFiniteEachStep = true;
        // Batches of 2: batch 2 (samples 2, 3) holds +Inf. tanh keeps the loss finite; the gradient is not.
        var x = new float[] { 0.1f, 0.2f, 0.3f, -0.1f, float.PositiveInfinity, 0.5f, 0.2f, 0.1f, -0.3f, 0.4f, 0.5f, 0.5f };
        var data = new ArrayDataset(x, new long[] { 2 }, new float[] { 0, 1, 2, 0, 1, 2 });
        var e = Assert.Throws<ArithmeticException>(() => model.Fit(data, epochs: 1, batchSize: 2, shuffle: false, verbose: 0))!;
        Assert.That(e.Message, Does.Contain("epoch 1, batch 2"));
        Assert.That(network.Parameters().SelectMany(p => p.ToArray()).All(float.IsFinite), Is.True, "the bad batch was not applied");
    }

    [Test]
    public void NaN_in_validation_data_is_an_error_naming_the_validation_batch()
    {
        using var model = SmallModel(out _);
        var train = new ArrayDataset(new float[] { 0.1f, 0.2f, 0.3f, -0.1f }, new long[] { 2 }, new float[] { 0, 1 });
        var validation = new ArrayDataset(new float[] { 0.1f, 0.2f, float.NaN, -0.1f }, new long[] { 2 }, new float[] { 0, 1 });
        var e = Assert.Throws<ArithmeticException>(() => model.Fit(train, epochs: 1, batchSize: 1, validationData: validation, verbose: 0))!;
        Assert.That(e.Message, Does.Contain("validation").And.Contain("batch 2"));
    }

    [Test]
    public void Validation_split_that_is_not_a_fraction_is_an_argument_error()
    {
        using var model = SmallModel(out _);
        var train = new ArrayDataset(new float[8], new long[] { 2 }, new float[4]);
        foreach (var split in new[] { double.NaN, -0.5, 1.0, double.PositiveInfinity })
        {
            var e = Assert.Catch<ArgumentException>(() => model.Fit(train, epochs: 1, validationSplit: split, verbose: 0), $"split {split}")!;
            Assert.That(e.Message, Does.Contain(split.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
    }
}

/// <summary>
/// The child process of the kill -9 test: when this test executable starts with
/// KERNELS_SAVE_LOOP_TARGET set, it saves a 4 MB model to that path until it is killed, before the
/// test platform even starts. (A module initializer rather than a test, so that no test in the normal
/// run is skipped or passes without checking anything.)
/// </summary>
internal static class SaveLoopChild
{
    public const string TargetVariable = "KERNELS_SAVE_LOOP_TARGET";

#pragma warning disable CA2255 // a module initializer in a test executable, on purpose
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void SaveUntilKilled()
    {
        var target = Environment.GetEnvironmentVariable(TargetVariable);
        if (string.IsNullOrEmpty(target)) return;
        using var model = new Sequential(new Dense(1024, 1024, seed: 5));
        while (true) WeightsFile.Save(model, target);
    }
}
