using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The same networks, built from the same seeds, on the CPU and on each other backend: the forward
/// outputs, the loss and every parameter's gradient must agree. The per-kernel tests compare each
/// kernel with float64; this checks the whole path (autograd, layers, losses, dropout masks) end to end.
/// A backend that is absent is skipped with its reason, or fails when KERNELS_REQUIRE_CUDA=1 /
/// KERNELS_REQUIRE_OPENCL=1 says it must be there.
/// </summary>
[TestFixture]
public class CrossBackendTests
{
    public static IEnumerable<TestCaseData> Backends()
    {
        yield return new TestCaseData("opencl:0", DeviceKind.OpenCL, "KERNELS_REQUIRE_OPENCL").SetName("OpenCL_matches_cpu");
        yield return new TestCaseData("cuda:0", DeviceKind.Cuda, "KERNELS_REQUIRE_CUDA").SetName("CUDA_matches_cpu");
    }


    private static Sequential Mlp(Device d) => new(
        new Dense(12, 16, seed: 1, device: d), Activation.Relu(), new Dropout(0.3f, seed: 9),
        new Dense(16, 8, seed: 2, device: d), Activation.Tanh(), new Dense(8, 5, seed: 3, device: d));

    private static Sequential Cnn(Device d) => new(
        new Reshape(2, 7, 6),
        new Conv2D(2, 6, 3, padding: 1, seed: 1, device: d), new BatchNorm2D(6, device: d), Activation.Relu(),
        new MaxPool2D(2, stride: 1), new Conv2D(6, 6, (3, 2), stride: 2, groups: 3, seed: 2, device: d),
        Activation.Gelu(), new AvgPool2D(2, stride: 1, padding: 1, countIncludePad: false), new GlobalAvgPool2D(),
        new Dense(6, 5, seed: 3, device: d));

    [TestCaseSource(nameof(Backends))]
    public void Mlp_forward_and_backward(string name, DeviceKind kind, string requireVariable) =>
        Compare(TestDevices.Require(name, kind, requireVariable), Mlp, inputFeatures: 12);

    [TestCaseSource(nameof(Backends))]
    public void Cnn_forward_and_backward(string name, DeviceKind kind, string requireVariable) =>
        Compare(TestDevices.Require(name, kind, requireVariable), Cnn, inputFeatures: 2 * 7 * 6);

    private static void Compare(Device device, Func<Device, Sequential> build, int inputFeatures)
    {
        const int batch = 9;
        var x = GradCheck.Random(batch * inputFeatures, 17, -2, 2).Select(v => (float)v).ToArray();
        var labels = Enumerable.Range(0, batch).Select(i => (long)(i * 7 % 5)).ToArray();

        (float[] Output, float Loss, float[][] Grads) Run(Device d)
        {
            using var network = build(d);
            using var scope = new DisposeScope();
            var input = Tensor.FromArray(x, new long[] { batch, inputFeatures }, d);
            var output = network.Forward(input);
            var loss = Losses.SparseCategoricalCrossEntropy(output, labels);
            loss.Backward();
            return (output.ToArray(), loss.ToArray()[0], network.Parameters().Select(p => p.Grad!.ToArray()).ToArray());
        }

        var cpu = Run(Device.Cpu);
        var other = Run(device);
        // float32 kernels that sum in different orders: relative agreement ~1e-5 per op; 1e-3 leaves
        // room for a dozen ops and the batch-norm divisions while catching any wrong element.
        Assert.That(other.Output, Is.EqualTo(cpu.Output).Within(1e-3), $"{device.Name} forward output vs cpu");
        Assert.That(other.Loss, Is.EqualTo(cpu.Loss).Within(1e-4 + 1e-4 * Math.Abs(cpu.Loss)), $"{device.Name} loss vs cpu");
        for (int i = 0; i < cpu.Grads.Length; i++)
        {
            float scale = Math.Max(1e-3f, cpu.Grads[i].Max(Math.Abs));
            for (int j = 0; j < cpu.Grads[i].Length; j++)
                Assert.That(Math.Abs(other.Grads[i][j] - cpu.Grads[i][j]), Is.LessThanOrEqualTo(2e-3 * scale),
                    $"{device.Name} gradient of parameter {i} element {j}: {other.Grads[i][j]} vs cpu {cpu.Grads[i][j]}");
        }
    }
}
