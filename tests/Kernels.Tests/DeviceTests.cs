// The device registry: what Device.All lists, lookups by name, backend availability and the
// KERNELS_REQUIRE_* contract for runs that must have a GPU.
using Kernels.Tests.Support;
using NUnit.Framework;

namespace Kernels.Tests;

public sealed class DeviceTests
{
    [Test]
    public void All_ListsCpuFirst()
    {
        Assert.That(Device.All, Is.Not.Empty);
        Assert.Multiple(() =>
        {
            Assert.That(Device.All[0].Name, Is.EqualTo("cpu"));
            Assert.That(Device.All[0].Kind, Is.EqualTo(DeviceKind.Cpu));
            Assert.That(Device.Cpu, Is.SameAs(Device.All[0]));
            Assert.That(Device.All.Count(d => d.Kind == DeviceKind.Cpu), Is.EqualTo(1), "exactly one CPU device");
        });
    }

    [Test]
    public void All_NamesAreUniqueAndFollowTheKindIndexPattern()
    {
        string[] names = Device.All.Select(d => d.Name).ToArray();
        Assert.That(names, Is.Unique, string.Join(", ", names));
        foreach (DeviceKind kind in new[] { DeviceKind.Cuda, DeviceKind.OpenCL })
        {
            string prefix = kind == DeviceKind.Cuda ? "cuda" : "opencl";
            string[] ofKind = Device.All.Where(d => d.Kind == kind).Select(d => d.Name).ToArray();
            Assert.That(ofKind, Is.EqualTo(Enumerable.Range(0, ofKind.Length).Select(i => $"{prefix}:{i}")),
                $"{prefix} devices are numbered from 0 in order");
        }
    }

    [Test]
    public void All_OrdersCpuThenCudaThenOpenCL()
    {
        int[] ranks = Device.All.Select(d => Rank(d.Kind)).ToArray();
        Assert.That(ranks, Is.Ordered, string.Join(", ", Device.All.Select(d => d.Name)));

        static int Rank(DeviceKind kind) => kind switch { DeviceKind.Cpu => 0, DeviceKind.Cuda => 1, _ => 2 };
    }

    [Test]
    public void Get_EveryListedName_ReturnsThatDevice()
    {
        foreach (Device device in Device.All)
        {
            Assert.That(Device.Get(device.Name), Is.SameAs(device), device.Name);
            Assert.That(Device.TryGet(device.Name, out Device? found), Is.True, device.Name);
            Assert.That(found, Is.SameAs(device), device.Name);
        }
    }

    [TestCase("cuda", DeviceKind.Cuda)]
    [TestCase("opencl", DeviceKind.OpenCL)]
    public void Get_BareBackendName_MeansIndexZero(string name, DeviceKind kind)
    {
        Device? first = Device.All.FirstOrDefault(d => d.Kind == kind);
        if (first is null)
        {
            Assert.Throws<DeviceNotFoundException>(() => Device.Get(name));
            return;
        }
        Assert.That(Device.Get(name), Is.SameAs(first));
    }

    [Test]
    public void EveryDevice_DescribesItselfAndSynchronizes()
    {
        foreach (Device device in Device.All)
        {
            Assert.Multiple(() =>
            {
                Assert.That(device.Description, Is.Not.Empty, $"{device.Name}: description");
                Assert.That(device.TotalMemory, Is.Positive, $"{device.Name}: total memory");
                if (device.Kind == DeviceKind.Cuda)
                    Assert.That(device.Capability.Major, Is.GreaterThanOrEqualTo(3), $"{device.Name}: compute capability");
                if (device.Kind == DeviceKind.OpenCL)
                    Assert.That(device.Capability.Major, Is.GreaterThanOrEqualTo(1), $"{device.Name}: OpenCL version");
            });
            device.Synchronize();
        }
    }

    [TestCase(DeviceKind.Cpu)]
    [TestCase(DeviceKind.Cuda)]
    [TestCase(DeviceKind.OpenCL)]
    public void BackendInfo_IsAvailableExactlyWhenItHasDevices_AndGivesAReasonOtherwise(DeviceKind kind)
    {
        (bool available, string reason) = Device.BackendInfo(kind);
        bool hasDevices = Device.All.Any(d => d.Kind == kind);
        Assert.That(available, Is.EqualTo(hasDevices), $"{kind}: available = {available}, devices: {string.Join(", ", Device.All.Select(d => d.Name))}");
        if (!available)
            Assert.That(reason, Is.Not.Empty, $"{kind}: an unavailable backend says why");
    }

    /// <summary>
    /// The contract for GPU runs: a backend with no device is skipped with the library's reason,
    /// unless KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1 says it must be there: then the run
    /// fails (no silent fallback to the CPU).
    /// </summary>
    [TestCase(DeviceKind.Cuda)]
    [TestCase(DeviceKind.OpenCL)]
    public void RequiredBackend_HasADevice_ElseSkippedWithReasonOrFailedWhenRequired(DeviceKind kind)
    {
        Device device = BackendDevices.Require(kind == DeviceKind.Cuda ? "cuda:0" : "opencl:0");
        Assert.That(device.Kind, Is.EqualTo(kind));
    }

    [TestCase("cuda:99")]
    [TestCase("opencl:99")]
    [TestCase("tpu:0")]
    [TestCase("")]
    public void Get_UnknownName_ThrowsDeviceNotFoundNamingItAndTheDevicesThereAre(string name)
    {
        var error = Assert.Throws<DeviceNotFoundException>(() => Device.Get(name));
        Assert.That(error!.Message, Does.Contain($"'{name}'").And.Contain("cpu"), "the message names the request and lists the devices");
        Assert.That(error.Status, Is.EqualTo(Status.ErrorNotFound));
        Assert.That(Device.TryGet(name, out Device? device), Is.False);
        Assert.That(device, Is.Null);
        Assert.That(Device.Get("cpu"), Is.SameAs(Device.Cpu), "a valid lookup right after");
    }

    [Test]
    public void Get_CudaWithoutCuda_SaysWhyInTheMessage()
    {
        (bool available, string reason) = Device.BackendInfo(DeviceKind.Cuda);
        if (available)
            Assert.Ignore("CUDA is available here; the message for a missing backend cannot be seen");
        var error = Assert.Throws<DeviceNotFoundException>(() => Device.Get("cuda:0"));
        Assert.That(error!.Message, Does.Contain(reason));
    }
}
