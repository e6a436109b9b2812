using System.Runtime.InteropServices;
using Google.Protobuf;
using Kernels.Nn.OnnxProto;

namespace Kernels.Nn;

/// <summary>
/// Tensor -> ONNX TensorProto (the export direction; the importer owns the other one). Values go into
/// raw_data as little-endian bytes, the form ONNX Runtime and onnx.numpy_helper read fastest and the
/// one PyTorch's exporter writes.
/// </summary>
internal static class OnnxTensors
{
    /// <summary>A float32 initializer named <paramref name="name"/> with the values and shape of <paramref name="tensor"/>
    /// (read from its device once).</summary>
    public static TensorProto FromTensor(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Dtype != Dtype.Float32)
            throw new NotSupportedException($"ONNX export: tensor '{name}' is {tensor.Dtype}; only float32 weights are exported");
        return FromFloats(name, tensor.ToArray(), tensor.ShapeArray);
    }

    /// <summary>A float32 tensor of <paramref name="values"/> in <paramref name="dims"/> (row-major).</summary>
    public static TensorProto FromFloats(string name, float[] values, ReadOnlySpan<long> dims)
    {
        CheckCount(name, values.Length, dims);
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        proto.Dims.AddRange(dims.ToArray());
        proto.RawData = LittleEndianBytes<float>(values);
        return proto;
    }

    /// <summary>An int64 tensor of <paramref name="values"/> in <paramref name="dims"/> (shapes for Reshape, axes).</summary>
    public static TensorProto FromInt64s(string name, long[] values, ReadOnlySpan<long> dims)
    {
        CheckCount(name, values.Length, dims);
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        proto.Dims.AddRange(dims.ToArray());
        proto.RawData = LittleEndianBytes<long>(values);
        return proto;
    }

    private static void CheckCount(string name, int count, ReadOnlySpan<long> dims)
    {
        long expected = 1;
        foreach (var d in dims) expected *= d;
        if (expected != count)
            throw new ArgumentException($"ONNX tensor '{name}': {count} values do not fill the shape [{string.Join(", ", dims.ToArray())}]");
    }

    private static ByteString LittleEndianBytes<T>(T[] values) where T : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        if (!BitConverter.IsLittleEndian)
        {
            // raw_data is little-endian by the format's definition, whatever the writer's machine.
            int size = Marshal.SizeOf<T>();
            for (int i = 0; i < bytes.Length; i += size) Array.Reverse(bytes, i, size);
        }
        return ByteString.CopyFrom(bytes);
    }
}
