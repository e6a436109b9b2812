using System.Text;

namespace Kernels.Nn;

/// <summary>
/// A small binary format for a module's parameters (a later issue adds safetensors and ONNX):
///   "KNWEIGHT" (8 bytes), version int32 = 1, count int32, then per parameter:
///   name length int32, UTF-8 name, rank int32, dims int64[rank], float32[prod(dims)] little-endian.
/// Saving is all or nothing (<see cref="AtomicFile"/>: a temporary renamed over the target). Loading
/// stages every value and changes the model only when the whole file is valid: every parameter and
/// buffer exactly once, with its shape.
/// </summary>
public static class WeightsFile
{
    private static readonly byte[] Magic = "KNWEIGHT"u8.ToArray();
    private const int Version = 1;
    // Dotted paths like "0.3.running_mean" are tens of bytes; a length beyond this is corruption.
    private const int MaxNameBytes = 1024;

    /// <summary>A name from a file, fit for a message: control characters escaped, cut at about 60 characters.</summary>
    internal static string Printable(string name)
    {
        var s = new StringBuilder();
        int shown = 0;
        for (; shown < name.Length && s.Length < 60; shown++)
        {
            char c = name[shown];
            if (char.IsControl(c) || c == '\uFFFD') s.Append($"\\x{(int)c:x2}"); else s.Append(c);
        }
        if (shown < name.Length) s.Append($"... ({name.Length} characters)");
        return s.ToString();
    }

    /// <summary>Writes every parameter of the module. Errors are <see cref="IOException"/>s naming
    /// <paramref name="path"/>; on failure the previous file, if any, is untouched (<see cref="AtomicFile"/>).</summary>
    public static void Save(Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        AtomicFile.Write(path, "weights", stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            var parameters = module.NamedState().ToArray();
            writer.Write(Magic);
            writer.Write(Version);
            writer.Write(parameters.Length);
            foreach (var (parameterName, tensor) in parameters)
            {
                var bytes = Encoding.UTF8.GetBytes(parameterName);
                writer.Write(bytes.Length);
                writer.Write(bytes);
                writer.Write(tensor.Rank);
                foreach (var d in tensor.ShapeArray) writer.Write(d);
                foreach (var v in tensor.ToArray()) writer.Write(v);
            }
            writer.Flush();
        });
    }

    /// <summary>Reads parameters into the module; names and shapes must match exactly. Nothing is
    /// changed unless the whole file is valid.</summary>
    public static void Load(Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        var parameters = module.NamedState().ToDictionary(p => p.Name, p => p.Tensor);
        // Staged here and written to the model only once the whole file is valid.
        var values = new Dictionary<string, float[]>();
        using (var stream = File.OpenRead(path))
        using (var reader = new BinaryReader(stream, Encoding.UTF8))
        {
            InvalidDataException Bad(string what) => new($"{path}: {what} (at byte offset {stream.Position})");
            try
            {
                if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic)) throw Bad("not a Kernels weights file (bad magic)");
                int version = reader.ReadInt32();
                if (version != Version) throw Bad($"format version {version} is not supported (expected {Version})");
                int count = reader.ReadInt32();
                if (count != parameters.Count) throw Bad($"the file holds {count} parameters but the model has {parameters.Count}");
                for (int i = 0; i < count; i++)
                {
                    int nameLength = reader.ReadInt32();
                    if (nameLength < 0 || nameLength > MaxNameBytes) throw Bad($"parameter {i}'s name length {nameLength} is not in 0..{MaxNameBytes}");
                    var nameBytes = reader.ReadBytes(nameLength);
                    if (nameBytes.Length != nameLength) throw Bad("the file is truncated");
                    var name = Encoding.UTF8.GetString(nameBytes);
                    if (!parameters.TryGetValue(name, out var target)) throw Bad($"parameter '{Printable(name)}' does not exist in the model");
                    if (values.ContainsKey(name)) throw Bad($"parameter '{name}' appears more than once");
                    int rank = reader.ReadInt32();
                    if (rank < 0 || rank > NativeConstants.KN_MAX_RANK) throw Bad($"parameter '{name}' has invalid rank {rank}");
                    var dims = new long[rank];
                    for (int d = 0; d < rank; d++) dims[d] = reader.ReadInt64();
                    if (!dims.AsSpan().SequenceEqual(target.ShapeArray))
                        throw Bad($"parameter '{name}' has shape {Tensor.FormatShape(dims)} in the file but {Tensor.FormatShape(target.ShapeArray)} in the model");
                    var data = new float[target.Count];
                    var raw = reader.ReadBytes(checked((int)(4 * target.Count)));
                    if (raw.Length != 4 * target.Count) throw Bad($"the file ends inside parameter '{name}'");
                    Buffer.BlockCopy(raw, 0, data, 0, raw.Length);
                    values[name] = data;
                }
                if (stream.Position != stream.Length) throw Bad("unexpected data after the last parameter");
                // count equals the model's and no name repeats, so every parameter was read exactly once.
            }
            catch (EndOfStreamException)
            {
                throw Bad("the file is truncated");
            }
        }
        foreach (var (name, data) in values) parameters[name].Buffer.Write<float>(data);
    }
}
