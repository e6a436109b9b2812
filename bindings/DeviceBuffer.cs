using System.Runtime.InteropServices;

namespace Kernels;

/// <summary>
/// Memory on one <see cref="Device"/>. Dispose it (or let a scope do it) as soon as it is no longer
/// needed: device memory must not wait for the garbage collector, whose finalizer is only a safety net.
/// Offsets and sizes are in bytes unless a member says elements; elements are float32 (4 bytes).
/// </summary>
public sealed unsafe class DeviceBuffer : IDisposable
{
    readonly BufferHandle _handle;

    DeviceBuffer(BufferHandle handle, Device device, long bytes)
    {
        _handle = handle;
        Device = device;
        Bytes = bytes;
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes on <paramref name="device"/>; the contents are undefined until written.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    /// <exception cref="KernelsArgumentException"><paramref name="bytes"/> is negative.</exception>
    /// <exception cref="DeviceOutOfMemoryException">The device could not allocate.</exception>
    public static DeviceBuffer Allocate(Device device, long bytes)
    {
        ArgumentNullException.ThrowIfNull(device);
        // The SafeHandle exists before the native allocation, so nothing between kn_buffer_create
        // and taking ownership can fail and leak the buffer.
        var handle = new BufferHandle();
        nint buffer;
        Ensure.Success(NativeMethods.kn_buffer_create(device.Handle, bytes, &buffer));
        handle.Attach(buffer);
        return new DeviceBuffer(handle, device, bytes);
    }

    /// <summary>A new float32 buffer on <paramref name="device"/> holding a copy of <paramref name="data"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    public static DeviceBuffer FromArray(Device device, ReadOnlySpan<float> data)
    {
        DeviceBuffer buffer = Allocate(device, (long)data.Length * sizeof(float));
        try
        {
            buffer.Write(data);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>The device this buffer lives on.</summary>
    public Device Device { get; }

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>Size in float32 elements (<see cref="Bytes"/> / 4).</summary>
    public long Length => Bytes / sizeof(float);

    /// <summary>Whether <see cref="Dispose"/> has been called.</summary>
    public bool IsDisposed => _handle.IsClosed;

    internal BufferHandle Handle => _handle;

    /// <summary>Copies <paramref name="source"/> from the host into this buffer, starting <paramref name="byteOffset"/> bytes in.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    /// <exception cref="ShapeMismatchException">The data does not fit between the offset and the end of the buffer.</exception>
    public void Write<T>(ReadOnlySpan<T> source, long byteOffset = 0)
        where T : unmanaged
    {
        ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(source);
        using BufferLease lease = BufferLease.Required(this, "this");
        fixed (byte* data = bytes)
            Ensure.Success(NativeMethods.kn_buffer_write(lease.Handle, byteOffset, data, bytes.Length));
    }

    /// <summary>Copies from this buffer, starting <paramref name="byteOffset"/> bytes in, into <paramref name="destination"/>; waits for queued work that writes the buffer.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    /// <exception cref="ShapeMismatchException">The buffer holds fewer bytes than the destination asks for.</exception>
    public void Read<T>(Span<T> destination, long byteOffset = 0)
        where T : unmanaged
    {
        Span<byte> bytes = MemoryMarshal.AsBytes(destination);
        using BufferLease lease = BufferLease.Required(this, "this");
        fixed (byte* data = bytes)
            Ensure.Success(NativeMethods.kn_buffer_read(lease.Handle, byteOffset, data, bytes.Length));
    }

    /// <summary>
    /// The address of byte <paramref name="byteOffset"/> of this buffer's memory, for a library that reads and
    /// writes device memory itself (a CUDA-aware MPI): a host pointer on the CPU, a CUDA device pointer on
    /// CUDA, zero for an empty buffer. Valid while the buffer lives (hold a reference to it for as long as the
    /// other library uses the address). Kernels are asynchronous on a GPU: <see cref="Device.Synchronize"/>
    /// before the other library touches the memory.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    /// <exception cref="BackendNotSupportedException">The buffer is on an OpenCL device (a cl_mem is a handle, not an address).</exception>
    /// <exception cref="ShapeMismatchException">The offset is past the end of the buffer.</exception>
    public nint Address(long byteOffset = 0)
    {
        using BufferLease lease = BufferLease.Required(this, "this");
        void* address;
        Ensure.Success(NativeMethods.kn_buffer_address(lease.Handle, byteOffset, &address));
        return (nint)address;
    }

    /// <summary>The whole buffer as float32 values, copied to the host.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public float[] ToArray()
    {
        var result = new float[ArrayLength(Length, "float32")];
        Read<float>(result);
        return result;
    }

    /// <summary>The whole buffer as int64 values (e.g. the indices of <see cref="Ops.ArgReduce"/>), copied to the host.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public long[] ToInt64Array()
    {
        var result = new long[ArrayLength(Bytes / sizeof(long), "int64")];
        Read<long>(result);
        return result;
    }

    /// <summary>Copies <paramref name="bytes"/> bytes of <paramref name="source"/> into this buffer; the buffers may live on different devices.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> is null.</exception>
    /// <exception cref="ObjectDisposedException">Either buffer was disposed.</exception>
    /// <exception cref="ShapeMismatchException">A range overruns its buffer.</exception>
    public void CopyFrom(DeviceBuffer source, long sourceOffset, long destinationOffset, long bytes) =>
        SafeNativeMethods.kn_buffer_copy(this, destinationOffset, source, sourceOffset, bytes);

    /// <summary>Sets <paramref name="count"/> float32 elements (default: to the end), starting at element <paramref name="offset"/>, to <paramref name="value"/>.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    /// <exception cref="ShapeMismatchException">The range overruns the buffer.</exception>
    public void Fill(float value, long offset = 0, long? count = null) =>
        SafeNativeMethods.kn_buffer_fill_f32(this, offset, count ?? Length - offset, value);

    /// <summary>Frees the device memory. Later use throws <see cref="ObjectDisposedException"/>; calling it again does nothing.</summary>
    public void Dispose() => _handle.Dispose();

    /// <summary>Size and device, e.g. "DeviceBuffer(4096 bytes on cuda:0)".</summary>
    public override string ToString() =>
        IsDisposed ? $"DeviceBuffer(disposed, was {Bytes} bytes on {Device.Name})" : $"DeviceBuffer({Bytes} bytes on {Device.Name})";

    static int ArrayLength(long elements, string type) =>
        elements <= Array.MaxLength
            ? (int)elements
            : throw new InvalidOperationException($"The buffer holds {elements} {type} values, more than one .NET array can; read it in parts with Read.");
}
