namespace Kernels;

/// <summary>
/// A failed libkernels call. <see cref="Status"/> is the native status; the message is the library's
/// own explanation (<c>kn_last_error</c>), which names the function, the operand and the sizes.
/// Subclasses narrow it down so callers can catch what they can act on.
/// </summary>
public class KernelsException : Exception
{
    /// <summary>Creates the exception for a native status and its message.</summary>
    public KernelsException(Status status, string message)
        : base(message)
    {
        Status = status;
    }

    /// <summary>Creates the exception for a native status, its message and the exception that caused it.</summary>
    public KernelsException(Status status, string message, Exception? innerException)
        : base(message, innerException)
    {
        Status = status;
    }

    /// <summary>The status code the native library returned.</summary>
    public Status Status { get; }
}

/// <summary>A null or freed handle, a negative size, an unknown enum value (<see cref="Status.ErrorInvalidArgument"/>).</summary>
public class KernelsArgumentException : KernelsException
{
    /// <summary>Creates the exception with the library's message.</summary>
    public KernelsArgumentException(string message) : base(Status.ErrorInvalidArgument, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public KernelsArgumentException(string message, Exception? innerException) : base(Status.ErrorInvalidArgument, message, innerException) { }
}

/// <summary>Shapes that do not fit together, or a buffer too small for them (<see cref="Status.ErrorShapeMismatch"/>).</summary>
public class ShapeMismatchException : KernelsException
{
    /// <summary>Creates the exception with a message naming the shapes.</summary>
    public ShapeMismatchException(string message) : base(Status.ErrorShapeMismatch, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public ShapeMismatchException(string message, Exception? innerException) : base(Status.ErrorShapeMismatch, message, innerException) { }
}

/// <summary>Buffers of two different devices in one call (<see cref="Status.ErrorDeviceMismatch"/>).</summary>
public class DeviceMismatchException : KernelsException
{
    /// <summary>Creates the exception with a message naming the devices.</summary>
    public DeviceMismatchException(string message) : base(Status.ErrorDeviceMismatch, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DeviceMismatchException(string message, Exception? innerException) : base(Status.ErrorDeviceMismatch, message, innerException) { }
}

/// <summary>The device (or the host, for the CPU) could not allocate (<see cref="Status.ErrorOutOfMemory"/>).</summary>
public class DeviceOutOfMemoryException : KernelsException
{
    /// <summary>Creates the exception with the library's message.</summary>
    public DeviceOutOfMemoryException(string message) : base(Status.ErrorOutOfMemory, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DeviceOutOfMemoryException(string message, Exception? innerException) : base(Status.ErrorOutOfMemory, message, innerException) { }
}

/// <summary>No device has the requested name or index (<see cref="Status.ErrorNotFound"/>); the message lists the devices there are.</summary>
public class DeviceNotFoundException : KernelsException
{
    /// <summary>Creates the exception with the library's message.</summary>
    public DeviceNotFoundException(string message) : base(Status.ErrorNotFound, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DeviceNotFoundException(string message, Exception? innerException) : base(Status.ErrorNotFound, message, innerException) { }
}

/// <summary>The device's backend does not implement the operation (<see cref="Status.ErrorNotSupported"/>).</summary>
public class BackendNotSupportedException : KernelsException
{
    /// <summary>Creates the exception with the library's message.</summary>
    public BackendNotSupportedException(string message) : base(Status.ErrorNotSupported, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public BackendNotSupportedException(string message, Exception? innerException) : base(Status.ErrorNotSupported, message, innerException) { }
}

/// <summary>A CUDA or OpenCL call failed; the message carries the API's error (<see cref="Status.ErrorBackend"/>).</summary>
public class BackendException : KernelsException
{
    /// <summary>Creates the exception with the library's message.</summary>
    public BackendException(string message) : base(Status.ErrorBackend, message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public BackendException(string message, Exception? innerException) : base(Status.ErrorBackend, message, innerException) { }
}

/// <summary>
/// A tensor of the wrong element type for an operation: an int64 tensor given to a float32 op, or two
/// element types mixed in one op (nothing is promoted silently). The message names the op and the types.
/// </summary>
public class DtypeMismatchException : KernelsException
{
    /// <summary>Creates the exception.</summary>
    public DtypeMismatchException(string message) : base(Status.ErrorInvalidArgument, message) { }

    /// <summary>Creates the exception, wrapping the one that caused it.</summary>
    public DtypeMismatchException(string message, Exception? innerException) : base(Status.ErrorInvalidArgument, message, innerException) { }
}
