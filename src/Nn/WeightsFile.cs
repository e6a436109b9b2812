using System.Text;

namespace Kernels.Nn;

/// <summary>
/// A small binary format for a module's parameters (a later issue adds safetensors and ONNX):
///   "KNWEIGHT" (8 bytes), version int32 = 1, count int32, then per parameter:
///   name length int32, UTF-8 name, rank int32, dims int64[rank], float32[prod(dims)] little-endian.
/// Saving writes a temporary file beside the target and renames it over the target only when
/// complete, so a crash mid-save never destroys the previous file and never leaves a half-written one.
/// </summary>
public static class WeightsFile
{
    private static readonly byte[] Magic = "KNWEIGHT"u8.ToArray();
    private const int Version = 1;

    /// <summary>Writes every parameter of the module.</summary>
    public static void Save(Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        var full = Path.GetFullPath(path);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            using (var writer = new BinaryWriter(stream, Encoding.UTF8))
            {
                var parameters = module.NamedState().ToArray();
                writer.Write(Magic);
                writer.Write(Version);
                writer.Write(parameters.Length);
                foreach (var (name, tensor) in parameters)
                {
                    var bytes = Encoding.UTF8.GetBytes(name);
                    writer.Write(bytes.Length);
                    writer.Write(bytes);
                    writer.Write(tensor.Rank);
                    foreach (var d in tensor.ShapeArray) writer.Write(d);
                    foreach (var v in tensor.ToArray()) writer.Write(v);
                }
                writer.Flush();
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Reads parameters into the module; names and shapes must match exactly. Nothing is
    /// changed unless the whole file is valid.</summary>
    public static void Load(Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        var parameters = module.NamedState().ToDictionary(p => p.Name, p => p.Tensor);
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
                    if (nameLength < 0 || nameLength > 4096) throw Bad($"parameter name length {nameLength} is invalid");
                    var name = Encoding.UTF8.GetString(reader.ReadBytes(nameLength));
                    if (!parameters.TryGetValue(name, out var target)) throw Bad($"parameter '{name}' does not exist in the model");
                    int rank = reader.ReadInt32();
                    if (rank < 0 || rank > 8) throw Bad($"parameter '{name}' has invalid rank {rank}");
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
            }
            catch (EndOfStreamException)
            {
                throw Bad("the file is truncated");
            }
        }
        foreach (var (name, data) in values) parameters[name].Buffer.Write<float>(data);
    }
}
