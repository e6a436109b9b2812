using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// safetensors (SafeTensors, SafeTensorsFile) and state dicts (StateDict, Module.SaveStateDict /
/// LoadStateDict): the file layout byte for byte, round trips of every element type, the exact conversions,
/// each of the format's safety rules with a hand-made bad file, atomic saving, and PyTorch's names and layout.
/// </summary>
[TestFixture]
public class SafeTensorsTests
{
    private string dir = "";

    [SetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-safetensors-").FullName;

    [TearDown]
    public void RemoveDirectory()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>A file from a header written by hand and raw data: how the bad files are made.</summary>
    internal static byte[] FileBytes(string header, byte[]? data = null, ulong? headerLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + (data?.Length ?? 0)];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data?.CopyTo(bytes, 8 + json.Length);
        return bytes;
    }

    private string WriteFile(string name, byte[] bytes)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Test]
    public void Save_writes_the_documented_layout_padded_to_8_bytes()
    {
        var path = Path.Combine(dir, "a.safetensors");
        using var f = Tensor.FromArray(new[] { 1f, 2f, 3f }, new long[] { 3 });
        using var i = Tensor.FromArray(new long[] { 7, -8 }, new long[] { 2, 1 });
        SafeTensors.Save(path, new[] { ("f", f), ("i", i) }, new Dictionary<string, string> { ["k"] = "v" });
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(n % 8, Is.EqualTo(0), "header padded to a multiple of 8");
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.That(header.TrimEnd(' '), Is.EqualTo(
            "{\"__metadata__\":{\"k\":\"v\"},\"f\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}," +
            "\"i\":{\"dtype\":\"I64\",\"shape\":[2,1],\"data_offsets\":[12,28]}}"));
        Assert.That(bytes.Length, Is.EqualTo(8 + n + 28));
        Assert.That(BitConverter.ToSingle(bytes, (int)(8 + n + 8)), Is.EqualTo(3f));
        Assert.That(BitConverter.ToInt64(bytes, (int)(8 + n + 20)), Is.EqualTo(-8));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Round_trip_of_float32_int32_int64_and_scalars_and_empty_tensors(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        var path = Path.Combine(dir, "round.safetensors");
        using var f = Tensor.FromArray(new[] { 1.5f, float.NaN, float.NegativeInfinity, -0f, 1e-40f, 6f }, new long[] { 2, 3 }, device);
        using var i32 = Tensor.FromArray(new[] { int.MinValue, 0, int.MaxValue }, new long[] { 3 }, device);
        using var i64 = Tensor.FromArray(new[] { long.MinValue, 1L << 40 }, new long[] { 1, 2 }, device);
        using var scalar = Tensor.Scalar(2.5f, device);
        using var empty = Tensor.Zeros(new long[] { 0, 4 }, device);
        SafeTensors.Save(path, new[] { ("f", f), ("i32", i32), ("i64", i64), ("scalar", scalar), ("empty", empty) });
        using var file = SafeTensors.Read(path);
        Assert.That(file.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "f", "i32", "i64", "scalar", "empty" }));
        Assert.That(file.Metadata, Is.Empty);
        using var f2 = file.ReadTensor("f", device);
        using var i32b = file.ReadTensor("i32", device);
        using var i64b = file.ReadTensor("i64", device);
        using var s2 = file.ReadTensor("scalar");
        using var e2 = file.ReadTensor("empty");
        Assert.That(f2.ToArray().Select(BitConverter.SingleToInt32Bits), Is.EqualTo(f.ToArray().Select(BitConverter.SingleToInt32Bits)));
        Assert.That(f2.Shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(i32b.Dtype, Is.EqualTo(Dtype.Int32));
        Assert.That(i32b.ToArray<int>(), Is.EqualTo(new[] { int.MinValue, 0, int.MaxValue }));
        Assert.That(i64b.Dtype, Is.EqualTo(Dtype.Int64));
        Assert.That(i64b.ToArray<long>(), Is.EqualTo(new[] { long.MinValue, 1L << 40 }));
        Assert.That(s2.Rank, Is.EqualTo(0));
        Assert.That(s2.Item(), Is.EqualTo(2.5f));
        Assert.That(e2.Shape, Is.EqualTo(new long[] { 0, 4 }));
    }

    [Test]
    public void Narrower_types_convert_exactly_and_F64_is_refused_by_name()
    {
        var data = new List<byte>();
        data.AddRange(BitConverter.GetBytes((Half)1.5f)); data.AddRange(BitConverter.GetBytes((Half)(-65504f)));   // F16
        data.AddRange(new byte[] { 0x80, 0x3f, 0xc0, 0xc0 });   // BF16 1.0, -6.0: the top halves of the floats
        data.AddRange(new byte[] { 0xff, 0x01 });                // I8 -1, 1
        data.AddRange(new byte[] { 0xff, 0x00 });                // U8 255, 0
        data.AddRange(BitConverter.GetBytes(uint.MaxValue));     // U32
        data.AddRange(BitConverter.GetBytes(1.0));               // F64
        var path = WriteFile("narrow.safetensors", FileBytes(
            "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}," +
            "\"i8\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[8,10]},\"u8\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[10,12]}," +
            "\"u32\":{\"dtype\":\"U32\",\"shape\":[],\"data_offsets\":[12,16]},\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[16,24]}}",
            data.ToArray()));
        using var file = SafeTensors.Read(path);
        using (var h = file.ReadTensor("h")) Assert.That(h.ToArray(), Is.EqualTo(new[] { 1.5f, -65504f }));
        using (var b = file.ReadTensor("b")) Assert.That(b.ToArray(), Is.EqualTo(new[] { 1f, -6f }));
        using (var i8 = file.ReadTensor("i8")) Assert.That(i8.ToArray<int>(), Is.EqualTo(new[] { -1, 1 }));
        using (var u8 = file.ReadTensor("u8")) Assert.That(u8.ToArray<int>(), Is.EqualTo(new[] { 255, 0 }));
        using (var u32 = file.ReadTensor("u32")) Assert.That(u32.ToArray<long>(), Is.EqualTo(new[] { (long)uint.MaxValue }));
        var e = Assert.Throws<InvalidDataException>(() => file.ReadTensor("d"))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contains("\"d\" is F64"));
    }

    // Each rule of the format, with a hand-made file that breaks it: the message names the file and the fault.
    private static readonly object[] BadFiles =
    {
        new object[] { "too short", new byte[] { 1, 2, 3 }, "shorter than the 8-byte header length" },
        new object[] { "header over 100 MB", FileBytes("{}", null, 100_000_001), "over the format's limit of 100000000" },
        new object[] { "header past the end", FileBytes("{}", null, 3), "runs past the end" },
        new object[] { "header length 2^64-1", FileBytes("{}", null, ulong.MaxValue), "over the format's limit" },
        new object[] { "not an object", FileBytes("[1]"), "must start with '{'" },
        new object[] { "leading space", FileBytes(" {}"), "must start with '{'" },
        new object[] { "bad UTF-8", FileBytes("{\"\u00e9\":1}").Select((b, i) => i == 10 ? (byte)0xff : b).ToArray(), "not valid UTF-8" },
        new object[] { "bad JSON", FileBytes("{\"a\":"), "not valid JSON" },
        new object[] { "duplicate name", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", new byte[2]), "\"a\" appears twice" },
        new object[] { "unknown dtype", FileBytes("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]), "\"F33\" is not a safetensors dtype" },
        new object[] { "negative dimension", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", new byte[1]), "\"shape\"[0] is -1" },
        new object[] { "fractional offset", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", new byte[1]), "\"data_offsets\"[1] is 1.0" },
        new object[] { "three offsets", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", new byte[1]), "must be [begin, end]" },
        new object[] { "no dtype", FileBytes("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", new byte[1]), "has no \"dtype\"" },
        new object[] { "not starting at 0", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", new byte[2]), "leaving a gap after offset 0" },
        new object[] { "gap", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", new byte[3]), "\"b\" starts at data offset 2, leaving a gap after offset 1" },
        new object[] { "overlap", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", new byte[3]), "overlap" },
        new object[] { "negative offset", FileBytes("{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}", new byte[1]), "\"data_offsets\"[1] is -1" },
        new object[] { "backwards", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", new byte[1]), "run backwards" },
        new object[] { "size does not match shape", FileBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", new byte[4]), "spans 4 bytes but F32 [2] needs 8" },
        new object[] { "element count overflows", FileBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", new byte[4]), "overflows" },
        new object[] { "byte count overflows", FileBytes("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", new byte[8]), "more than 2^63" },
        new object[] { "truncated data", FileBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[5]), "the file is truncated" },
        new object[] { "extra data", FileBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[5]), "extra bytes at the end" },
        new object[] { "metadata not strings", FileBytes("{\"__metadata__\":{\"a\":1}}"), "\"__metadata__\".\"a\" is not a string" },
        new object[] { "rank 9", FileBytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", new byte[1]), "rank 9" },
    };

    [TestCaseSource(nameof(BadFiles))]
    public void A_file_that_breaks_a_rule_of_the_format_is_refused_naming_the_file_and_the_fault(string what, byte[] bytes, string expected)
    {
        var path = WriteFile("bad.safetensors", bytes);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path).Dispose(), what)!;
        Assert.That(e.Message, Does.StartWith(path + ":"));
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(e.Message, Does.Match(@"at byte offset \d+\)$"));
        File.Delete(path);   // the reader closed the file
    }

    [Test]
    public void A_failed_save_leaves_the_previous_file_and_no_temporary()
    {
        var path = Path.Combine(dir, "keep.safetensors");
        using var a = Tensor.FromArray(new[] { 1f });
        SafeTensors.Save(path, new[] { ("a", a) });
        var before = File.ReadAllBytes(path);
        var b = Tensor.FromArray(new[] { 2f });
        b.Dispose();
        Assert.Throws<ObjectDisposedException>(() => SafeTensors.Save(path, new[] { ("a", a), ("b", b) }));
        Assert.Throws<ArgumentException>(() => SafeTensors.Save(path, new[] { ("a", a), ("a", a) }));
        Assert.Throws<ArgumentException>(() => SafeTensors.Save(path, new[] { ("__metadata__", a) }));
        // The target is a directory: the rename fails after the temporary was written.
        var directory = Path.Combine(dir, "taken");
        Directory.CreateDirectory(directory);
        var e = Assert.Throws<IOException>(() => SafeTensors.Save(directory, new[] { ("a", a) }))!;
        Assert.That(e.Message, Does.StartWith(directory).And.Not.Contain(".tmp"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(dir, "*.tmp", SearchOption.AllDirectories), Is.Empty);
    }

    // ---- State dicts -------------------------------------------------------------------------------

    private static Sequential Mlp(int seed) => new(new Dense(4, 3, seed: seed), Activation.Relu(), new BatchNorm1D(3), new Dense(3, 2, bias: false, seed: seed + 1));

    [Test]
    public void State_dict_uses_PyTorch_names_and_Linear_layout()
    {
        var path = Path.Combine(dir, "sd.safetensors");
        using var m = Mlp(1);
        m.SaveStateDict(path);
        using var file = SafeTensors.Read(path);
        Assert.That(file.Tensors.Select(t => t.Name), Is.EquivalentTo(new[]
            { "0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var", "2.num_batches_tracked", "3.weight" }));
        Assert.That(file["0.weight"].Shape, Is.EqualTo(new long[] { 3, 4 }), "Linear.weight is [out, in]");
        Assert.That(file["2.num_batches_tracked"].Dtype, Is.EqualTo("I64"));
        Assert.That(file["2.num_batches_tracked"].Shape, Is.Empty);
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        var dense = (Dense)m.Layers[0];
        var w = dense.Weight.ToArray();   // [4, 3]
        using var t = file.ReadTensor("0.weight");
        var wt = t.ToArray();             // [3, 4]
        for (int i = 0; i < 4; i++)
            for (int o = 0; o < 3; o++)
                Assert.That(wt[o * 4 + i], Is.EqualTo(w[i * 3 + o]));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void State_dict_round_trip_restores_every_tensor(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        var path = Path.Combine(dir, "sd.safetensors");
        using var a = new Sequential(new Dense(4, 3, seed: 1, device: device), new BatchNorm1D(3, device: device), new Dense(3, 2, seed: 2, device: device));
        using (var x = Tensor.Uniform(new long[] { 5, 4 }, -1, 1, 3, device)) a.Forward(x).Dispose();   // moves the running statistics
        a.SaveStateDict(path);
        using var b = new Sequential(new Dense(4, 3, seed: 7, device: device), new BatchNorm1D(3, device: device), new Dense(3, 2, seed: 8, device: device));
        b.LoadStateDict(path);
        foreach (var ((n1, t1), (n2, t2)) in a.NamedState().Zip(b.NamedState()))
        {
            Assert.That(n2, Is.EqualTo(n1));
            Assert.That(t2.ToArray(), Is.EqualTo(t1.ToArray()), n1);
        }
    }

    [Test]
    public void Strict_load_lists_missing_and_unexpected_keys_and_changes_nothing()
    {
        var path = Path.Combine(dir, "sd.safetensors");
        using var other = new Sequential(new Dense(4, 3, seed: 1), Activation.Relu(), Activation.Relu(), new Dense(3, 2, bias: false, seed: 2), new Dense(2, 2, seed: 3));
        other.SaveStateDict(path);
        using var m = Mlp(5);
        var before = m.NamedState().Select(p => p.Tensor.ToArray()).ToList();
        var e = Assert.Throws<InvalidDataException>(() => m.LoadStateDict(path))!;
        Assert.That(e.Message, Does.StartWith(path));
        Assert.That(e.Message, Does.Contain("missing key(s) in the file: \"2.weight\", \"2.bias\", \"2.running_mean\", \"2.running_var\""));
        Assert.That(e.Message, Does.Contain("unexpected key(s) in the file: \"4.weight\", \"4.bias\""));
        Assert.That(m.NamedState().Select(p => p.Tensor.ToArray()), Is.EqualTo(before));
    }

    [Test]
    public void A_shape_or_dtype_mismatch_is_refused_even_when_not_strict_and_changes_nothing()
    {
        var path = Path.Combine(dir, "sd.safetensors");
        using (var w = Tensor.Zeros(new long[] { 3, 4 }))
        using (var bias = Tensor.FromArray(new[] { 1, 2, 3 }, new long[] { 3 }))
        {
            SafeTensors.Save(path, new[] { ("0.weight", w), ("0.bias", bias) });
        }
        using var m = new Sequential(new Dense(4, 3, seed: 1));
        var before = m.NamedState().Select(p => p.Tensor.ToArray()).ToList();
        var e = Assert.Throws<InvalidDataException>(() => m.LoadStateDict(path, strict: false))!;
        Assert.That(e.Message, Does.Contain("\"0.bias\" is I32 in the file but the model's tensor is float32"));
        Assert.That(m.NamedState().Select(p => p.Tensor.ToArray()), Is.EqualTo(before));

        using (var w = Tensor.Zeros(new long[] { 4, 3 })) SafeTensors.Save(path, new[] { ("0.weight", w) });
        e = Assert.Throws<InvalidDataException>(() => m.LoadStateDict(path, strict: false))!;
        Assert.That(e.Message, Does.Contain("\"0.weight\" has shape [4, 3] in the file but [3, 4] in the model (PyTorch's layout of the model's [4, 3])"));
        Assert.That(m.NamedState().Select(p => p.Tensor.ToArray()), Is.EqualTo(before));
    }

    [Test]
    public void Non_strict_load_takes_the_matching_keys_only()
    {
        var path = Path.Combine(dir, "sd.safetensors");
        using (var bias = Tensor.FromArray(new[] { 1f, 2f, 3f }))
        using (var extra = Tensor.FromArray(new[] { 9f }))
            SafeTensors.Save(path, new[] { ("0.bias", bias), ("extra", extra) });
        using var m = new Sequential(new Dense(4, 3, seed: 1));
        var weight = ((Dense)m.Layers[0]).Weight.ToArray();
        m.LoadStateDict(path, strict: false);
        Assert.That(((Dense)m.Layers[0]).Bias!.ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f }));
        Assert.That(((Dense)m.Layers[0]).Weight.ToArray(), Is.EqualTo(weight));
    }

    [Test]
    public void Recurrent_layers_use_PyTorch_LSTM_names()
    {
        var path = Path.Combine(dir, "rnn.safetensors");
        using var m = new Sequential(new Bidirectional(new LSTM(3, 4, returnSequences: true)), new GRU(8, 2));
        m.SaveStateDict(path);
        using var file = SafeTensors.Read(path);
        Assert.That(file.Tensors.Select(t => t.Name), Is.EquivalentTo(new[]
        {
            "0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0",
            "0.weight_ih_l0_reverse", "0.weight_hh_l0_reverse", "0.bias_ih_l0_reverse", "0.bias_hh_l0_reverse",
            "1.weight_ih_l0", "1.weight_hh_l0", "1.bias_ih_l0", "1.bias_hh_l0",
        }));
        Assert.That(file["0.weight_ih_l0"].Shape, Is.EqualTo(new long[] { 16, 3 }));
    }

    [Test]
    public void Header_json_of_a_saved_file_parses_as_the_format_says()
    {
        // Independent of our reader: System.Text.Json on the raw header.
        var path = Path.Combine(dir, "m.safetensors");
        using var m = Mlp(1);
        m.SaveStateDict(path);
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, n));
        long end = 0;
        foreach (var p in doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__"))
            end = Math.Max(end, p.Value.GetProperty("data_offsets")[1].GetInt64());
        Assert.That(8 + n + end, Is.EqualTo(bytes.Length));
    }
}
