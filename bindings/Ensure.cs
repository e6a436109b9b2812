using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Kernels;

/// <summary>Turns a native status into the matching exception, carrying <c>kn_last_error()</c>.</summary>
internal static class Ensure
{
    /// <summary>Returns when <paramref name="status"/> is <see cref="Status.Ok"/>; throws the mapped exception otherwise.</summary>
    /// <remarks>Call it right after the native call, on the same thread: the message is thread-local and
    /// the next libkernels call on this thread replaces it.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Success(Status status)
    {
        if (status != Status.Ok)
            Throw(status);
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Throw(Status status)
    {
        string message = NativeText.LastError();
        if (message.Length == 0)
            message = $"libkernels returned {status} without a message";
        throw Create(status, message);
    }

    /// <summary>The exception type for a status; unknown and internal statuses give the base type.</summary>
    internal static KernelsException Create(Status status, string message) => status switch
    {
        Status.ErrorInvalidArgument => new KernelsArgumentException(message),
        Status.ErrorShapeMismatch => new ShapeMismatchException(message),
        Status.ErrorDeviceMismatch => new DeviceMismatchException(message),
        Status.ErrorOutOfMemory => new DeviceOutOfMemoryException(message),
        Status.ErrorNotFound => new DeviceNotFoundException(message),
        Status.ErrorNotSupported => new BackendNotSupportedException(message),
        Status.ErrorBackend => new BackendException(message),
        _ => new KernelsException(status, message),
    };
}
