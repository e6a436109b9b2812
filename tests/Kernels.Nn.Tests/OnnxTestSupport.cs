using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The independent side of the ONNX tests: ONNX Runtime (NuGet Microsoft.ML.OnnxRuntime, its own
/// kernels) runs the files, and the reference checker of the onnx Python package (Debian's python3-onnx)
/// validates them.
/// </summary>
internal static class OnnxTestSupport
{
    /// <summary>Runs the model at <paramref name="path"/> in ONNX Runtime on one float input; returns the first output and its shape.</summary>
    public static (float[] Values, long[] Shape) RunOrt(string path, float[] input, long[] shape)
    {
        using var session = new InferenceSession(path);
        var tensor = new DenseTensor<float>(input, shape.Select(d => checked((int)d)).ToArray());
        return Run(session, NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.First(), tensor));
    }

    /// <summary>Runs the model on one int64 input (token ids).</summary>
    public static (float[] Values, long[] Shape) RunOrt(string path, long[] input, long[] shape)
    {
        using var session = new InferenceSession(path);
        var tensor = new DenseTensor<long>(input, shape.Select(d => checked((int)d)).ToArray());
        return Run(session, NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.First(), tensor));
    }

    private static (float[] Values, long[] Shape) Run(InferenceSession session, NamedOnnxValue input)
    {
        using var results = session.Run(new[] { input });
        var output = results.First().AsTensor<float>();
        return (output.ToArray(), output.Dimensions.ToArray().Select(d => (long)d).ToArray());
    }

    private static string? checkerMissing;
    private static bool checkerProbed;

    /// <summary>
    /// Runs onnx.checker.check_model(full_check=True) (which includes shape inference) on the file; fails the
    /// test with the checker's message if it rejects it, and skips naming python3-onnx where that is missing.
    /// </summary>
    public static void Check(string path)
    {
        var rejection = CheckerRejection(path);
        Assert.That(rejection, Is.Null, $"onnx.checker rejects {path}");
    }

    /// <summary>The checker's complaint about the file, or null when it accepts it (skips where python3-onnx is missing).</summary>
    public static string? CheckerRejection(string path)
    {
        if (!checkerProbed)
        {
            checkerProbed = true;
            var (code, _, error) = Python("-c", "import onnx");
            if (code != 0) checkerMissing = $"the ONNX checker needs /usr/bin/python3 with python3-onnx (apt-get install python3-onnx): {error.Trim()}";
        }
        if (checkerMissing is not null) Assert.Ignore(checkerMissing);
        var (exit, output, stderr) = Python("-c", "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path);
        return exit == 0 ? null : stderr + output;
    }

    private static (int Code, string Output, string Error) Python(params string[] arguments)
    {
        const string python = "/usr/bin/python3";
        if (!File.Exists(python)) return (-1, "", $"{python} does not exist");
        var info = new ProcessStartInfo(python, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // The sanitizer stage preloads the ASan runtime into this process; the checker is not ours to sanitize.
        info.Environment.Remove("LD_PRELOAD");
        info.Environment.Remove("ASAN_OPTIONS");
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, output.Result, error.Result);
    }

    /// <summary>
    /// The largest |ours - theirs| / max(1, |theirs|) (absolute below 1, relative above), after checking the
    /// shapes agree; asserts it is within <paramref name="tolerance"/>.
    /// </summary>
    public static double AssertClose(float[] ours, long[] ourShape, float[] theirs, long[] theirShape, double tolerance, string what)
    {
        Assert.That(theirShape, Is.EqualTo(ourShape), $"{what}: ONNX Runtime's output shape");
        double worst = 0;
        int at = -1;
        for (int i = 0; i < ours.Length; i++)
        {
            double error = Math.Abs((double)ours[i] - theirs[i]) / Math.Max(1.0, Math.Abs((double)theirs[i]));
            if (!(error <= worst)) { worst = error; at = i; }
        }
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance),
            $"{what}: element {at}: ours {(at >= 0 ? ours[at] : 0)}, ONNX Runtime {(at >= 0 ? theirs[at] : 0)}");
        return worst;
    }

    /// <summary>Gives every parameter and buffer of <paramref name="model"/> random values (variances positive),
    /// so that a wrongly wired bias, scale or running statistic shows.</summary>
    public static void Randomize(Module model, int seed)
    {
        var random = new Random(seed);
        foreach (var (name, tensor) in model.NamedState())
        {
            var values = new float[tensor.Count];
            bool variance = name.EndsWith("running_var", StringComparison.Ordinal);
            for (int i = 0; i < values.Length; i++)
                values[i] = variance ? 0.5f + (float)random.NextDouble() : (float)(random.NextDouble() * 2 - 1);
            tensor.Buffer.Write<float>(values);
        }
    }

    /// <summary>A temporary folder for the test's files, deleted at the end.</summary>
    public static string TempDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "kn-onnx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}
