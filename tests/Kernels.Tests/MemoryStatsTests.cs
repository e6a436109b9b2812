// The per-device caching allocator and its statistics: live bytes and buffers follow creation and
// disposal exactly, a freed block is reused for a request of the same size class, and Trim returns
// the cache. Runs on every device (the cache sits above the backends).
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

[TestFixtureSource(typeof(BackendDevices), nameof(BackendDevices.Fixtures))]
public sealed class MemoryStatsTests : DeviceFixture
{
    public MemoryStatsTests(string deviceName) : base(deviceName) { }

    [Test]
    public void Live_bytes_and_buffers_follow_create_and_dispose()
    {
        var before = Device.GetMemoryStats();
        var a = DeviceBuffer.Allocate(Device, 1000);
        var b = DeviceBuffer.Allocate(Device, 3_000_000);
        var during = Device.GetMemoryStats();
        Assert.That(during.LiveBytes - before.LiveBytes, Is.EqualTo(3_001_000), "live bytes count requested sizes");
        Assert.That(during.LiveBuffers - before.LiveBuffers, Is.EqualTo(2));
        Assert.That(during.PeakLiveBytes, Is.GreaterThanOrEqualTo(during.LiveBytes));
        a.Dispose();
        b.Dispose();
        var after = Device.GetMemoryStats();
        Assert.That(after.LiveBytes, Is.EqualTo(before.LiveBytes), "disposal returns the live bytes");
        Assert.That(after.LiveBuffers, Is.EqualTo(before.LiveBuffers));
    }

    [Test]
    public void A_freed_block_is_reused_and_Trim_returns_the_cache()
    {
        Device.Trim();
        var buffer = DeviceBuffer.Allocate(Device, 5_000_000);
        buffer.Dispose();
        var parked = Device.GetMemoryStats();
        Assert.That(parked.CachedBytes, Is.GreaterThanOrEqualTo(5_000_000), "the freed block is kept for reuse");

        using (var again = DeviceBuffer.Allocate(Device, 4_900_000))   // same 1 MiB size class
        {
            var reused = Device.GetMemoryStats();
            Assert.That(reused.CachedBytes, Is.EqualTo(parked.CachedBytes - 5 * 1024 * 1024), "the parked block was handed out again");
            float[] data = Enumerable.Range(0, 1000).Select(i => (float)i).ToArray();
            again.Write<float>(data);
            Assert.That(again.ToArray().Take(1000), Is.EqualTo(data), "the reused block works like a new one");
        }

        using (var small = DeviceBuffer.Allocate(Device, 1000))
            Assert.That(Device.GetMemoryStats().CachedBytes, Is.EqualTo(parked.CachedBytes), "a 1 KB request does not take the 5 MB block");

        Device.Trim();
        Assert.That(Device.GetMemoryStats().CachedBytes, Is.EqualTo(0), "Trim empties the cache");
    }
}
