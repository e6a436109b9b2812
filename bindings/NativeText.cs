using System.Runtime.InteropServices;
using System.Text;

namespace Kernels;

/// <summary>UTF-8 strings across the C boundary: kernels.h passes and returns NUL-terminated UTF-8.</summary>
internal static unsafe class NativeText
{
    /// <summary>A library-owned C string as a .NET string ("" for NULL). Copy it before the next call: it may be reused.</summary>
    public static string FromUtf8(byte* text) => text is null ? "" : Marshal.PtrToStringUTF8((nint)text) ?? "";

    /// <summary><paramref name="text"/> as NUL-terminated UTF-8, ready to pin and pass as <c>const char*</c>.</summary>
    public static byte[] ToUtf8(string text, string parameterName)
    {
        if (text.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("The string contains a NUL character, which would cut it short in C.", parameterName);
        var bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
        Encoding.UTF8.GetBytes(text, bytes);
        return bytes;
    }

    /// <summary>The calling thread's <c>kn_last_error()</c>.</summary>
    public static string LastError() => FromUtf8(NativeMethods.kn_last_error());
}
