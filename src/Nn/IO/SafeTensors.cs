using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Kernels.Nn;

/// <summary>
/// One tensor's entry in a safetensors header: its name, the format's dtype name ("F32", "I64", "F16", ...),
/// its shape, and where its bytes lie: [<see cref="Begin"/>, <see cref="End"/>) counted from the first byte
/// after the header.
/// </summary>
public sealed record SafeTensorInfo(string Name, string Dtype, IReadOnlyList<long> Shape, long Begin, long End)
{
    /// <summary>Elements (the product of the shape; 1 for a scalar).</summary>
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// The Hugging Face safetensors format, read and written
/// (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian header length N, N bytes
/// of UTF-8 JSON <c>{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {string: string}}</c>, then the raw little-endian data, offsets counted from its start.
/// <para>
/// Reading applies the format's own safety rules (those of the reference implementation), each refused
/// with an <see cref="InvalidDataException"/> naming the file, the tensor and the byte offset: the header is
/// at most <see cref="MaxHeaderBytes"/> and lies inside the file, is UTF-8 and a JSON object starting with
/// '{', names are unique, dtypes are the format's, shapes and offsets are non-negative integers, the
/// tensors sorted by offset are contiguous from 0 with no gaps or overlaps, each spans exactly
/// prod(shape) * itemsize bytes (computed with overflow checks), and together they cover the data to the
/// end of the file exactly. Two rules of ours on top: shapes and offsets must fit in int64, and a rank
/// is at most <see cref="NativeConstants.KN_MAX_RANK"/> (Kernels tensors have no more dimensions).
/// The header is read whole (bounded by the file's length), a tensor's bytes only when asked for.
/// </para>
/// <para>
/// dtypes: F32, I32 and I64 load as float32, int32 and int64 tensors. Where the conversion is exact the
/// narrower types load too: F16 and BF16 as float32, I8, U8, I16 and U16 as int32, U32 as int64. F64, U64,
/// BOOL and the 8-bit floats are refused by name (no exact Kernels type holds them).
/// </para>
/// Writing is all or nothing (<see cref="AtomicFile"/>); the header is padded with spaces to a multiple of
/// 8 bytes, as the reference does, so the data starts aligned.
/// </summary>
public static class SafeTensors
{
    /// <summary>The largest header accepted, as in the reference implementation (100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The key of the string-to-string metadata in the header.</summary>
    public const string MetadataKey = "__metadata__";

    private static readonly Dictionary<string, int> ItemSizes = new()
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    /// <summary>Bytes per element of a dtype of the format, or 0 when the format has no such dtype.</summary>
    internal static int ItemSize(string dtype) => ItemSizes.TryGetValue(dtype, out int size) ? size : 0;

    /// <summary>The format's name of a tensor element type.</summary>
    internal static string FormatDtype(Dtype dtype) => dtype switch
    {
        Dtype.Float32 => "F32",
        Dtype.Int32 => "I32",
        Dtype.Int64 => "I64",
        _ => throw new ArgumentException($"safetensors: element type {(int)dtype} has no safetensors dtype"),
    };

    /// <summary>The Kernels element type a dtype of the format loads as (exactly), or null when it is refused.</summary>
    public static Dtype? LoadsAs(string dtype) => dtype switch
    {
        "F32" or "F16" or "BF16" => Dtype.Float32,
        "I32" or "I16" or "U16" or "I8" or "U8" => Dtype.Int32,
        "I64" or "U32" => Dtype.Int64,
        _ => null,
    };

    /// <summary>One tensor as bytes, for <see cref="Write"/>: the format's dtype, the shape, the little-endian data.</summary>
    internal readonly record struct Entry(string Name, string Dtype, long[] Shape, byte[] Data);

    /// <summary>
    /// Writes <paramref name="tensors"/> (any device; float32, int32 or int64) and <paramref name="metadata"/> to
    /// <paramref name="path"/>, all or nothing. Names must be unique and not "__metadata__".
    /// </summary>
    public static void Save(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = tensors.Select(t => ToEntry(t.Name, t.Tensor)).ToList();
        Write(path, entries, metadata);
    }

    /// <summary>A tensor's bytes read back from its device.</summary>
    internal static Entry ToEntry(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(tensor);
        byte[] data = tensor.Dtype switch
        {
            Dtype.Float32 => MemoryMarshal.AsBytes(tensor.ToArray<float>().AsSpan()).ToArray(),
            Dtype.Int32 => MemoryMarshal.AsBytes(tensor.ToArray<int>().AsSpan()).ToArray(),
            _ => MemoryMarshal.AsBytes(tensor.ToArray<long>().AsSpan()).ToArray(),
        };
        return new Entry(name, FormatDtype(tensor.Dtype), tensor.ShapeArray.ToArray(), data);
    }

    /// <summary>Writes entries in the given order, contiguous from offset 0.</summary>
    internal static void Write(string path, IReadOnlyList<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        // Raw data is written as the host holds it; every platform .NET runs this library on is little-endian.
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors: writing needs a little-endian host");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            if (e.Name == MetadataKey) throw new ArgumentException($"safetensors: a tensor cannot be called \"{MetadataKey}\" (the format's metadata key)");
            if (!names.Add(e.Name)) throw new ArgumentException($"safetensors: the tensor name \"{e.Name}\" appears twice");
            long expected = checked(e.Shape.Aggregate(1L, (a, b) => checked(a * b)) * ItemSize(e.Dtype));
            if (expected != e.Data.Length) throw new ArgumentException($"safetensors: tensor \"{e.Name}\" has {e.Data.Length} bytes but its shape needs {expected}");
        }
        var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            if (metadata is not null && metadata.Count > 0)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata) w.WriteString(key, value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.Dtype);
                w.WriteStartArray("shape");
                foreach (var d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + e.Data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += e.Data.Length;
            }
            w.WriteEndObject();
        }
        // Spaces up to a multiple of 8 (the reference's padding): the data then starts 8-byte aligned.
        while (json.Length % 8 != 0) json.WriteByte((byte)' ');
        if (json.Length > MaxHeaderBytes) throw new ArgumentException($"safetensors: the header would be {json.Length} bytes, over the format's limit of {MaxHeaderBytes}");
        AtomicFile.Write(path, "safetensors file", stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
            stream.Write(length);
            json.Position = 0;
            json.CopyTo(stream);
            foreach (var e in entries) stream.Write(e.Data);
        });
    }

    /// <summary>
    /// Opens <paramref name="path"/> and checks its header (see the class remarks); the tensors are read on
    /// demand from the returned object, which keeps the file open until disposed.
    /// </summary>
    public static SafeTensorsFile Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            return SafeTensorsFile.Open(path, stream);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }
}

/// <summary>An open safetensors file whose header passed every check: names, dtypes, shapes, metadata, and
/// each tensor's data on demand. Dispose it to close the file.</summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly FileStream stream;
    private readonly long dataStart;
    private readonly Dictionary<string, SafeTensorInfo> byName;

    private SafeTensorsFile(string path, FileStream stream, long dataStart, List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        this.stream = stream;
        this.dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file's path as given.</summary>
    public string Path { get; }

    /// <summary>Every tensor, in the order of their data in the file.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The header's "__metadata__" (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Whether the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => byName.ContainsKey(name);

    /// <summary>The entry of the tensor called <paramref name="name"/>; a missing name throws <see cref="KeyNotFoundException"/> naming it.</summary>
    public SafeTensorInfo this[string name] =>
        byName.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"{Path}: no tensor called \"{name}\"");

    private InvalidDataException Bad(string what, long offset) => new($"{Path}: {what} (at byte offset {offset})");

    /// <summary>
    /// The tensor called <paramref name="name"/>, on <paramref name="device"/> (default: the CPU), in the Kernels
    /// type its dtype loads as (<see cref="SafeTensors.LoadsAs"/>); a refused dtype throws an
    /// <see cref="InvalidDataException"/> naming it.
    /// </summary>
    public Tensor ReadTensor(string name, Device? device = null)
    {
        var info = this[name];
        var (dtype, values) = ReadValues(info);
        return dtype switch
        {
            Dtype.Float32 => Tensor.FromArray((float[])values, info.Shape.ToArray(), device),
            Dtype.Int32 => Tensor.FromArray((int[])values, info.Shape.ToArray(), device),
            _ => Tensor.FromArray((long[])values, info.Shape.ToArray(), device),
        };
    }

    /// <summary>The tensor's values on the host, converted exactly to float[], int[] or long[] (by its dtype).</summary>
    internal (Dtype Dtype, Array Values) ReadValues(SafeTensorInfo info)
    {
        var dtype = SafeTensors.LoadsAs(info.Dtype)
            ?? throw Bad($"tensor \"{Printable(info.Name)}\" is {info.Dtype}, which Kernels does not load (it loads F32, F16, BF16 as float32; I32, I16, U16, I8, U8 as int32; I64, U32 as int64)", dataStart + info.Begin);
        var raw = ReadBytes(info);
        int n = checked((int)info.Count);
        Array values = info.Dtype switch
        {
            "F32" => MemoryMarshal.Cast<byte, float>(raw).ToArray(),
            "F16" => Convert(n, i => (float)BinaryPrimitives.ReadHalfLittleEndian(raw.AsSpan(2 * i))),
            // bfloat16 is the top half of a float32: exact.
            "BF16" => Convert(n, i => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i)) << 16)),
            "I32" => MemoryMarshal.Cast<byte, int>(raw).ToArray(),
            "I16" => Convert(n, i => (int)BinaryPrimitives.ReadInt16LittleEndian(raw.AsSpan(2 * i))),
            "U16" => Convert(n, i => (int)BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i))),
            "I8" => Convert(n, i => (int)(sbyte)raw[i]),
            "U8" => Convert(n, i => (int)raw[i]),
            "I64" => MemoryMarshal.Cast<byte, long>(raw).ToArray(),
            _ => Convert(n, i => (long)BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(4 * i))),   // U32
        };
        return (dtype, values);
    }

    private static T[] Convert<T>(int n, Func<int, T> element)
    {
        var values = new T[n];
        for (int i = 0; i < n; i++) values[i] = element(i);
        return values;
    }

    /// <summary>The tensor's raw little-endian bytes, as stored.</summary>
    public byte[] ReadBytes(SafeTensorInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (!ReferenceEquals(this[info.Name], info)) throw new ArgumentException($"{Path}: the entry \"{info.Name}\" is not from this file", nameof(info));
        var bytes = new byte[checked((int)(info.End - info.Begin))];
        stream.Position = dataStart + info.Begin;
        int read = 0;
        while (read < bytes.Length)
        {
            int got = stream.Read(bytes, read, bytes.Length - read);
            if (got == 0) throw Bad($"the file ends inside tensor \"{Printable(info.Name)}\" (it changed since it was opened?)", stream.Position);
            read += got;
        }
        return bytes;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => stream.Dispose();

    /// <summary>A name from a file, fit for a message (the weights reader's rule).</summary>
    internal static string Printable(string name) => WeightsFile.Printable(name);

    internal static SafeTensorsFile Open(string path, FileStream stream)
    {
        long fileLength = stream.Length;
        InvalidDataException Bad(string what, long offset) => new($"{path}: {what} (at byte offset {offset})");
        if (fileLength < 8) throw Bad($"not a safetensors file: {fileLength} bytes, shorter than the 8-byte header length", 0);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > SafeTensors.MaxHeaderBytes)
            throw Bad($"the header length {headerLength} is over the format's limit of {SafeTensors.MaxHeaderBytes} bytes", 0);
        if ((long)headerLength > fileLength - 8)
            throw Bad($"the header length {headerLength} runs past the end of the {fileLength}-byte file", 0);
        // Bounded: at most 100 MB and at most the file's length.
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long dataStart = 8 + (long)headerLength;
        if (header.Length == 0 || header[0] != (byte)'{') throw Bad("the header is not a JSON object (it must start with '{')", 8);

        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(header); }
        catch (DecoderFallbackException) { throw Bad("the header is not valid UTF-8", 8); }

        JsonDocument document;
        try { document = JsonDocument.Parse(text); }
        // Not e.Message: System.Text.Json quotes the rest of the input there, however long. Our headers are one
        // line; for others the offset is that of the line's start plus the position in the line.
        catch (JsonException e) { throw Bad($"the header is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1} of that line)", 8 + (e.BytePositionInLine ?? 0)); }
        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad("the header is not a JSON object", 8);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (name == SafeTensors.MetadataKey)
                {
                    if (sawMetadata) throw Bad($"\"{SafeTensors.MetadataKey}\" appears twice", 8);
                    sawMetadata = true;
                    if (property.Value.ValueKind == JsonValueKind.Null) continue;
                    if (property.Value.ValueKind != JsonValueKind.Object) throw Bad($"\"{SafeTensors.MetadataKey}\" is not an object of strings", 8);
                    foreach (var entry in property.Value.EnumerateObject())
                    {
                        if (entry.Value.ValueKind != JsonValueKind.String) throw Bad($"\"{SafeTensors.MetadataKey}\".\"{Printable(entry.Name)}\" is not a string", 8);
                        if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!)) throw Bad($"\"{SafeTensors.MetadataKey}\" holds the key \"{Printable(entry.Name)}\" twice", 8);
                    }
                    continue;
                }
                if (!seen.Add(name)) throw Bad($"the tensor name \"{Printable(name)}\" appears twice", 8);
                tensors.Add(ParseEntry(name, property.Value, Bad));
            }
        }

        // The reference's validation: sorted by offset, contiguous from 0, sizes exact, the data covered exactly.
        tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long expectedBegin = 0;
        foreach (var t in tensors)
        {
            string n = Printable(t.Name);
            if (t.Begin != expectedBegin || t.End < t.Begin)
                throw Bad(t.Begin > expectedBegin
                          ? $"tensor \"{n}\" starts at data offset {t.Begin}, leaving a gap after offset {expectedBegin}"
                          : $"tensor \"{n}\" has data_offsets [{t.Begin}, {t.End}], which overlap the tensor before it or run backwards (expected to begin at {expectedBegin})",
                          dataStart + Math.Min(t.Begin, expectedBegin));
            long count = 1;
            foreach (var d in t.Shape)
                if (!TryMultiply(count, d, out count))
                    throw Bad($"tensor \"{n}\" has shape {Tensor.FormatShape(t.Shape.ToArray())}, whose element count overflows", dataStart + t.Begin);
            if (!TryMultiply(count, SafeTensors.ItemSize(t.Dtype), out long bytes) || bytes != t.End - t.Begin)
                throw Bad($"tensor \"{n}\" spans {t.End - t.Begin} bytes but {t.Dtype} {Tensor.FormatShape(t.Shape.ToArray())} needs {(TryMultiply(count, SafeTensors.ItemSize(t.Dtype), out bytes) ? bytes.ToString(System.Globalization.CultureInfo.InvariantCulture) : "more than 2^63")}",
                          dataStart + t.Begin);
            expectedBegin = t.End;
        }
        if (dataStart + expectedBegin != fileLength)
            throw Bad(dataStart + expectedBegin < fileLength
                      ? $"the tensors end at data offset {expectedBegin} but the file has {fileLength - dataStart} bytes of data (extra bytes at the end)"
                      : $"the file is truncated: the tensors need {expectedBegin} bytes of data but the file has {fileLength - dataStart}",
                      Math.Min(dataStart + expectedBegin, fileLength));
        return new SafeTensorsFile(path, stream, dataStart, tensors, metadata);
    }

    private static bool TryMultiply(long a, long b, out long product)
    {
        try { product = checked(a * b); return true; }
        catch (OverflowException) { product = 0; return false; }
    }

    private static SafeTensorInfo ParseEntry(string name, JsonElement value, Func<string, long, InvalidDataException> bad)
    {
        string n = Printable(name);
        if (value.ValueKind != JsonValueKind.Object) throw bad($"tensor \"{n}\": the entry is not an object", 8);
        string? dtype = null;
        long[]? shape = null, offsets = null;
        foreach (var field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype":
                    if (dtype is not null) throw bad($"tensor \"{n}\": \"dtype\" appears twice", 8);
                    if (field.Value.ValueKind != JsonValueKind.String) throw bad($"tensor \"{n}\": \"dtype\" is not a string", 8);
                    dtype = field.Value.GetString()!;
                    if (SafeTensors.ItemSize(dtype) == 0) throw bad($"tensor \"{n}\": \"{Printable(dtype)}\" is not a safetensors dtype", 8);
                    break;
                case "shape":
                    if (shape is not null) throw bad($"tensor \"{n}\": \"shape\" appears twice", 8);
                    shape = Integers(field.Value, $"tensor \"{n}\": \"shape\"", bad);
                    if (shape.Length > NativeConstants.KN_MAX_RANK)
                        throw bad($"tensor \"{n}\" has rank {shape.Length}; Kernels tensors have at most {NativeConstants.KN_MAX_RANK} dimensions", 8);
                    break;
                case "data_offsets":
                    if (offsets is not null) throw bad($"tensor \"{n}\": \"data_offsets\" appears twice", 8);
                    offsets = Integers(field.Value, $"tensor \"{n}\": \"data_offsets\"", bad);
                    if (offsets.Length != 2) throw bad($"tensor \"{n}\": \"data_offsets\" must be [begin, end], got {offsets.Length} numbers", 8);
                    break;
                default:
                    break;   // the reference ignores fields it does not know
            }
        }
        if (dtype is null) throw bad($"tensor \"{n}\" has no \"dtype\"", 8);
        if (shape is null) throw bad($"tensor \"{n}\" has no \"shape\"", 8);
        if (offsets is null) throw bad($"tensor \"{n}\" has no \"data_offsets\"", 8);
        return new SafeTensorInfo(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] Integers(JsonElement array, string what, Func<string, long, InvalidDataException> bad)
    {
        if (array.ValueKind != JsonValueKind.Array) throw bad($"{what} is not an array", 8);
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
                throw bad($"{what}[{i}] is {Printable(item.GetRawText())}, not an integer in 0..2^63-1", 8);
            values[i++] = v;
        }
        return values;
    }
}
