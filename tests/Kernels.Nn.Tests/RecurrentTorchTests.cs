using System.IO.Compression;
using System.Text.Json;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// SimpleRNN / LSTM / GRU / Bidirectional against PyTorch 1.13 (nn.RNN tanh, nn.LSTM, nn.GRU): the fixtures in
/// tests/fixtures/recurrent (written by make_fixtures.py there; see it for the format) hold the inputs, the
/// weights under PyTorch's names, the initial states, PyTorch's float64 outputs and final states, and the
/// gradients of a fixed scalar loss with respect to the input, the initial states and every weight. The
/// weights are loaded unchanged (weight_ih_l0 -> weight_ih, ..., *_reverse -> the backward layer), the
/// layer runs in float32 on each device, and everything is compared with the tolerances below. No torch
/// is needed at run time.
/// </summary>
[TestFixture]
public class RecurrentTorchTests
{
    // float32 compute against PyTorch's float64: |ours - torch| <= atol + rtol * |torch|.
    private const double ValueAtol = 2e-6, ValueRtol = 2e-5;       // outputs and final states
    private const double GradientAtol = 2e-5, GradientRtol = 2e-4; // gradients (sums over steps and rows)

    private static string FixtureDirectory => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "recurrent");

    private static IEnumerable<string> Fixtures() =>
        Directory.GetFiles(FixtureDirectory, "*.json.gz").Select(Path.GetFileName).Order()!;

    [Test]
    public void The_fixtures_are_there()
    {
        var names = Fixtures().ToArray();
        Assert.That(names, Has.Length.GreaterThanOrEqualTo(12), $"fixtures in {FixtureDirectory}");
        foreach (var kind in new[] { "rnn", "lstm", "gru" })
            Assert.That(names.Count(n => n.StartsWith(kind + "_", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(3), kind);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Layers_match_PyTorch_forwards_and_backwards(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        worstValue = worstGradient = 0;
        foreach (var file in Fixtures())
            CheckFixture(file, device);
        // How close to the tolerance the worst element came (1 = at the limit), for the record.
        TestContext.Out.WriteLine($"{name}: worst |ours - torch| / tolerance: values {worstValue:F3}, gradients {worstGradient:F3}");
    }

    private static double worstValue, worstGradient;

    private static void CheckFixture(string file, Device device)
    {
        using var stream = new GZipStream(File.OpenRead(Path.Combine(FixtureDirectory, file)), CompressionMode.Decompress);
        using var json = JsonDocument.Parse(stream);
        var root = json.RootElement;
        string torchKind = root.GetProperty("kind").GetString()!;
        string kind = torchKind == "RNN" ? "SimpleRNN" : torchKind;
        long batch = root.GetProperty("batch").GetInt64(), steps = root.GetProperty("steps").GetInt64();
        long input = root.GetProperty("input").GetInt64(), hidden = root.GetProperty("hidden").GetInt64();
        bool bidirectional = root.GetProperty("bidirectional").GetBoolean();
        long[]? lengths = root.GetProperty("lengths").ValueKind == JsonValueKind.Null
            ? null : root.GetProperty("lengths").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        bool lstm = kind == "LSTM";
        int directions = bidirectional ? 2 : 1;
        string where = $"{file} on {device.Name}";

        using var scope = new DisposeScope();
        var layer = RecurrentLayerTests.Make(kind, input, hidden, returnSequences: true, returnState: true, device: device);
        using Module module = bidirectional ? new Bidirectional(layer) : layer;
        var directionLayers = bidirectional ? new[] { ((Bidirectional)module).Forwards, ((Bidirectional)module).Backwards } : new[] { layer };

        // PyTorch's parameter names -> ours, values loaded unchanged.
        var weights = root.GetProperty("weights");
        var parameters = new List<(string TorchName, Tensor Tensor)>();
        for (int d = 0; d < directions; d++)
        {
            string suffix = d == 0 ? "_l0" : "_l0_reverse";
            var l = directionLayers[d];
            parameters.Add(("weight_ih" + suffix, l.WeightIh));
            parameters.Add(("weight_hh" + suffix, l.WeightHh));
            parameters.Add(("bias_ih" + suffix, l.BiasIh!));
            parameters.Add(("bias_hh" + suffix, l.BiasHh!));
        }
        Assert.That(weights.EnumerateObject().Select(p => p.Name).Order(), Is.EqualTo(parameters.Select(p => p.TorchName).Order()), $"{where}: parameter names");
        foreach (var (torchName, tensor) in parameters)
        {
            var values = Floats(weights.GetProperty(torchName));
            Assert.That(values, Has.Length.EqualTo(tensor.Count), $"{where}: {torchName} size");
            tensor.Buffer.Write<float>(values);
        }

        var x = Tensor.FromArray(Floats(root.GetProperty("x")), new[] { batch, steps, input }, device);
        x.RequiresGrad = true;
        var stateShape = new[] { batch, hidden };
        // [directions, B, H] -> per direction [B, H]: h (and c) of the forward layer, then of the backward layer.
        var h0 = Directions(Floats(root.GetProperty("h0")), directions, stateShape, device);
        var c0 = lstm ? Directions(Floats(root.GetProperty("c0")), directions, stateShape, device) : null;
        var initial = new List<Tensor>();
        for (int d = 0; d < directions; d++)
        {
            initial.Add(h0[d]);
            if (c0 is not null) initial.Add(c0[d]);
        }

        var result = module is Bidirectional bi ? bi.Forward(x, initial, lengths: lengths) : layer.Forward(x, initial, lengths: lengths);
        Compare(result.Output, root.GetProperty("output"), $"{where}: output");
        int perDirection = lstm ? 2 : 1;
        var hN = Enumerable.Range(0, directions).Select(d => result.States[d * perDirection]).ToArray();
        var cN = lstm ? Enumerable.Range(0, directions).Select(d => result.States[d * perDirection + 1]).ToArray() : null;
        Compare(Tensor.Stack(hN), root.GetProperty("h_n"), $"{where}: h_n");
        if (cN is not null) Compare(Tensor.Stack(cN), root.GetProperty("c_n"), $"{where}: c_n");

        // loss = sum(output * w_output) + sum(h_n * w_h) (+ sum(c_n * w_c)), as the script computed it.
        var loss = result.Output.Mul(Tensor.FromArray(Floats(root.GetProperty("w_output")), result.Output.ShapeArray, device)).Sum();
        var wH = Directions(Floats(root.GetProperty("w_h")), directions, stateShape, device);
        for (int d = 0; d < directions; d++) loss = loss.Add(hN[d].Mul(wH[d]).Sum());
        if (cN is not null)
        {
            var wC = Directions(Floats(root.GetProperty("w_c")), directions, stateShape, device);
            for (int d = 0; d < directions; d++) loss = loss.Add(cN[d].Mul(wC[d]).Sum());
        }
        Assert.That(loss.Item(), Is.EqualTo(root.GetProperty("loss").GetDouble()).Within(1e-4 + 1e-4 * Math.Abs(root.GetProperty("loss").GetDouble())), $"{where}: loss");
        loss.Backward();

        var grad = root.GetProperty("grad");
        Compare(x.Grad!, grad.GetProperty("x"), $"{where}: d loss / d x", gradient: true);
        Compare(Tensor.Stack(h0.Select(t => t.Grad!).ToArray()), grad.GetProperty("h0"), $"{where}: d loss / d h0", gradient: true);
        if (c0 is not null) Compare(Tensor.Stack(c0.Select(t => t.Grad!).ToArray()), grad.GetProperty("c0"), $"{where}: d loss / d c0", gradient: true);
        foreach (var (torchName, tensor) in parameters)
            Compare(tensor.Grad!, grad.GetProperty(torchName), $"{where}: d loss / d {torchName}", gradient: true);
    }

    private static Tensor[] Directions(float[] values, int directions, long[] shape, Device device)
    {
        long n = shape[0] * shape[1];
        var result = new Tensor[directions];
        for (int d = 0; d < directions; d++)
        {
            result[d] = Tensor.FromArray(values.AsSpan((int)(d * n), (int)n), shape, device);
            result[d].RequiresGrad = true;
        }
        return result;
    }

    private static float[] Floats(JsonElement array) => array.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();

    private static void Compare(Tensor got, JsonElement want, string what, bool gradient = false)
    {
        var ours = got.ToArray();
        var torch = want.EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.That(ours, Has.Length.EqualTo(torch.Length), $"{what}: element count");
        double atol = gradient ? GradientAtol : ValueAtol, rtol = gradient ? GradientRtol : ValueRtol;
        for (int i = 0; i < ours.Length; i++)
        {
            double ratio = Math.Abs(ours[i] - torch[i]) / (atol + rtol * Math.Abs(torch[i]));
            if (gradient) worstGradient = Math.Max(worstGradient, ratio);
            else worstValue = Math.Max(worstValue, ratio);
            Assert.That(Math.Abs(ours[i] - torch[i]), Is.LessThanOrEqualTo(atol + rtol * Math.Abs(torch[i])),
                $"{what}[{i}]: {ours[i]} vs PyTorch (float64) {torch[i]}");
        }
    }
}
