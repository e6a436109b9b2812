namespace Kernels.Nn;
public static partial class Onnx { }
