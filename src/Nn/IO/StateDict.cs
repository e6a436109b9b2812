using System.Runtime.InteropServices;

namespace Kernels.Nn;

/// <summary>
/// A module's state dict in safetensors files, under PyTorch's names and in PyTorch's layout
/// (<see cref="Module.ExchangeState"/>: "0.weight", "1.running_mean", "weight_ih_l0", ...; Dense's weight
/// transposed to Linear's [out, in]), so the weights of a PyTorch twin load here and ours load there with
/// <c>model.load_state_dict(tensors, strict=True)</c>.
/// </summary>
public static class StateDict
{
    /// <summary>The exchange view of <paramref name="module"/> as safetensors entries (read back from the device).</summary>
    internal static List<SafeTensors.Entry> Entries(Module module)
    {
        var entries = new List<SafeTensors.Entry>();
        foreach (var e in module.ExchangeState())
        {
            if (e.Tensor is null)
            {
                // num_batches_tracked: 0 (see BatchNormBase.ExchangeState).
                entries.Add(new SafeTensors.Entry(e.Name, "I64", Array.Empty<long>(), new byte[8]));
                continue;
            }
            var entry = SafeTensors.ToEntry(e.Name, e.Tensor);
            if (e.Transposed)
            {
                var values = Transpose(MemoryMarshal.Cast<byte, float>(entry.Data).ToArray(), entry.Shape[0], entry.Shape[1]);
                entry = entry with { Shape = new[] { entry.Shape[1], entry.Shape[0] }, Data = MemoryMarshal.AsBytes(values.AsSpan()).ToArray() };
            }
            entries.Add(entry);
        }
        return entries;
    }

    /// <summary>[rows, columns] to [columns, rows], on the host.</summary>
    private static float[] Transpose(float[] values, long rows, long columns)
    {
        var result = new float[values.Length];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < columns; c++)
                result[c * rows + r] = values[r * columns + c];
        return result;
    }

    /// <summary>Writes the state dict of <paramref name="module"/> to <paramref name="path"/> (all or nothing).</summary>
    public static void Save(Module module, string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        SafeTensors.Write(path, Entries(module), metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>
    /// Loads the state dict in <paramref name="path"/> into <paramref name="module"/>. Every tensor must have the
    /// model's shape (in PyTorch's layout) and a dtype that loads as the model's type. With
    /// <paramref name="strict"/> (the default), the file must hold exactly the module's tensors: the message lists
    /// the missing and unexpected keys, as PyTorch's load_state_dict does. num_batches_tracked is accepted (an
    /// integer scalar) and ignored. Every value is staged on the host first: on any error the module is unchanged.
    /// </summary>
    public static void Load(Module module, string path, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var file = SafeTensors.Read(path);
        Load(module, file, strict);
    }

    internal static void Load(Module module, SafeTensorsFile file, bool strict)
    {
        var expected = module.ExchangeState().ToList();
        var staged = new List<(Tensor Target, Array Values)>();
        var missing = new List<string>();
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in expected)
        {
            known.Add(e.Name);
            if (!file.Contains(e.Name))
            {
                if (e.Tensor is not null) missing.Add(e.Name);   // PyTorch files always have num_batches_tracked; ours need not
                continue;
            }
            var info = file[e.Name];
            string name = SafeTensorsFile.Printable(e.Name);
            if (e.Tensor is null)
            {
                if (info.Shape.Count != 0 || SafeTensors.LoadsAs(info.Dtype) is not (Dtype.Int64 or Dtype.Int32))
                    throw new InvalidDataException($"{file.Path}: \"{name}\" is {info.Dtype} {Tensor.FormatShape(info.Shape.ToArray())}; PyTorch writes an int64 scalar");
                continue;   // ignored: see BatchNormBase.ExchangeState
            }
            var shape = e.Tensor.ShapeArray;
            var fileShape = e.Transposed ? new[] { shape[1], shape[0] } : shape;
            if (!info.Shape.SequenceEqual(fileShape))
                throw new InvalidDataException(
                    $"{file.Path}: \"{name}\" has shape {Tensor.FormatShape(info.Shape.ToArray())} in the file but {Tensor.FormatShape(fileShape)} in the model" +
                    (e.Transposed ? $" (PyTorch's layout of the model's {Tensor.FormatShape(shape)})" : ""));
            if (SafeTensors.LoadsAs(info.Dtype) != e.Tensor.Dtype)
                throw new InvalidDataException($"{file.Path}: \"{name}\" is {info.Dtype} in the file but the model's tensor is {Tensor.DtypeName(e.Tensor.Dtype)}");
            var (_, values) = file.ReadValues(info);
            if (e.Transposed) values = Transpose((float[])values, fileShape[0], fileShape[1]);
            staged.Add((e.Tensor, values));
        }
        var unexpected = file.Tensors.Select(t => t.Name).Where(n => !known.Contains(n)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
        {
            static string List(List<string> names) =>
                string.Join(", ", names.Take(10).Select(n => $"\"{SafeTensorsFile.Printable(n)}\"")) + (names.Count > 10 ? $", ... ({names.Count} in all)" : "");
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing key(s) in the file: {List(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected key(s) in the file: {List(unexpected)}");
            throw new InvalidDataException($"{file.Path}: the state dict does not match the model: {string.Join("; ", parts)}");
        }
        foreach (var (target, values) in staged)
        {
            if (values.Length == 0) continue;
            switch (values)
            {
                case float[] f: target.RawBuffer.Write<float>(f); break;
                case int[] i: target.RawBuffer.Write<int>(i); break;
                case long[] l: target.RawBuffer.Write<long>(l); break;
            }
        }
    }
}
