namespace Kernels.Nn;

/// <summary>
/// A whole model in one safetensors file: the weights as a state dict (<see cref="StateDict"/>: PyTorch's names
/// and layout, so the file also loads into a PyTorch twin with load_state_dict) and, in the header's
/// "__metadata__", the architecture as a <see cref="ModelSpec"/> under <see cref="SpecKey"/>. Loading rebuilds
/// the network from the spec and loads the weights strictly; it allocates no more parameter and buffer elements
/// than the file holds, so a spec that claims a huge layer is refused before anything is allocated.
/// </summary>
public static class ModelFile
{
    /// <summary>The metadata key of the architecture (a <see cref="ModelSpec"/> JSON document).</summary>
    public const string SpecKey = "kernels.spec";

    /// <summary>Writes <paramref name="module"/>'s architecture and weights to <paramref name="path"/>, all or
    /// nothing. A module type the spec does not know throws <see cref="NotSupportedException"/> naming it, before
    /// anything is written.</summary>
    public static void Save(Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        var spec = ModelSpec.ToJson(module, indented: false);
        var metadata = new Dictionary<string, string> { ["format"] = "pt", [SpecKey] = spec };
        SafeTensors.Write(path, StateDict.Entries(module), metadata);
    }

    /// <summary>
    /// Rebuilds the model in <paramref name="path"/> on <paramref name="device"/> (default: the CPU). Errors are
    /// <see cref="InvalidDataException"/>s naming the file: a bad safetensors file, no spec (a weights-only file:
    /// build the network in code and use <see cref="Module.LoadStateDict"/>), a bad spec
    /// (the message gives the JSON path), or weights that do not match it.
    /// </summary>
    public static Module Load(string path, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var file = SafeTensors.Read(path);
        if (!file.Metadata.TryGetValue(SpecKey, out var spec))
            throw new InvalidDataException($"{path}: no \"{SpecKey}\" in the header's __metadata__: this file holds weights only; build the network in code and call LoadStateDict");
        // A strict load needs every parameter and buffer in the file, so the model cannot be larger than the file.
        long fileElements = file.Tensors.Sum(t => t.Count);
        Module module;
        try
        {
            module = ModelSpec.FromJson(spec, device, fileElements);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: __metadata__ \"{SpecKey}\": {e.Message}", e);
        }
        try
        {
            StateDict.Load(module, file, strict: true);
            return module;
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }
}
