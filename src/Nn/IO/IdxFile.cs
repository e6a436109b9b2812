using System.IO.Compression;

namespace Kernels.Nn;

/// <summary>
/// Reads the IDX format of the MNIST files (raw or gzip): a 4-byte magic (0, 0, type, rank), rank
/// big-endian int32 dimensions, then the data. Only unsigned bytes (type 0x08) are supported, which is
/// what MNIST and Fashion-MNIST use. Every inconsistency is an <see cref="InvalidDataException"/>
/// naming the file, the offset and what was wrong.
/// The header is trusted for nothing: its size is computed without overflow and checked against a
/// limit, the file's length (raw) or what deflate can inflate to (gzip) before anything is allocated,
/// and a gzip stream is inflated only up to the declared size plus one byte, so a small .gz that
/// inflates to gigabytes costs no more memory than its header declares.
/// </summary>
public static class IdxFile
{
    /// <summary>The default largest data size <see cref="Read"/> accepts: 1 GiB (MNIST's largest file holds 47 MB).</summary>
    public const long DefaultMaxDataBytes = 1L << 30;

    // zlib's deflate inflates at most 1032:1 (a 258-byte match per 2 bits, and then some): a gzip
    // file of n bytes can never hold more than this many bytes.
    private const long DeflateMaxRatio = 1032;

    /// <summary>The dimensions and the bytes of an IDX file; files whose header declares more than
    /// <paramref name="maxDataBytes"/> bytes of data are refused before they are read.</summary>
    public static (int[] Dims, byte[] Data) Read(string path, long maxDataBytes = DefaultMaxDataBytes)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (maxDataBytes < 0 || maxDataBytes > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxDataBytes), $"maxDataBytes = {maxDataBytes} must be in 0..{Array.MaxLength}");
        using var file = File.OpenRead(path);
        long fileLength = file.Length;
        var magic = new byte[2];
        bool gzip = file.ReadAtLeast(magic, 2, throwOnEndOfStream: false) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        file.Position = 0;
        return gzip ? new GzipReader(path, file, fileLength).Read(maxDataBytes) : ReadIdx(path, file, fileLength, null, maxDataBytes);
    }

    /// <summary>Parses the IDX in <paramref name="source"/>; <paramref name="gzip"/> is set when it is inflated from one.</summary>
    private static (int[] Dims, byte[] Data) ReadIdx(string path, Stream source, long fileLength, GzipReader? gzip, long maxDataBytes)
    {
        string where = gzip is null ? "the file" : "the inflated data";
        var head = new byte[4];
        int got = source.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (got < 4)
            throw new InvalidDataException(gzip is null
                ? $"{path}: {got} bytes is too short for an IDX header (offset 0)"
                : $"{path}: the gzip data ends after {got} inflated bytes, inside the 4-byte IDX magic: the .gz file ({fileLength} bytes) is truncated or holds no IDX");
        if (head[0] != 0 || head[1] != 0)
            throw new InvalidDataException($"{path}: bad IDX magic {head[0]:x2} {head[1]:x2} {head[2]:x2} {head[3]:x2} at offset 0{(gzip is null ? "" : " of the inflated data")} (expected 00 00 08 <rank>)");
        if (head[2] != 0x08)
            throw new InvalidDataException($"{path}: IDX element type 0x{head[2]:x2} at offset 2 is not supported (only unsigned bytes, 0x08)");
        int rank = head[3];
        if (rank < 1 || rank > 4) throw new InvalidDataException($"{path}: IDX rank {rank} at offset 3 is not in 1..4");
        int header = 4 + 4 * rank;
        var dimBytes = new byte[4 * rank];
        got = source.ReadAtLeast(dimBytes, dimBytes.Length, throwOnEndOfStream: false);
        if (got < dimBytes.Length)
            throw new InvalidDataException($"{path}: {where} ends at byte {4 + got}, inside the {rank} dimensions (header needs {header} bytes): truncated");
        var dims = new int[rank];
        Int128 declared = 1;   // four int32 dimensions multiply to < 2^124: no overflow, no wrap to a plausible size
        for (int d = 0; d < rank; d++)
        {
            dims[d] = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(dimBytes.AsSpan(4 * d));
            if (dims[d] < 0) throw new InvalidDataException($"{path}: dimension {d} is negative ({dims[d]}) at offset {4 + 4 * d}");
            declared *= dims[d];
        }
        string shape = $"[{string.Join(", ", dims)}]";
        if (declared > maxDataBytes)
            throw new InvalidDataException($"{path}: dimensions {shape} declare {declared} data bytes, more than the limit of {maxDataBytes} (IdxFile.Read's maxDataBytes)");
        long expected = (long)declared;
        if (gzip is not null) gzip.ExpectedTotal = header + expected;
        if (gzip is null)
        {
            long actual = fileLength - header;
            if (actual != expected)
                throw new InvalidDataException($"{path}: dimensions {shape} need {expected} data bytes after the {header}-byte header, but the file has {actual} ({(actual < expected ? "truncated" : "trailing data")})");
        }
        else if (header + expected > DeflateMaxRatio * fileLength)
        {
            throw new InvalidDataException($"{path}: dimensions {shape} declare {expected} data bytes, but a {fileLength}-byte gzip file inflates to at most {DeflateMaxRatio * fileLength}: truncated or corrupt");
        }
        var data = new byte[expected];
        got = source.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
        if (got < expected)
            throw new InvalidDataException($"{path}: dimensions {shape} need {expected} data bytes after the {header}-byte header, but {where} has {got} (truncated)");
        if (gzip is not null)
        {
            // One byte more: finds trailing data without inflating it, and lets the gzip layer check
            // the trailer (CRC32, length).
            if (source.Read(new byte[1]) != 0)
                throw new InvalidDataException($"{path}: dimensions {shape} need {expected} data bytes after the {header}-byte header, but the inflated data goes on (trailing data); stopped reading there");
            gzip.CheckTrailerLength(header + expected);
        }
        return (dims, data);
    }

    /// <summary>
    /// Inflates a .gz for <see cref="ReadIdx"/>, turning the gzip layer's errors (which all read
    /// "unsupported compression method") into what is wrong: the header, the deflate data, the CRC.
    /// </summary>
    private sealed class GzipReader : Stream
    {
        private readonly string path;
        private readonly Stream file;
        private readonly long fileLength;
        private readonly GZipStream inflater;
        private long inflated;

        public GzipReader(string path, Stream file, long fileLength)
        {
            this.path = path;
            this.file = file;
            this.fileLength = fileLength;
            inflater = new GZipStream(file, CompressionMode.Decompress, leaveOpen: true);
        }

        public (int[] Dims, byte[] Data) Read(long maxDataBytes)
        {
            // The fixed 10-byte header (RFC 1952 2.3): magic, method, flags, time, extra flags, OS.
            var header = new byte[10];
            int got = file.ReadAtLeast(header, 10, throwOnEndOfStream: false);
            file.Position = 0;
            if (got < 10 || fileLength < 18)
                throw new InvalidDataException($"{path}: the gzip file is truncated: {fileLength} bytes, but a gzip member needs a 10-byte header and an 8-byte trailer around its data");
            if (header[2] != 8) throw new InvalidDataException($"{path}: gzip compression method {header[2]} at offset 2 is not deflate (8)");
            if ((header[3] & 0xe0) != 0) throw new InvalidDataException($"{path}: gzip flags 0x{header[3]:x2} at offset 3 set reserved bits");
            try
            {
                return ReadIdx(path, this, fileLength, this, maxDataBytes);
            }
            finally
            {
                inflater.Dispose();
            }
        }

        public override int Read(Span<byte> buffer)
        {
            try
            {
                int n = inflater.Read(buffer);
                inflated += n;
                return n;
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"{path}: corrupt gzip: {Explain()}", e);
            }
        }

        /// <summary>
        /// The gzip layer checks the trailer's CRC32 and length when the trailer is there, but a file
        /// cut anywhere after the last deflate block inflates without a word. The trailer must be the
        /// file's last 8 bytes and its length field must match, so a cut trailer is refused. (This
        /// also refuses a .gz of several concatenated members: recompress it as one.)
        /// </summary>
        public void CheckTrailerLength(long total)
        {
            var size = new byte[4];
            file.Position = fileLength - 4;
            file.ReadExactly(size);
            uint stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(size);
            if (stored != (uint)total)
                throw new InvalidDataException($"{path}: the gzip trailer's length at offset {fileLength - 4} says {stored} bytes but {total} inflated: the file is truncated, has data after the gzip stream, or holds several gzip members (recompress it as one)");
        }

        /// <summary>Bytes the IDX needs in all (header and data), once its header is parsed: bounds <see cref="Explain"/>.</summary>
        public long ExpectedTotal { get; set; } = 4 + 4 * 4;

        /// <summary>
        /// Inflates the first member's raw deflate data again (a DeflateStream checks nothing after
        /// it) to tell a bad deflate stream from a trailer that disagrees with good data. Error path
        /// only; inflates at most <see cref="ExpectedTotal"/> bytes and 64 KiB, keeping none of them.
        /// </summary>
        private string Explain()
        {
            long total = 0;
            try
            {
                long start = DeflateStart();
                if (start < 0) return "the optional fields of the gzip header run past the end of the file";
                file.Position = start;
                using var deflate = new DeflateStream(file, CompressionMode.Decompress, leaveOpen: true);
                var chunk = new byte[64 * 1024];
                uint crc = 0;
                int n;
                while (total <= ExpectedTotal && (n = deflate.Read(chunk)) > 0)
                {
                    crc = Crc32.Update(crc, chunk.AsSpan(0, n));
                    total += n;
                }
                if (total > ExpectedTotal) return $"the deflate data is invalid after {inflated} inflated bytes";
                var trailer = new byte[8];
                file.Position = fileLength - 8;
                file.ReadExactly(trailer);
                uint stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer);
                uint size = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer.AsSpan(4));
                if (crc != stored)
                    return $"the CRC32 of the {total} inflated bytes is 0x{crc:x8} but the trailer at offset {fileLength - 8} says 0x{stored:x8}";
                if (size != (uint)total)
                    return $"{total} bytes inflate but the trailer at offset {fileLength - 4} says {size}";
                return $"the data after the first gzip member ({total} inflated bytes) is not a valid gzip member";
            }
            catch (InvalidDataException)
            {
                return $"the deflate data is invalid after {total} inflated bytes";
            }
        }

        /// <summary>Where the deflate data starts: after the 10-byte header and the optional fields
        /// its flags announce (RFC 1952 2.3.1); -1 when they run past the end.</summary>
        private long DeflateStart()
        {
            file.Position = 3;
            int flags = file.ReadByte();
            long position = 10;
            file.Position = position;
            if ((flags & 4) != 0)   // FEXTRA: 2-byte length, then that many bytes
            {
                int low = file.ReadByte(), high = file.ReadByte();
                if (high < 0) return -1;
                position += 2 + (low | (high << 8));
                file.Position = position;
            }
            foreach (int flag in new[] { 8, 16 })   // FNAME, FCOMMENT: zero-terminated
                if ((flags & flag) != 0)
                {
                    int b;
                    while ((b = file.ReadByte()) > 0) { }
                    if (b < 0) return -1;
                }
            position = file.Position + ((flags & 2) != 0 ? 2 : 0);   // FHCRC
            return position <= fileLength ? position : -1;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => inflated; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>CRC-32 (IEEE 802.3, reflected, the one gzip uses); the framework's lives in a NuGet package.</summary>
    private static class Crc32
    {
        private static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
        {
            uint c = (uint)n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            return c;
        }).ToArray();

        public static uint Update(uint crc, ReadOnlySpan<byte> bytes)
        {
            crc = ~crc;
            foreach (var b in bytes) crc = Table[(crc ^ b) & 0xff] ^ (crc >> 8);
            return ~crc;
        }
    }
}
