using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using CsCheck;
using Google.Protobuf;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Property-based fuzzing (CsCheck) of the file readers (IDX, weights files, safetensors, state dicts, model
/// specs): random valid files (generated here, so no
/// seed corpus is checked in), then random mutations of them (byte overwrites, truncations, random
/// int32 fields, insertions, deletions). Whatever comes out, reading it either loads exactly what an
/// independent reference parser in this file reads, or throws <see cref="InvalidDataException"/>
/// naming the file; never another exception type, never an allocation beyond the file's worth, and
/// a refused weights file leaves the model unchanged.
///
/// CI runs a fixed number of iterations per target (KERNELS_FUZZ_ITERATIONS, default 3000).
/// A longer run: KERNELS_FUZZ_SECONDS=1800 runs each target for that many seconds instead.
/// A failure prints CsCheck's seed; CsCheck_Seed=&lt;seed&gt; replays it.
/// </summary>
[TestFixture]
public class ReaderFuzzTests
{
    private static string dir = "";

    [OneTimeSetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-fuzz-").FullName;

    [OneTimeTearDown]
    public void RemoveDirectory() => Directory.Delete(dir, recursive: true);

    /// <param name="threads">CsCheck's worker threads (-1: all cores); 1 where the property reads a global
    /// counter such as <see cref="Tensor.LiveCount"/>.</param>
    private static void Run<T>(Gen<T> gen, Action<T> property, Func<T, string> print, int threads = -1)
    {
        var seconds = Environment.GetEnvironmentVariable("KERNELS_FUZZ_SECONDS");
        var iterations = Environment.GetEnvironmentVariable("KERNELS_FUZZ_ITERATIONS");
        int count = 0;
        void Counted(T value) { Interlocked.Increment(ref count); property(value); }
        if (int.TryParse(seconds, out int s) && s > 0)
            gen.Sample(Counted, time: s, threads: threads, print: print);
        else
            gen.Sample(Counted, iter: int.TryParse(iterations, out int n) && n > 0 ? n : 3000, threads: threads, print: print);
        TestContext.Out.WriteLine($"{TestContext.CurrentContext.Test.Name}: {count} inputs");
    }

    // ---- Mutations ----------------------------------------------------------------------------------

    /// <summary>One edit of a file; positions are taken modulo the file length when applied.</summary>
    public sealed record Mutation(int Kind, int Position, int Value, int Length)
    {
        public byte[] Apply(byte[] file, bool bigEndian)
        {
            var list = new List<byte>(file);
            int n = list.Count;
            int p = n == 0 ? 0 : (int)((uint)Position % (uint)n);
            switch (Kind)
            {
                case 0:   // overwrite one byte
                    if (n > 0) list[p] = (byte)Value;
                    break;
                case 1:   // truncate
                    list.RemoveRange(p, n - p);
                    break;
                case 2:   // a random int32 over a field, most often in the first 48 bytes (headers, names, ranks)
                    if (n >= 4)
                    {
                        int q = (Length & 1) == 0 ? (int)((uint)Position % (uint)Math.Min(n - 3, 48)) : (int)((uint)Position % (uint)(n - 3));
                        var field = new byte[4];
                        if (bigEndian) BinaryPrimitives.WriteInt32BigEndian(field, Value); else BinaryPrimitives.WriteInt32LittleEndian(field, Value);
                        for (int i = 0; i < 4; i++) list[q + i] = field[i];
                    }
                    break;
                case 3:   // insert bytes
                    list.InsertRange(p, Enumerable.Range(0, Length).Select(i => (byte)(Value >> (8 * (i & 3)))));
                    break;
                case 4:   // delete bytes
                    list.RemoveRange(p, Math.Min(Length, n - p));
                    break;
                default:  // duplicate a chunk somewhere else (repeated names, repeated entries)
                    if (n > 0)
                    {
                        int from = (int)((uint)Value % (uint)n);
                        var chunk = list.GetRange(from, Math.Min(Length * 4, n - from));
                        list.InsertRange(p, chunk);
                    }
                    break;
            }
            return list.ToArray();
        }
    }

    private static readonly Gen<Mutation> GenMutation =
        Gen.Select(Gen.Int[0, 5], Gen.Int, Gen.OneOf(Gen.Int, Gen.Int[-2, 300], Gen.Const(int.MaxValue), Gen.Const(int.MinValue)), Gen.Int[0, 64],
                   (kind, position, value, length) => new Mutation(kind, position, value, length));

    private static byte[] Mutate(byte[] file, Mutation[] mutations, bool bigEndian)
    {
        foreach (var m in mutations) file = m.Apply(file, bigEndian);
        return file;
    }

    private static string Print(byte[] file) => file.Length <= 96 ? Convert.ToHexString(file) : Convert.ToHexString(file, 0, 96) + $"... ({file.Length} bytes)";

    private static int fileCounter;

    private static string WriteTemp(byte[] bytes, string suffix)
    {
        var path = Path.Combine(dir, $"case{Interlocked.Increment(ref fileCounter)}{suffix}");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---- IDX ----------------------------------------------------------------------------------------

    private static byte[] IdxBytes(int[] dims, byte[] data)
    {
        var header = new byte[4 + 4 * dims.Length];
        header[2] = 0x08;
        header[3] = (byte)dims.Length;
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * d), dims[d]);
        return header.Concat(data).ToArray();
    }

    private static byte[] Gzip(byte[] bytes)
    {
        using var memory = new MemoryStream();
        using (var gz = new GZipStream(memory, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(bytes);
        return memory.ToArray();
    }

    private static readonly Gen<byte[]> GenIdx =
        Gen.Int[1, 4].SelectMany(rank => Gen.Int[0, 6].Array[rank]).SelectMany(dims =>
            Gen.Byte.Array[dims.Aggregate(1, (a, b) => a * b)].Select(data => IdxBytes(dims, data)));

    /// <summary>The reference: the IDX definition read plainly, with BigInteger sizes; null when invalid.
    /// A gzip file must be one whole member: the framework's GZipStream inflates a file whose trailer
    /// was cut off without a word, so its last 4 bytes (the length, RFC 1952) are checked here.</summary>
    private static (int[] Dims, byte[] Data)? ReferenceIdx(byte[] file)
    {
        byte[] raw = file;
        if (file.Length >= 2 && file[0] == 0x1f && file[1] == 0x8b)
        {
            try
            {
                using var gz = new GZipStream(new MemoryStream(file), CompressionMode.Decompress);
                using var inflated = new MemoryStream();
                gz.CopyTo(inflated);
                raw = inflated.ToArray();
            }
            catch (InvalidDataException) { return null; }
            if (file.Length < 18 || BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(file.Length - 4)) != (uint)raw.Length) return null;
        }
        if (raw.Length < 4 || raw[0] != 0 || raw[1] != 0 || raw[2] != 8 || raw[3] < 1 || raw[3] > 4) return null;
        int rank = raw[3];
        if (raw.Length < 4 + 4 * rank) return null;
        var dims = new int[rank];
        System.Numerics.BigInteger size = 1;
        for (int d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(raw.AsSpan(4 + 4 * d));
            if (dims[d] < 0) return null;
            size *= dims[d];
        }
        if (size != raw.Length - (4 + 4 * rank)) return null;
        return (dims, raw[(4 + 4 * rank)..]);
    }

    private static void CheckIdx(byte[] file, string suffix)
    {
        var path = WriteTemp(file, suffix);
        var expected = ReferenceIdx(file);
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            var (dims, data) = IdxFile.Read(path);
            Assert.That(expected, Is.Not.Null, "the reader accepted a file the reference refuses");
            Assert.That(dims, Is.EqualTo(expected!.Value.Dims));
            Assert.That(data, Is.EqualTo(expected.Value.Data));
        }
        catch (InvalidDataException e)
        {
            Assert.That(e.Message, Does.StartWith(path), "the message names the file");
            Assert.That(expected, Is.Null, $"the reader refused a file the reference reads: {e.Message}");
        }
        finally
        {
            File.Delete(path);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.LessThan((1 << 20) + 2048L * file.Length), "allocation stays within what the file can hold");
    }

    [Test]
    public void Idx_raw_mutations_load_correctly_or_throw_InvalidDataException_naming_the_file() =>
        Run(Gen.Select(GenIdx, GenMutation.Array[1, 4]), t => CheckIdx(Mutate(t.Item1, t.Item2, bigEndian: true), "-idx"),
            t => Print(Mutate(t.Item1, t.Item2, true)));

    [Test]
    public void Idx_gzip_mutations_load_correctly_or_throw_InvalidDataException_naming_the_file() =>
        // Mutating before compressing exercises the header checks behind gzip; after, the gzip layer.
        Run(Gen.Select(GenIdx, GenMutation.Array[1, 4], Gen.Bool),
            t => CheckIdx(t.Item3 ? Mutate(Gzip(t.Item1), t.Item2, true) : Gzip(Mutate(t.Item1, t.Item2, true)), "-idx.gz"),
            t => Print(t.Item3 ? Mutate(Gzip(t.Item1), t.Item2, true) : Gzip(Mutate(t.Item1, t.Item2, true))));

    // ---- Weights ------------------------------------------------------------------------------------

    private static readonly (string Name, long[] Shape)[] Layout = LayoutOfThreeLayers();

    private static (string, long[])[] LayoutOfThreeLayers()
    {
        using var m = HostileInputTests.ThreeLayers(0);
        return m.NamedState().Select(p => (p.Name, p.Tensor.ShapeArray.ToArray())).ToArray();
    }

    // A valid file for ThreeLayers: random values (NaN and infinity included: they are data), entries in a random order.
    private static readonly Gen<byte[]> GenWeights =
        Gen.Select(Gen.Int, Gen.Int[0, Layout.Length - 1].Array[Layout.Length], (seed, order) =>
        {
            var random = new Random(seed);
            var entries = Layout.Select(l => (l.Name, l.Shape, Enumerable.Range(0, (int)l.Shape.Aggregate(1L, (a, b) => a * b))
                .Select(_ => random.Next(50) == 0 ? float.NaN : (float)(random.NextDouble() * 4 - 2)).ToArray())).ToList();
            for (int i = 0; i < order.Length; i++) (entries[i], entries[order[i]]) = (entries[order[i]], entries[i]);
            return HostileInputTests.WeightsBytes(entries);
        });

    /// <summary>The reference: the documented layout read plainly; the values by name when the file fits the model, else null.</summary>
    private static Dictionary<string, float[]>? ReferenceWeights(byte[] file)
    {
        try
        {
            using var r = new BinaryReader(new MemoryStream(file));
            if (!r.ReadBytes(8).AsSpan().SequenceEqual("KNWEIGHT"u8) || r.ReadInt32() != 1) return null;
            int count = r.ReadInt32();
            if (count != Layout.Length) return null;
            var values = new Dictionary<string, float[]>();
            for (int i = 0; i < count; i++)
            {
                int nameLength = r.ReadInt32();
                if (nameLength < 0 || nameLength > 1024) return null;
                var nameBytes = r.ReadBytes(nameLength);
                if (nameBytes.Length != nameLength) return null;
                var name = Encoding.UTF8.GetString(nameBytes);
                var layout = Layout.FirstOrDefault(l => l.Name == name);
                if (layout.Name is null || values.ContainsKey(name)) return null;
                int rank = r.ReadInt32();
                if (rank != layout.Shape.Length) return null;
                for (int d = 0; d < rank; d++) if (r.ReadInt64() != layout.Shape[d]) return null;
                var v = new float[layout.Shape.Aggregate(1L, (a, b) => a * b)];
                for (int k = 0; k < v.Length; k++) v[k] = r.ReadSingle();
                values[name] = v;
            }
            return r.BaseStream.Position == file.Length ? values : null;
        }
        catch (EndOfStreamException) { return null; }
    }

    private static int[] Bits(float[] v) => v.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void Weights_mutations_load_correctly_or_throw_InvalidDataException_with_the_model_unchanged() =>
        Run(Gen.Select(GenWeights, GenMutation.Array[1, 4]), t =>
        {
            var file = Mutate(t.Item1, t.Item2, bigEndian: false);
            var path = WriteTemp(file, ".knw");
            using var model = HostileInputTests.ThreeLayers(3);
            var before = model.NamedState().ToDictionary(p => p.Name, p => Bits(p.Tensor.ToArray()));
            var expected = ReferenceWeights(file);
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                WeightsFile.Load(model, path);
                Assert.That(expected, Is.Not.Null, "the loader accepted a file the reference refuses");
                foreach (var (name, tensor) in model.NamedState())
                    Assert.That(Bits(tensor.ToArray()), Is.EqualTo(Bits(expected![name])), name);
            }
            catch (InvalidDataException e)
            {
                Assert.That(e.Message, Does.StartWith(path), "the message names the file");
                Assert.That(e.Message.Length, Is.LessThan(path.Length + 300), $"the message is short: {e.Message}");
                Assert.That(expected, Is.Null, $"the loader refused a file the reference reads: {e.Message}");
                foreach (var (name, tensor) in model.NamedState())
                    Assert.That(Bits(tensor.ToArray()), Is.EqualTo(before[name]), $"{name} unchanged after a refused file");
            }
            finally
            {
                File.Delete(path);
            }
            allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
            Assert.That(allocated, Is.LessThan((1 << 20) + 64L * file.Length), "allocation stays within what the file can hold");
        }, t => Print(Mutate(t.Item1, t.Item2, false)));

    // ---- safetensors --------------------------------------------------------------------------------

    private static readonly string[] FuzzDtypes = { "F32", "I32", "I64", "F16", "BF16", "U8", "I16", "F64", "BOOL" };
    private static readonly string[] FuzzNames = { "a", "0.weight", "1.running_mean", "weight_ih_l0", "é", "x y", "", "__meta" };

    /// <summary>A valid safetensors file written here by hand (not by SafeTensors): 0-4 tensors of random dtypes
    /// and shapes, the header's entries in a random order, metadata or not, random padding.</summary>
    private static readonly Gen<byte[]> GenSafeTensors =
        Gen.Select(Gen.Int, Gen.Int[0, 4], (seed, count) =>
        {
            var random = new Random(seed);
            var names = FuzzNames.OrderBy(_ => random.Next()).Take(count).ToArray();
            var entries = new List<string>();
            var data = new List<byte>();
            foreach (var name in names)
            {
                var dtype = FuzzDtypes[random.Next(FuzzDtypes.Length)];
                var shape = Enumerable.Range(0, random.Next(4)).Select(_ => random.Next(4)).ToArray();
                int bytes = shape.Aggregate(1, (a, b) => a * b) * SafeTensors.ItemSize(dtype);
                entries.Add($"{JsonSerializer.Serialize(name)}:{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{data.Count},{data.Count + bytes}]}}");
                for (int i = 0; i < bytes; i++) data.Add((byte)random.Next(256));
            }
            if (random.Next(2) == 0) entries.Add("\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"}");
            var header = "{" + string.Join(",", entries.OrderBy(_ => random.Next())) + "}" + new string(' ', random.Next(8));
            var json = Encoding.UTF8.GetBytes(header);
            var file = new byte[8 + json.Length + data.Count];
            BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
            json.CopyTo(file, 8);
            data.CopyTo(file, 8 + json.Length);
            return file;
        });

    private sealed record SafeTensor(string Dtype, long[] Shape, byte[] Data);

    private static readonly Dictionary<string, int> FormatItemSizes = new()
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["I16"] = 2, ["U16"] = 2, ["F16"] = 2,
        ["BF16"] = 2, ["I32"] = 4, ["U32"] = 4, ["F32"] = 4, ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    /// <summary>The reference: the format's description (and the reference implementation's checks) read plainly,
    /// with BigInteger sizes, plus our two documented limits (int64 numbers, rank at most 8); null when invalid.</summary>
    private static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata)? ReferenceSafeTensors(byte[] file)
    {
        if (file.Length < 8) return null;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (n > 100_000_000 || 8 + n > (ulong)file.Length || n == 0 || file[8] != (byte)'{') return null;
        string text;
        try { text = new UTF8Encoding(false, true).GetString(file, 8, (int)n); }
        catch (DecoderFallbackException) { return null; }
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException) { return null; }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return null;
            var metadata = new Dictionary<string, string>();
            var infos = new List<(string Name, string Dtype, long[] Shape, long Begin, long End)>();
            var names = new HashSet<string>();
            static long[]? Numbers(JsonElement e)
            {
                if (e.ValueKind != JsonValueKind.Array) return null;
                var list = new List<long>();
                foreach (var x in e.EnumerateArray())
                {
                    if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out long v) || v < 0) return null;
                    list.Add(v);
                }
                return list.ToArray();
            }
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(p.Name)) return null;
                if (p.Name == "__metadata__")
                {
                    if (p.Value.ValueKind == JsonValueKind.Null) continue;
                    if (p.Value.ValueKind != JsonValueKind.Object) return null;
                    foreach (var m in p.Value.EnumerateObject())
                        if (m.Value.ValueKind != JsonValueKind.String || !metadata.TryAdd(m.Name, m.Value.GetString()!)) return null;
                    continue;
                }
                if (p.Value.ValueKind != JsonValueKind.Object) return null;
                var fields = p.Value.EnumerateObject().ToList();
                if (fields.GroupBy(f => f.Name).Any(g => g.Count() > 1)) return null;
                var dtype = fields.FirstOrDefault(f => f.Name == "dtype").Value;
                var shapeField = fields.FirstOrDefault(f => f.Name == "shape").Value;
                var offsetsField = fields.FirstOrDefault(f => f.Name == "data_offsets").Value;
                if (dtype.ValueKind != JsonValueKind.String || !FormatItemSizes.ContainsKey(dtype.GetString()!)) return null;
                var shape = Numbers(shapeField);
                var offsets = Numbers(offsetsField);
                if (shape is null || shape.Length > 8 || offsets is null || offsets.Length != 2) return null;
                infos.Add((p.Name, dtype.GetString()!, shape, offsets[0], offsets[1]));
            }
            long end = 0;
            var tensors = new Dictionary<string, SafeTensor>();
            foreach (var t in infos.OrderBy(t => t.Begin).ThenBy(t => t.End))
            {
                if (t.Begin != end || t.End < t.Begin) return null;
                System.Numerics.BigInteger size = FormatItemSizes[t.Dtype];
                foreach (var d in t.Shape) size *= d;
                if (size != t.End - t.Begin) return null;
                // The reader multiplies sequentially in int64, so [2^40, 2^40, 0] overflows there: refused.
                System.Numerics.BigInteger partial = 1;
                foreach (var d in t.Shape) { partial *= d; if (partial > long.MaxValue) return null; }
                end = t.End;
            }
            if (8 + (long)n + end != file.Length) return null;
            foreach (var t in infos)
                tensors[t.Name] = new SafeTensor(t.Dtype, t.Shape, file[(int)(8 + (long)n + t.Begin)..(int)(8 + (long)n + t.End)]);
            return (tensors, metadata);
        }
    }

    [Test]
    public void SafeTensors_mutations_load_correctly_or_throw_InvalidDataException_naming_the_file()
    {
        int accepted = 0;
        Run(Gen.Select(GenSafeTensors, GenMutation.Array[0, 3]), t =>
        {
            var file = Mutate(t.Item1, t.Item2, bigEndian: false);
            var path = WriteTemp(file, ".safetensors");
            var expected = ReferenceSafeTensors(file);
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var read = SafeTensors.Read(path);
                Assert.That(expected, Is.Not.Null, "the reader accepted a file the reference refuses");
                Interlocked.Increment(ref accepted);
                Assert.That(read.Metadata, Is.EquivalentTo(expected!.Value.Metadata));
                Assert.That(read.Tensors.Select(i => i.Name), Is.EquivalentTo(expected.Value.Tensors.Keys));
                foreach (var info in read.Tensors)
                {
                    var e = expected.Value.Tensors[info.Name];
                    Assert.That(info.Dtype, Is.EqualTo(e.Dtype));
                    Assert.That(info.Shape, Is.EqualTo(e.Shape));
                    Assert.That(read.ReadBytes(info), Is.EqualTo(e.Data));
                    if (SafeTensors.LoadsAs(info.Dtype) is null)
                        Assert.Throws<InvalidDataException>(() => read.ReadTensor(info.Name).Dispose());
                    else
                        using (var tensor = read.ReadTensor(info.Name)) Assert.That(tensor.Shape, Is.EqualTo(e.Shape));
                }
            }
            catch (InvalidDataException e)
            {
                Assert.That(e.Message, Does.StartWith(path), "the message names the file");
                Assert.That(e.Message, Does.Contain("at byte offset"), "the message gives the offset");
                Assert.That(e.Message.Length, Is.LessThan(path.Length + 400), $"the message is short: {e.Message}");
                Assert.That(expected, Is.Null, $"the reader refused a file the reference reads: {e.Message}");
            }
            finally
            {
                File.Delete(path);
            }
            allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
            Assert.That(allocated, Is.LessThan((1 << 20) + 64L * file.Length), "allocation stays within what the file can hold");
        }, t => Print(Mutate(t.Item1, t.Item2, false)));
        TestContext.Out.WriteLine($"accepted (valid after mutation): {accepted}");
    }

    [Test]
    public void SafeTensors_header_claiming_a_2_to_the_60_byte_tensor_allocates_nothing_of_it()
    {
        var header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1152921504606846976],\"data_offsets\":[0,1152921504606846976]}}";
        var file = SafeTensorsTests.FileBytes(header, new byte[16]);
        var path = WriteTemp(file, ".safetensors");
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path).Dispose())!;
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.That(e.Message, Does.Contain("the file is truncated"));
        Assert.That(allocated, Is.LessThan(1 << 20));
        File.Delete(path);
    }

    // ---- State dicts: a refused file leaves the module unchanged -------------------------------------

    private static readonly (string Name, long[] Shape)[] ExchangeShapes = ExchangeShapesOfThreeLayers();

    private static (string, long[])[] ExchangeShapesOfThreeLayers()
    {
        using var m = HostileInputTests.ThreeLayers(0);
        return m.ExchangeState().Select(e => (e.Name, e.Transposed ? new[] { e.Tensor!.Shape[1], e.Tensor.Shape[0] } : e.Tensor!.ShapeArray.ToArray())).ToArray();
    }

    /// <summary>A valid state dict of ThreeLayers, by hand: F32 values (NaN included), entries in a random order.</summary>
    private static readonly Gen<byte[]> GenStateDict =
        Gen.Int.Select(seed =>
        {
            var random = new Random(seed);
            var entries = new List<string>();
            var data = new List<byte>();
            foreach (var (name, shape) in ExchangeShapes.OrderBy(_ => random.Next()))
            {
                int count = (int)shape.Aggregate(1L, (a, b) => a * b);
                entries.Add($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{data.Count},{data.Count + 4 * count}]}}");
                for (int i = 0; i < count; i++) data.AddRange(BitConverter.GetBytes(random.Next(50) == 0 ? float.NaN : (float)(random.NextDouble() * 4 - 2)));
            }
            var json = Encoding.UTF8.GetBytes("{" + string.Join(",", entries) + "}");
            var file = new byte[8 + json.Length + data.Count];
            BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
            json.CopyTo(file, 8);
            data.CopyTo(file, 8 + json.Length);
            return file;
        });

    /// <summary>What a strict load puts in each exchange tensor (PyTorch's layout), or null when it must refuse the file.</summary>
    private static Dictionary<string, float[]>? ReferenceStateDict(byte[] file)
    {
        var parsed = ReferenceSafeTensors(file);
        if (parsed is null) return null;
        var tensors = parsed.Value.Tensors;
        if (tensors.Count != ExchangeShapes.Length) return null;
        var values = new Dictionary<string, float[]>();
        foreach (var (name, shape) in ExchangeShapes)
        {
            if (!tensors.TryGetValue(name, out var t) || !t.Shape.SequenceEqual(shape)) return null;
            values[name] = t.Dtype switch
            {
                "F32" => Enumerable.Range(0, t.Data.Length / 4).Select(i => BitConverter.ToSingle(t.Data, 4 * i)).ToArray(),
                "F16" => Enumerable.Range(0, t.Data.Length / 2).Select(i => (float)BitConverter.ToHalf(t.Data, 2 * i)).ToArray(),
                "BF16" => Enumerable.Range(0, t.Data.Length / 2).Select(i => BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(t.Data, 2 * i) << 16)).ToArray(),
                _ => null!,
            };
            if (values[name] is null) return null;
        }
        return values;
    }

    [Test]
    public void StateDict_mutations_load_correctly_or_throw_InvalidDataException_with_the_module_unchanged() =>
        Run(Gen.Select(GenStateDict, GenMutation.Array[0, 3]), t =>
        {
            var file = Mutate(t.Item1, t.Item2, bigEndian: false);
            var path = WriteTemp(file, ".safetensors");
            using var model = HostileInputTests.ThreeLayers(3);
            var before = model.NamedState().ToDictionary(p => p.Name, p => Bits(p.Tensor.ToArray()));
            var expected = ReferenceStateDict(file);
            try
            {
                model.LoadStateDict(path);
                Assert.That(expected, Is.Not.Null, "the loader accepted a file the reference refuses");
                foreach (var e in model.ExchangeState())
                {
                    var values = e.Tensor!.ToArray();
                    if (e.Transposed)
                    {
                        long rows = e.Tensor.Shape[0], columns = e.Tensor.Shape[1];
                        var transposed = new float[values.Length];
                        for (long r = 0; r < rows; r++) for (long c = 0; c < columns; c++) transposed[c * rows + r] = values[r * columns + c];
                        values = transposed;
                    }
                    Assert.That(Bits(values), Is.EqualTo(Bits(expected![e.Name])), e.Name);
                }
            }
            catch (InvalidDataException e)
            {
                Assert.That(e.Message, Does.StartWith(path), "the message names the file");
                Assert.That(expected, Is.Null, $"the loader refused a file the reference reads: {e.Message}");
                foreach (var (name, tensor) in model.NamedState())
                    Assert.That(Bits(tensor.ToArray()), Is.EqualTo(before[name]), $"{name} unchanged after a refused file");
            }
            finally
            {
                File.Delete(path);
            }
        }, t => Print(Mutate(t.Item1, t.Item2, false)));

    // ---- Model specs --------------------------------------------------------------------------------

    private static readonly Gen<string> GenLayerSpec =
        Gen.Select(Gen.Int[0, 14], Gen.Int[1, 6], Gen.Int[1, 6], Gen.Bool, (kind, a, b, flag) => kind switch
        {
            0 => $"{{\"type\":\"Dense\",\"inputs\":{a},\"outputs\":{b},\"bias\":{(flag ? "true" : "false")}}}",
            1 => $"{{\"type\":\"Conv2D\",\"in_channels\":{a},\"out_channels\":{b},\"kernel_size\":[{a % 3 + 1},{b % 3 + 1}],\"stride\":{a % 2 + 1},\"padding\":1,\"dilation\":[1,{b % 2 + 1}],\"groups\":1,\"bias\":{(flag ? "true" : "false")}}}",
            2 => $"{{\"type\":\"MaxPool2D\",\"kernel_size\":{a % 3 + 1},\"stride\":[{b % 2 + 1},1]}}",
            3 => $"{{\"type\":\"AvgPool2D\",\"kernel_size\":[2,{a % 2 + 1}],\"count_include_pad\":{(flag ? "true" : "false")}}}",
            4 => "{\"type\":\"GlobalAvgPool2D\"}",
            5 => $"{{\"type\":\"BatchNorm{(flag ? 1 : 2)}D\",\"features\":{a},\"momentum\":0.25,\"eps\":0.001}}",
            6 => flag ? "{\"type\":\"Activation\",\"activation\":\"leaky_relu\",\"slope\":0.125}" : "{\"type\":\"Activation\",\"activation\":\"tanh\"}",
            7 => "{\"type\":\"Flatten\"}",
            8 => $"{{\"type\":\"Reshape\",\"shape\":[{a},-1]}}",
            9 => $"{{\"type\":\"Dropout\",\"p\":0.{b},\"seed\":{a}}}",
            10 => $"{{\"type\":\"Embedding\",\"num_embeddings\":{a},\"embedding_dim\":{b},\"padding_idx\":{(flag ? "0" : "null")}}}",
            11 => $"{{\"type\":\"{(flag ? "LSTM" : "GRU")}\",\"input_size\":{a},\"units\":{b},\"return_sequences\":true}}",
            12 => $"{{\"type\":\"Bidirectional\",\"layer\":{{\"type\":\"SimpleRNN\",\"input_size\":{a},\"units\":{b}}},\"merge_mode\":\"{(flag ? "sum" : "concat")}\"}}",
            13 => $"{{\"type\":\"Sequential\",\"layers\":[{{\"type\":\"Dense\",\"inputs\":{a},\"outputs\":{b}}},{{\"type\":\"Flatten\"}}]}}",
            _ => $"{{\"type\":\"Functional\",\"input_shape\":[{a}],\"layers\":[{{\"type\":\"Dense\",\"inputs\":{a},\"outputs\":{a}}},{{\"type\":\"Activation\",\"activation\":\"relu\"}}]," +
                 $"\"nodes\":[{{\"op\":\"input\"}},{{\"layer\":0,\"inputs\":[0]}},{{\"layer\":1,\"inputs\":[1]}},{{\"layer\":0,\"inputs\":[2]}},{{\"op\":\"{(flag ? "add" : "mul")}\",\"inputs\":[0,3]}}],\"output\":4}}",
        });

    private static readonly Gen<byte[]> GenSpec =
        GenLayerSpec.Array[0, 5].Select(layers => Encoding.UTF8.GetBytes($"{{\"spec_version\":1,\"type\":\"Sequential\",\"layers\":[{string.Join(",", layers)}]}}"));

    [Test]
    public void Spec_mutations_build_or_throw_InvalidDataException_and_leak_nothing()
    {
        int built = 0;
        Run(Gen.Select(GenSpec, GenMutation.Array[0, 3]), t =>
        {
            var json = Encoding.UTF8.GetString(Mutate(t.Item1, t.Item2, bigEndian: false));
            long live = Tensor.LiveCount;
            try
            {
                // A small cap: a mutated "outputs": 999999 must be refused, not allocated.
                using var module = ModelSpec.FromJson(json, maxElements: 1 << 16);
                built++;
                var spec = ModelSpec.ToJson(module);
                using var again = ModelSpec.FromJson(spec, maxElements: 1 << 16);
                Assert.That(ModelSpec.ToJson(again), Is.EqualTo(spec), "a built spec writes back to itself");
                Assert.That(again.NamedState().Select(p => (p.Name, Shape: string.Join(",", p.Tensor.Shape))),
                            Is.EqualTo(module.NamedState().Select(p => (p.Name, Shape: string.Join(",", p.Tensor.Shape)))));
            }
            catch (InvalidDataException e)
            {
                Assert.That(e.Message.Length, Is.LessThan(600), $"the message is short: {e.Message}");
            }
            Assert.That(Tensor.LiveCount, Is.EqualTo(live), "every tensor built is freed, on success and on failure");
        }, t => Encoding.UTF8.GetString(Mutate(t.Item1, t.Item2, false)), threads: 1);
        TestContext.Out.WriteLine($"built (valid after mutation): {built}");
    }

    // ---- ONNX ---------------------------------------------------------------------------------------

    /// <summary>A small valid ONNX model: an MLP (Gemm, MatMul + Add, activations, Softmax) or a CNN (Conv,
    /// BatchNormalization, pooling, GlobalAveragePool, Flatten, Gemm) with random sizes and weights.</summary>
    private static Kernels.Nn.OnnxProto.ModelProto OnnxModel(int seed)
    {
        var r = new Random(seed);
        long P(int low, int high) => r.Next(low, high + 1);
        if (r.Next(2) == 0)
        {
            long f = P(1, 6), h = P(1, 6), o = P(1, 5);
            var g = new OnnxImportTests.GraphBuilder(new[] { f });
            bool transB = r.Next(2) == 0;
            var x = g.Op("Gemm", new[] { "x", g.Weights("w1", transB ? new[] { h, f } : new[] { f, h }, r.Next()), g.Weights("b1", new[] { h }, r.Next()) },
                         OnnxImportTests.Attr("transB", transB ? 1L : 0L));
            x = g.Op(r.Next(2) == 0 ? "Relu" : "Tanh", new[] { x });
            x = g.Op("Add", new[] { g.Op("MatMul", new[] { x, g.Weights("w2", new[] { h, o }, r.Next()) }), g.Weights("b2", new[] { o }, r.Next()) });
            g.Build(g.Op("Softmax", new[] { x }));
            return g.Model;
        }
        else
        {
            long c = P(1, 3), k = P(1, 4), size = P(4, 8), kernel = P(1, 3), pad = kernel / 2;
            var g = new OnnxImportTests.GraphBuilder(new[] { c, size, size });
            var x = g.Op("Conv", new[] { "x", g.Weights("w", new[] { k, c, kernel, kernel }, r.Next()), g.Weights("b", new[] { k }, r.Next()) },
                         OnnxImportTests.Attr("pads", pad, pad, pad, pad), OnnxImportTests.Attr("strides", P(1, 2), P(1, 2)));
            x = g.Op("BatchNormalization", new[] { x, g.Weights("s", new[] { k }, r.Next()), g.Weights("sb", new[] { k }, r.Next()),
                                                   g.Weights("m", new[] { k }, r.Next()), g.Floats("v", Enumerable.Repeat(1f, (int)k).ToArray(), k) });
            x = g.Op("Relu", new[] { x });
            x = g.Op(r.Next(2) == 0 ? "MaxPool" : "AveragePool", new[] { x }, OnnxImportTests.Attr("kernel_shape", 2L, 2L), OnnxImportTests.Attr("strides", 1L, 1L));
            x = g.Op("Flatten", new[] { g.Op("GlobalAveragePool", new[] { x }) });
            g.Build(g.Op("Gemm", new[] { x, g.Weights("wo", new[] { 3, k }, r.Next()) }, OnnxImportTests.Attr("transB", 1L)));
            return g.Model;
        }
    }

    /// <summary>A small model written by our exporter (Onnx.ExportToBytes): recurrent layers, Bidirectional
    /// merges, Gelu's erf pattern, pools and merges, the patterns the importer folds.</summary>
    private static Kernels.Nn.OnnxProto.ModelProto ExportedModel(int seed)
    {
        var r = new Random(seed);
        long f = r.Next(1, 5), h = r.Next(1, 5);
        Module model;
        long[] sample;
        switch (r.Next(4))
        {
            case 0:
                RecurrentLayer Cell(bool sequences) => r.Next(3) switch
                {
                    0 => new LSTM(f, h, returnSequences: sequences, goBackwards: r.Next(4) == 0, seed: seed),
                    1 => new GRU(f, h, returnSequences: sequences, goBackwards: r.Next(4) == 0, seed: seed),
                    _ => new SimpleRNN(f, h, returnSequences: sequences, goBackwards: r.Next(4) == 0, seed: seed),
                };
                model = new Sequential(Cell(r.Next(2) == 0));
                sample = new[] { (long)r.Next(1, 4), f };
                break;
            case 1:
                var inner = r.Next(2) == 0 ? (RecurrentLayer)new LSTM(f, h, returnSequences: r.Next(2) == 0, seed: seed) : new GRU(f, h, returnSequences: r.Next(2) == 0, seed: seed);
                model = new Sequential(new Bidirectional(inner, new[] { "concat", "sum", "mul", "ave" }[r.Next(4)]));
                sample = new[] { (long)r.Next(1, 4), f };
                break;
            case 2:
                var x = Symbolic.Input(f);
                var a = Activation.Gelu().Call(new Dense(f, f, seed: seed).Call(x));
                model = new Functional(x, new Dense(f, h, seed: seed + 1).Call(r.Next(2) == 0 ? a + x : a * x));
                sample = new[] { f };
                break;
            default:
                model = new Sequential(new Conv2D(f, h, 3, padding: 1, seed: seed), new BatchNorm2D(h), Activation.Relu(),
                                       new AvgPool2D(2, stride: 1, padding: 1, countIncludePad: r.Next(2) == 0), new GlobalAvgPool2D(), new Dense(h, 2, seed: seed));
                sample = new[] { f, 4L, 4L };
                break;
        }
        using (model)
            return Kernels.Nn.OnnxProto.ModelProto.Parser.ParseFrom(Onnx.ExportToBytes(model, sample));
    }

    /// <summary>One random edit of a parsed model's fields (the kind of damage byte mutations rarely reach):
    /// a dimension, an attribute, an input name, an op type, a data type, a removed initializer or node.</summary>
    private static void EditOnnx(Kernels.Nn.OnnxProto.ModelProto model, Random r)
    {
        var g = model.Graph;
        long[] odd = { 0, -1, 1, 2, 3, 7, 1L << 31, 1L << 40, long.MaxValue, long.MinValue };
        string[] ops = { "Relu", "Gemm", "Conv", "Add", "Mul", "Flatten", "Reshape", "MaxPool", "GlobalAveragePool", "BatchNormalization", "Softmax", "Gather", "Pad", "Erf", "",
                          "Transpose", "Squeeze", "LSTM", "GRU", "RNN", "Shape", "Concat", "ConstantOfShape", "Unsqueeze", "Div", "Identity", "Dropout" };
        switch (r.Next(8))
        {
            case 0 when g.Initializer.Count > 0:
                var t = g.Initializer[r.Next(g.Initializer.Count)];
                if (t.Dims.Count > 0) t.Dims[r.Next(t.Dims.Count)] = odd[r.Next(odd.Length)]; else t.Dims.Add(odd[r.Next(odd.Length)]);
                break;
            case 1 when g.Node.Count > 0:
                var n = g.Node[r.Next(g.Node.Count)];
                if (n.Attribute.Count > 0)
                {
                    var a = n.Attribute[r.Next(n.Attribute.Count)];
                    if (a.Ints.Count > 0) a.Ints[r.Next(a.Ints.Count)] = odd[r.Next(odd.Length)];
                    else { a.I = odd[r.Next(odd.Length)]; a.F = (float)(r.NextDouble() * 4 - 2); }
                }
                break;
            case 2 when g.Node.Count > 0:
                var m = g.Node[r.Next(g.Node.Count)];
                if (m.Input.Count > 0) m.Input[r.Next(m.Input.Count)] = r.Next(3) switch { 0 => "", 1 => "x", _ => g.Node[r.Next(g.Node.Count)].Output[0] };
                break;
            case 3 when g.Node.Count > 0:
                g.Node[r.Next(g.Node.Count)].OpType = ops[r.Next(ops.Length)];
                break;
            case 4 when g.Initializer.Count > 0:
                g.Initializer[r.Next(g.Initializer.Count)].DataType = r.Next(18);
                break;
            case 5 when g.Initializer.Count > 0:
                g.Initializer.RemoveAt(r.Next(g.Initializer.Count));
                break;
            case 6 when g.Node.Count > 0:
                g.Node.RemoveAt(r.Next(g.Node.Count));
                break;
            default:
                var dims = g.Input[0].Type.TensorType.Shape.Dim;
                dims[r.Next(dims.Count)] = new Kernels.Nn.OnnxProto.TensorShapeProto.Types.Dimension { DimValue = odd[r.Next(odd.Length)] };
                break;
        }
    }

    /// <summary>Imports the bytes: a model that imports must run on an input of its declared shape; anything
    /// else must be InvalidDataException or NotSupportedException naming the source, with bounded allocation.</summary>
    private static int onnxImported, onnxRan, onnxRefused;

    private static void CheckOnnx(byte[] file, bool valid = false)
    {
        const string source = "fuzz.onnx";
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            using var model = Onnx.Import(file, null, source);
            Interlocked.Increment(ref onnxImported);
            var sample = model.InputNode.SampleShape!;
            long count = sample.Aggregate(1L, (a, b) => a * b);
            if (count <= 4096)
            {
                using var scope = new DisposeScope();
                var x = Tensor.FromArray(new float[2 * count], new[] { 2L }.Concat(sample).ToArray());
                Assert.That(model.Forward(x).Count, Is.GreaterThan(0));
                Interlocked.Increment(ref onnxRan);
            }
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            Assert.That(valid, Is.False, $"an unedited export was refused: {e.Message}");
            Assert.That(e.Message, Does.StartWith(source + ": "), "the message names the file");
            Interlocked.Increment(ref onnxRefused);
        }
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.That(allocated, Is.LessThan((4 << 20) + 64L * file.Length), "allocation stays within what the file can hold");
    }

    private static void ReportOnnx()
    {
        TestContext.Out.WriteLine($"ONNX: {onnxImported} imported ({onnxRan} of them run), {onnxRefused} refused");
        onnxImported = onnxRan = onnxRefused = 0;
    }

    [Test]
    public void Onnx_byte_mutations_import_or_throw_typed_exceptions_naming_the_file()
    {
        Run(Gen.Select(Gen.Int, GenMutation.Array[1, 4]), t => CheckOnnx(Mutate(OnnxModel(t.Item1).ToByteArray(), t.Item2, bigEndian: false)),
            t => Print(Mutate(OnnxModel(t.Item1).ToByteArray(), t.Item2, false)));
        ReportOnnx();
    }

    [Test]
    public void Onnx_exported_models_with_edits_import_or_throw_typed_exceptions_naming_the_file()
    {
        Run(Gen.Select(Gen.Int, Gen.Int, GenMutation.Array[0, 2], Gen.Int[0, 2]), t =>
        {
            var model = ExportedModel(t.Item1);
            var r = new Random(t.Item2);
            for (int i = 0; i < t.Item4; i++) EditOnnx(model, r);
            CheckOnnx(Mutate(model.ToByteArray(), t.Item3, bigEndian: false), valid: t.Item3.Length == 0 && t.Item4 == 0);
        }, t => $"exported model seed {t.Item1}, edit seed {t.Item2}, {t.Item4} edits, {t.Item3.Length} byte mutations");
        ReportOnnx();
    }

    [Test]
    public void Onnx_field_edits_import_or_throw_typed_exceptions_naming_the_file()
    {
        Run(Gen.Select(Gen.Int, Gen.Int, Gen.Int[0, 3]), t =>
        {
            var model = OnnxModel(t.Item1);
            var r = new Random(t.Item2);
            for (int i = 0; i < t.Item3; i++) EditOnnx(model, r);
            CheckOnnx(model.ToByteArray());
        }, t => $"model seed {t.Item1}, edit seed {t.Item2}, {t.Item3} edits");
        ReportOnnx();
    }
}
