using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>The sequence data sets' readers: the Brown corpus's tagged format, its split and tag sets,
/// the vocabulary, and MNIST read row by row. None of them needs the network: small files are written here.</summary>
[TestFixture]
public class SequenceDataTests
{
    private string dir = "";

    [SetUp]
    public void MakeDirectory() => dir = Directory.CreateTempSubdirectory("kernels-seqdata-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(dir, recursive: true);

    [Test]
    public void Brown_parse_splits_at_the_last_slash_and_skips_blank_lines()
    {
        var text = "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd 1-1/2/cd ./.\n\n\n\tIt/pps urged/vbd\n";
        var sentences = Brown.Parse(new StringReader(text), "ca01");
        Assert.That(sentences, Has.Count.EqualTo(2));
        Assert.That(sentences[0].Words, Is.EqualTo(new[] { "The", "Fulton", "County", "said", "1-1/2", "." }));
        Assert.That(sentences[0].Tags, Is.EqualTo(new[] { "at", "np-tl", "nn-tl", "vbd", "cd", "." }));
        Assert.That(sentences[1].Words, Is.EqualTo(new[] { "It", "urged" }));
    }

    [TestCase("\tThe/at jury\n", "line 1, column 9", "no slash")]
    [TestCase("\tOk/at\n\tgood/jj /nn\n", "line 2, column 10", "empty word")]
    [TestCase("\tOk/at fine/\n", "line 1, column 8", "empty tag")]
    public void Brown_parse_names_the_file_line_and_column_of_a_malformed_token(string text, string where, string why)
    {
        var e = Assert.Throws<InvalidDataException>(() => Brown.Parse(new StringReader(text), "/data/brown/cb07"))!;
        Assert.That(e.Message, Does.Contain("/data/brown/cb07").And.Contain(where).And.Contain(why));
    }

    [TestCase("nn", "nn")]
    [TestCase("nn-tl", "nn")]
    [TestCase("np$-hl", "np$")]
    [TestCase("fw-at-tl", "fw-at")]
    [TestCase("nn-nc", "nn")]
    [TestCase("ppss+bem-tl-hl", "ppss+bem")]
    [TestCase("--", "--")]
    public void Brown_strip_tag_suffixes(string tag, string stripped) => Assert.That(Brown.StripTagSuffixes(tag), Is.EqualTo(stripped));

    [Test]
    public void Brown_split_holds_out_every_tenth_file_in_id_order()
    {
        var ids = new List<string>();
        foreach (var (letter, count) in new[] { ('a', 44), ('b', 27), ('c', 17), ('d', 17), ('e', 36), ('f', 48), ('g', 75), ('h', 30), ('j', 80), ('k', 29), ('l', 24), ('m', 6), ('n', 29), ('p', 29), ('r', 9) })
            for (int i = 1; i <= count; i++) ids.Add($"c{letter}{i:00}");
        Assert.That(ids, Has.Count.EqualTo(500), "the corpus's 500 files");
        var files = ids.AsEnumerable().Reverse().Select(id => new BrownFile(id, "x", Array.Empty<BrownSentence>())).ToList();
        var (train, heldOut) = Brown.Split(files);
        Assert.That(train, Has.Count.EqualTo(450));
        Assert.That(heldOut, Has.Count.EqualTo(50));
        Assert.That(heldOut.Take(5).Select(f => f.Id), Is.EqualTo(new[] { "ca10", "ca20", "ca30", "ca40", "cb06" }));
        Assert.That(heldOut[^1].Id, Is.EqualTo("cr09"));
        Assert.That(train.Select(f => f.Id).Intersect(heldOut.Select(f => f.Id)), Is.Empty);
    }

    [Test]
    public void Brown_load_reads_a_cached_copy_and_text_strips_the_tags()
    {
        File.WriteAllText(Path.Combine(dir, "cats.txt"), "ca01 news\nca02 news\n");
        File.WriteAllText(Path.Combine(dir, "ca01"), "\n\n\tThe/at jury/nn ./.\n");
        File.WriteAllText(Path.Combine(dir, "ca02"), "\tIt/pps rained/vbd\n");
        var files = Brown.Load(dir);
        Assert.That(files.Select(f => (f.Id, f.Category, f.Sentences.Count)), Is.EqualTo(new[] { ("ca01", "news", 1), ("ca02", "news", 1) }));
        Assert.That(Brown.Text(files), Is.EqualTo("The jury .\nIt rained\n"));
    }

    [Test]
    public void Brown_load_names_the_file_of_a_malformed_line_in_the_cache()
    {
        File.WriteAllText(Path.Combine(dir, "cats.txt"), "ca01 news\n");
        File.WriteAllText(Path.Combine(dir, "ca01"), "\tThe/at\n\tjury\n");
        var e = Assert.Throws<InvalidDataException>(() => Brown.Load(dir))!;
        Assert.That(e.Message, Does.Contain(Path.Combine(dir, "ca01")).And.Contain("line 2"));
    }

    [Test]
    public void Brown_categories_file_with_a_path_in_it_is_refused()
    {
        File.WriteAllText(Path.Combine(dir, "cats.txt"), "../../etc/passwd news\n");
        var e = Assert.Throws<InvalidDataException>(() => Brown.Load(dir))!;
        Assert.That(e.Message, Does.Contain("cats.txt").And.Contain("line 1"));
    }

    [Test]
    public void Vocabulary_reserves_padding_and_unknown_and_orders_by_count()
    {
        var vocabulary = new Vocabulary(new[] { "b", "a", "c", "a", "b", "a", "d" }, minCount: 1);
        Assert.That(vocabulary.Count, Is.EqualTo(6));
        Assert.That(vocabulary.Id("a"), Is.EqualTo(2), "most frequent first");
        Assert.That(vocabulary.Id("b"), Is.EqualTo(3));
        Assert.That(vocabulary.Id("c"), Is.EqualTo(4), "ties in ordinal order");
        Assert.That(vocabulary.Id("never seen"), Is.EqualTo(Vocabulary.Unknown));
        Assert.That(vocabulary[Vocabulary.Padding], Is.EqualTo("<pad>"));
        Assert.That(new Vocabulary(new[] { "b", "a", "a" }, minCount: 2).Id("b"), Is.EqualTo(Vocabulary.Unknown), "below minCount");
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = vocabulary[6]);
    }

    [Test]
    public void Mnist_rows_are_28_steps_of_28_features()
    {
        // Two 28x28 images whose pixel (r, c) is r: each step of the sequence is one row.
        foreach (var prefix in new[] { "train", "t10k" })
        {
            var pixels = new byte[2 * 28 * 28];
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i / 28 % 28);
            File.WriteAllBytes(Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), Idx(new uint[] { 2, 28, 28 }, pixels));
            File.WriteAllBytes(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), Idx(new uint[] { 2 }, new byte[] { 3, 7 }));
        }
        var (train, test) = Mnist.LoadRows(dir);
        Assert.That(train.FeatureShape, Is.EqualTo(new long[] { 28, 28 }));
        Assert.That(test.Count, Is.EqualTo(2));
        var x = new float[28 * 28];
        var y = new float[1];
        train.Get(1, x, y);
        Assert.That(y[0], Is.EqualTo(7f));
        Assert.That(x[5 * 28 + 17], Is.EqualTo(5 / 255f), "step 5 is row 5");
    }

    private static byte[] Idx(uint[] dims, byte[] data)
    {
        var header = new byte[4 + 4 * dims.Length];
        header[2] = 0x08;
        header[3] = (byte)dims.Length;
        for (int d = 0; d < dims.Length; d++)
            for (int k = 0; k < 4; k++) header[4 + 4 * d + k] = (byte)(dims[d] >> (24 - 8 * k));
        return header.Concat(data).ToArray();
    }
}
