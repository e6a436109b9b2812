// Shared by the MNIST samples, linked into each project (<Compile Include="../Common/..." />) rather
// than packaged: the command line they all take.
/// <summary>The samples' command line: <c>[--device cpu|opencl:0|cuda:0] [--epochs N] [--batch N]</c>, and
/// <c>[--plot PATH]</c> (the training history as a PNG; default: no plot) in the samples that draw one.</summary>
internal sealed record SampleArguments(string DeviceName, int Epochs, int BatchSize, string? PlotPath = null)
{
    /// <summary>The options over the sample's defaults, or null (after naming the unknown option and the usage
    /// on stderr) when one is not recognised. <paramref name="plot"/>: the sample takes --plot.</summary>
    public static SampleArguments? Parse(string[] args, int epochs, int batchSize, bool plot = false)
    {
        var parsed = new SampleArguments("cpu", epochs, batchSize);
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--device": parsed = parsed with { DeviceName = args[i + 1] }; break;
                case "--epochs": parsed = parsed with { Epochs = int.Parse(args[i + 1]) }; break;
                case "--batch": parsed = parsed with { BatchSize = int.Parse(args[i + 1]) }; break;
                case "--plot" when plot: parsed = parsed with { PlotPath = args[i + 1] }; break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    Console.Error.WriteLine($"usage: [--device cpu|opencl:0|cuda:0] [--epochs N (default {epochs})] [--batch N (default {batchSize})]"
                                            + (plot ? " [--plot PATH (the loss and accuracy per epoch as a PNG; default: none)]" : ""));
                    return null;
            }
        }
        return parsed;
    }
}
