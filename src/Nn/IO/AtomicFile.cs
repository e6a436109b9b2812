namespace Kernels.Nn;

/// <summary>
/// Writes a file all or nothing, for every writer of model files (<see cref="WeightsFile"/>,
/// <see cref="SafeTensors"/>): the bytes go to a temporary beside the target (".name.PID.RANDOM.tmp",
/// unique per call), flushed to disk, and are renamed over the target only when complete, so a crash
/// mid-save never destroys the previous file and never leaves a half-written one; the temporaries of
/// killed saves are removed by the next save to that target.
/// </summary>
internal static class AtomicFile
{
    /// <summary>
    /// Replaces <paramref name="path"/> with what <paramref name="write"/> writes. I/O errors become
    /// <see cref="IOException"/>s "path: could not save the <paramref name="what"/>: ..." naming the target;
    /// on any failure (the writer's own exceptions included, rethrown as they are) the previous file is untouched.
    /// </summary>
    public static void Write(string path, string what, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        var name = Path.GetFileName(full);
        // Unique per call (pid for the stale-file cleanup below, then a random part), so threads and
        // processes saving to one path never share a temporary; the last rename wins, whole.
        var temp = Path.Combine(directory, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            RemoveStaleTemporaries(directory, name);
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temp); } catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
            // The platform's message names the temporary; the caller knows only the target.
            throw new IOException($"{full}: could not save the {what}: {e.Message.Replace(temp, full)}", e);
        }
        catch
        {
            try { File.Delete(temp); } catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Deletes the temporaries a save to this target left behind when its process was killed
    /// (kill -9, power loss): ".name.PID.tmp" (older versions) and ".name.PID.RANDOM.tmp" whose PID
    /// is not a running process. Temporaries of running processes may be saves in flight: kept.
    /// </summary>
    private static void RemoveStaleTemporaries(string directory, string name)
    {
        if (!Directory.Exists(directory)) return;
        string prefix = $".{name}.";
        foreach (var file in Directory.EnumerateFiles(directory, $".{name}.*.tmp"))
        {
            var middle = Path.GetFileName(file)[prefix.Length..^".tmp".Length];
            int dot = middle.IndexOf('.');
            var pidText = dot < 0 ? middle : middle[..dot];
            if (dot >= 0 && middle[(dot + 1)..].Contains('.')) continue;   // not one of ours
            if (!int.TryParse(pidText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)) continue;
            if (IsRunning(pid)) continue;
            try { File.Delete(file); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }
}
