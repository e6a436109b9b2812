// Shared by the MNIST samples, linked into each project (<Compile Include="../Common/..." />) rather
// than packaged: the command line they all take.
/// <summary>The samples' command line: <c>[--device cpu|opencl:0|cuda:0] [--epochs N] [--batch N] [--plot PATH] [--export-onnx PATH]</c>.</summary>
internal sealed record SampleArguments(string DeviceName, int Epochs, int BatchSize)
{
    /// <summary>Where to write the training history as a PNG (--plot), or null: no plot (the default).</summary>
    public string? PlotPath { get; init; }

    /// <summary>Where to write the trained network as an ONNX model (--export-onnx), or null.</summary>
    public string? ExportOnnx { get; init; }

    /// <summary>The options over the sample's defaults, or null (after naming the unknown option on
    /// stderr) when one is not recognised; --plot only where <paramref name="plots"/>, --export-onnx only
    /// where <paramref name="exportsOnnx"/>.</summary>
    public static SampleArguments? Parse(string[] args, int epochs, int batchSize, bool plots = false, bool exportsOnnx = false)
    {
        var parsed = new SampleArguments("cpu", epochs, batchSize);
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--device": parsed = parsed with { DeviceName = args[i + 1] }; break;
                case "--epochs": parsed = parsed with { Epochs = int.Parse(args[i + 1]) }; break;
                case "--batch": parsed = parsed with { BatchSize = int.Parse(args[i + 1]) }; break;
                case "--plot" when plots: parsed = parsed with { PlotPath = args[i + 1] }; break;
                case "--export-onnx" when exportsOnnx: parsed = parsed with { ExportOnnx = args[i + 1] }; break;
                default: Console.Error.WriteLine($"unknown option {args[i]}"); return null;
            }
        }
        return parsed;
    }
}
