// The networks of the MNIST samples, defined once: linked into samples/MnistMlp and samples/MnistCnn
// (which train them) and into tests/Kernels.Nn.Tests (OnnxMnistTests, which trains them briefly, exports
// them to ONNX and checks ONNX Runtime's predictions on the test set against the library's).
using Kernels;
using Kernels.Nn;

/// <summary>The MNIST samples' networks; both take flat [N, 784] images and give 10 logits.</summary>
internal static class MnistNetworks
{
    /// <summary>The multi-layer perceptron: 784 -> 512 -> 256 -> 10, ReLU, dropout 0.2 (0.54 M parameters).</summary>
    public static Sequential Mlp(Device device) => new(
        new Dense(784, 512, weightInit: Initializer.HeUniform, seed: 1, device: device),
        Activation.Relu(),
        new Dropout(0.2f, seed: 2),
        new Dense(512, 256, weightInit: Initializer.HeUniform, seed: 3, device: device),
        Activation.Relu(),
        new Dropout(0.2f, seed: 4),
        new Dense(256, 10, seed: 5, device: device));

    /// <summary>
    /// The convolutional network (NCHW):
    /// [1x28x28] -> Conv 3x3, 32 -> BatchNorm -> ReLU -> MaxPool 2 -> [32x14x14]
    ///           -> Conv 3x3, 64 -> BatchNorm -> ReLU -> MaxPool 2 -> [64x7x7]
    ///           -> Flatten -> Dense 128 -> ReLU -> Dropout 0.25 -> Dense 10
    /// </summary>
    public static Sequential Cnn(Device device) => new(
        new Reshape(1, 28, 28),
        new Conv2D(1, 32, kernelSize: 3, padding: 1, bias: false, seed: 1, device: device),
        new BatchNorm2D(32, device: device),
        Activation.Relu(),
        new MaxPool2D(2),
        new Conv2D(32, 64, kernelSize: 3, padding: 1, bias: false, seed: 2, device: device),
        new BatchNorm2D(64, device: device),
        Activation.Relu(),
        new MaxPool2D(2),
        new Flatten(),
        new Dense(64 * 7 * 7, 128, weightInit: Initializer.HeUniform, seed: 4, device: device),
        Activation.Relu(),
        new Dropout(0.25f, seed: 5),
        new Dense(128, 10, seed: 6, device: device));
}
