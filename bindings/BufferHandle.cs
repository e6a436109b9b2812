using System.Runtime.InteropServices;

namespace Kernels;

/// <summary>Owns one native kn_buffer*; releasing it calls kn_buffer_free exactly once.</summary>
internal sealed class BufferHandle : SafeHandle
{
    public BufferHandle()
        : base(invalidHandleValue: 0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>Takes ownership of a buffer kn_buffer_create just returned.</summary>
    internal void Attach(nint buffer) => SetHandle(buffer);

    protected override bool ReleaseHandle() => NativeMethods.kn_buffer_free(handle) == Status.Ok;
}

/// <summary>
/// Holds a reference on a buffer's handle for the length of one native call, so that a Dispose on
/// another thread (or the finalizer) cannot free the buffer while a kernel reads it: the release is
/// deferred until the lease ends. A lease of a null optional buffer passes NULL.
/// </summary>
internal readonly struct BufferLease : IDisposable
{
    readonly BufferHandle? _owner;

    BufferLease(BufferHandle? owner, nint handle)
    {
        _owner = owner;
        Handle = handle;
    }

    /// <summary>The kn_buffer* to pass, or 0 for an absent optional buffer.</summary>
    public nint Handle { get; }

    /// <summary>Leases a required buffer.</summary>
    /// <exception cref="ArgumentNullException">The buffer is null.</exception>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public static BufferLease Required(DeviceBuffer? buffer, string name)
    {
        if (buffer is null)
            throw new ArgumentNullException(name);
        return Acquire(buffer, name);
    }

    /// <summary>Leases an optional buffer; null leases NULL.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public static BufferLease Optional(DeviceBuffer? buffer, string name) =>
        buffer is null ? default : Acquire(buffer, name);

    static BufferLease Acquire(DeviceBuffer buffer, string name)
    {
        if (!TryAddRef(buffer))
            throw Disposed(buffer, name);
        return new BufferLease(buffer.Handle, buffer.Handle.DangerousGetHandle());
    }

    /// <summary>Adds a reference to the buffer's handle; false when it was disposed. Whoever gets true calls
    /// <c>buffer.Handle.DangerousRelease()</c> once (a lease does it in Dispose; Ops.ManyLease, for the *StepMany calls, holds many).</summary>
    internal static bool TryAddRef(DeviceBuffer buffer)
    {
        bool added = false;
        try
        {
            buffer.Handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            added = false;
        }
        return added;
    }

    /// <summary>The error for a disposed buffer, naming it ("this" names none) with its size and device.</summary>
    internal static ObjectDisposedException Disposed(DeviceBuffer buffer, string name)
    {
        string which = name == "this" ? "The buffer" : $"The buffer '{name}'";
        return new ObjectDisposedException(nameof(DeviceBuffer), $"{which} ({buffer.Bytes} bytes on {buffer.Device.Name}) was disposed.");
    }

    public void Dispose() => _owner?.DangerousRelease();
}
