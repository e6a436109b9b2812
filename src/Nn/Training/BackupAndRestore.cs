using System.Globalization;
using System.Runtime.InteropServices;

namespace Kernels.Nn;

/// <summary>
/// Lets a restarted job resume where it stopped (Keras's BackupAndRestore): at the end of every epoch it
/// saves, atomically, one safetensors file holding the weights and buffers, the optimizer's state (its
/// per-parameter buffers, step count and learning rate), the dropout layers' positions in their mask
/// streams, and the number of epochs done; at the start of <c>Fit</c>, when that file exists, it loads it
/// all back and <c>Fit</c> continues with the next epoch, shuffled as that epoch of an uninterrupted run
/// would be (the loader's order depends only on its seed and the epoch). So a run killed after epoch k
/// and started again with the same code, data, seed and epochs ends with the weights of a run that never
/// stopped. When <c>Fit</c> completes the file is deleted (a crash leaves it for the restart), unless
/// <c>deleteOnTrainEnd</c> is false.
/// <para>Under data-parallel training (<see cref="Model.DataParallel"/>) only rank 0 writes and deletes;
/// every rank reads at its start. A rank cannot see a newer file than the one it should: rank 0 writes
/// only at an epoch's end, after gradient all-reduces that every rank joins after reading.</para>
/// <para>Restoring is all or nothing: a file that is not such a backup, or one for another network or
/// optimizer (names, shapes, optimizer type, parameter count), is an <see cref="InvalidDataException"/>
/// naming the file and the mismatch, and the model is left as it was.</para>
/// </summary>
public sealed class BackupAndRestore : Callback
{
    private const string Format = "kernels-backup-1";
    private readonly bool deleteOnTrainEnd;

    /// <summary>Backs up to (and restores from) the file <paramref name="path"/>.</summary>
    public BackupAndRestore(string path, bool deleteOnTrainEnd = true)
    {
        Path = path ?? throw new ArgumentNullException(nameof(path));
        this.deleteOnTrainEnd = deleteOnTrainEnd;
    }

    /// <summary>The backup file.</summary>
    public string Path { get; }

    /// <summary>The epoch (0-based) the last Fit resumed from, or null when it started afresh.</summary>
    public int? RestoredEpoch { get; private set; }

    /// <inheritdoc/>
    public override void OnTrainBegin()
    {
        RestoredEpoch = null;
        if (!File.Exists(Path)) return;
        RestoredEpoch = Restore(Model!, Path);
        Model!.ResumeEpoch = RestoredEpoch;
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, IReadOnlyDictionary<string, double> logs)
    {
        if (Model!.DataParallel is { Rank: not 0 }) return;   // the replicas are equal: rank 0 writes for the job
        Save(Model, Path, epoch + 1);
    }

    /// <inheritdoc/>
    public override void OnTrainEnd()
    {
        if (!deleteOnTrainEnd || Model!.DataParallel is { Rank: not 0 }) return;
        File.Delete(Path);
    }

    /// <summary>Writes the model's training state after <paramref name="epochsDone"/> epochs to <paramref name="path"/>, atomically.</summary>
    internal static void Save(Model model, string path, int epochsDone)
    {
        var optimizer = model.Optimizer;
        var entries = new List<SafeTensors.Entry>();
        foreach (var (name, tensor) in model.Network.NamedState()) entries.Add(SafeTensors.ToEntry("model." + name, tensor));
        foreach (var (index, slot, buffer) in optimizer.StateBuffers())
        {
            var values = buffer.ToArray();
            entries.Add(new SafeTensors.Entry($"optimizer.{index}.{slot}", "F32", new long[] { values.Length },
                                              MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        }
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["epochs_done"] = epochsDone.ToString(CultureInfo.InvariantCulture),
            ["optimizer"] = optimizer.GetType().Name,
            ["optimizer_parameters"] = optimizer.Parameters.Count.ToString(CultureInfo.InvariantCulture),
            ["optimizer_steps"] = optimizer.Steps.ToString(CultureInfo.InvariantCulture),
            ["learning_rate"] = optimizer.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            ["dropout_offsets"] = string.Join(",", Dropouts(model.Network).Select(d => d.StreamOffset.ToString(CultureInfo.InvariantCulture))),
        };
        SafeTensors.Write(path, entries, metadata);
    }

    /// <summary>Loads a backup written by <see cref="Save"/> into the model and its optimizer; returns the
    /// epoch to continue from. Everything is read and checked before anything changes.</summary>
    internal static int Restore(Model model, string path)
    {
        var optimizer = model.Optimizer;
        using var file = SafeTensors.Read(path);
        InvalidDataException Bad(string what) => new($"{System.IO.Path.GetFullPath(path)}: not a backup of this training run: {what}");
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v : throw Bad($"the metadata has no \"{key}\"");
        if (Meta("format") != Format) throw Bad($"its format is \"{Meta("format")}\", expected \"{Format}\"");
        if (Meta("optimizer") != optimizer.GetType().Name) throw Bad($"it holds {Meta("optimizer")} state but the model is compiled with {optimizer.GetType().Name}");
        if (!int.TryParse(Meta("optimizer_parameters"), NumberStyles.None, CultureInfo.InvariantCulture, out int parameterCount) || parameterCount != optimizer.Parameters.Count)
            throw Bad($"its optimizer had {Meta("optimizer_parameters")} parameters, this one has {optimizer.Parameters.Count}");
        if (!int.TryParse(Meta("epochs_done"), NumberStyles.None, CultureInfo.InvariantCulture, out int epochsDone))
            throw Bad($"epochs_done \"{Meta("epochs_done")}\" is not a count");
        if (!long.TryParse(Meta("optimizer_steps"), NumberStyles.None, CultureInfo.InvariantCulture, out long steps))
            throw Bad($"optimizer_steps \"{Meta("optimizer_steps")}\" is not a count");
        if (!float.TryParse(Meta("learning_rate"), NumberStyles.Float, CultureInfo.InvariantCulture, out float learningRate))
            throw Bad($"learning_rate \"{Meta("learning_rate")}\" is not a number");
        var dropouts = Dropouts(model.Network).ToArray();
        var offsetText = Meta("dropout_offsets");
        var offsetParts = offsetText.Length == 0 ? Array.Empty<string>() : offsetText.Split(',');
        if (offsetParts.Length != dropouts.Length) throw Bad($"it has {offsetParts.Length} dropout layers' offsets, the network has {dropouts.Length} dropout layers");
        var offsets = new long[offsetParts.Length];
        for (int i = 0; i < offsets.Length; i++)
            if (!long.TryParse(offsetParts[i], NumberStyles.None, CultureInfo.InvariantCulture, out offsets[i])) throw Bad($"dropout offset \"{offsetParts[i]}\" is not a count");

        // The model's tensors: each exactly once, float32, with its shape.
        var state = model.Network.NamedState().ToArray();
        var weights = new float[state.Length][];
        for (int i = 0; i < state.Length; i++)
        {
            var (name, tensor) = state[i];
            string key = "model." + name;
            if (!file.Contains(key)) throw Bad($"it has no tensor \"{key}\"");
            var info = file[key];
            if (!info.Shape.SequenceEqual(tensor.ShapeArray))
                throw Bad($"\"{key}\" has shape {Tensor.FormatShape(info.Shape.ToArray())}, the network's is {Tensor.FormatShape(tensor.ShapeArray)}");
            if (tensor.Dtype != Dtype.Float32 || info.Dtype != "F32") throw Bad($"\"{key}\" is {info.Dtype}; backups hold float32 state");
            weights[i] = (float[])file.ReadValues(info).Values;
        }
        // The optimizer's buffers: "optimizer.{index}.{slot}", slots 0..n-1, each the parameter's size.
        var slots = new Dictionary<int, SortedDictionary<int, float[]>>();
        int modelTensors = 0;
        foreach (var info in file.Tensors)
        {
            if (info.Name.StartsWith("model.", StringComparison.Ordinal)) { modelTensors++; continue; }
            var parts = info.Name.Split('.');
            if (parts.Length != 3 || parts[0] != "optimizer"
                || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int index)
                || !int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out int slot))
                throw Bad($"unexpected tensor \"{WeightsFile.Printable(info.Name)}\"");
            if (index >= optimizer.Parameters.Count) throw Bad($"\"{info.Name}\" is for parameter {index}; the optimizer has {optimizer.Parameters.Count}");
            long count = optimizer.Parameters[index].Count;
            if (info.Dtype != "F32" || info.Shape.Count != 1 || info.Shape[0] != count)
                throw Bad($"\"{info.Name}\" is {info.Dtype} {Tensor.FormatShape(info.Shape.ToArray())}; parameter {index} needs F32 [{count}]");
            if (!slots.TryGetValue(index, out var list)) slots[index] = list = new SortedDictionary<int, float[]>();
            list[slot] = (float[])file.ReadValues(info).Values;
        }
        if (modelTensors != state.Length) throw Bad($"it has {modelTensors} model tensors, the network has {state.Length}");
        var buffers = new Dictionary<int, float[][]>();
        foreach (var (index, list) in slots)
        {
            if (list.Keys.Last() != list.Count - 1) throw Bad($"parameter {index}'s optimizer buffers are not numbered 0 to {list.Count - 1}");
            buffers[index] = list.Values.ToArray();
        }

        // Everything checked: now change the model.
        for (int i = 0; i < state.Length; i++)
            if (weights[i].Length > 0) state[i].Tensor.Buffer.Write<float>(weights[i]);
        optimizer.RestoreState(steps, learningRate, buffers);
        for (int i = 0; i < dropouts.Length; i++) dropouts[i].StreamOffset = offsets[i];
        return epochsDone;
    }

    /// <summary>Every dropout layer of the network, depth first, in registration order.</summary>
    private static IEnumerable<Dropout> Dropouts(Module module)
    {
        if (module is Dropout d) yield return d;
        foreach (var (_, child) in module.NamedChildren)
            foreach (var inner in Dropouts(child)) yield return inner;
    }
}
