// Which devices the backend fixtures run on, and what happens when a backend is missing.
//
// Every fixture that tests kernels is instantiated once per device: "cpu", each "opencl:N" and each
// "cuda:N" that the library found. A backend with no device still gets one fixture ("cuda:0",
// "opencl:0") so that its absence is visible in the results: its tests are skipped with the reason
// the library gives (Device.BackendInfo), or FAIL when the run was told the backend must be there
// (KERNELS_REQUIRE_CUDA=1, KERNELS_REQUIRE_OPENCL=1, set by the GPU and CI scripts). There is no
// silent fallback to the CPU.
using NUnit.Framework;

namespace Kernels.Tests.Support;

public static class BackendDevices
{
    /// <summary>Fixture arguments: one device name per fixture instance.</summary>
    public static IEnumerable<TestFixtureData> Fixtures() =>
        Names().Select(name => new TestFixtureData(name).SetArgDisplayNames(name));

    /// <summary>The same names as plain test-case arguments.</summary>
    public static IEnumerable<TestCaseData> Cases() =>
        Names().Select(name => new TestCaseData(name).SetArgDisplayNames(name));

    /// <summary>Names of the devices other than the CPU (for cross-device tests), with the same
    /// placeholders for absent backends.</summary>
    public static IEnumerable<TestCaseData> NonCpuCases() =>
        Names().Where(name => name != "cpu").Select(name => new TestCaseData(name).SetArgDisplayNames(name));

    /// <summary>"cpu", every device found, and "cuda:0"/"opencl:0" placeholders for absent backends.</summary>
    public static IReadOnlyList<string> Names()
    {
        var names = new List<string> { "cpu" };
        names.AddRange(Device.All.Where(d => d.Kind != DeviceKind.Cpu).Select(d => d.Name));
        if (!Device.All.Any(d => d.Kind == DeviceKind.OpenCL)) names.Add("opencl:0");
        if (!Device.All.Any(d => d.Kind == DeviceKind.Cuda)) names.Add("cuda:0");
        return names;
    }

    /// <summary>The device of that name. When it does not exist: fails the test if the run requires
    /// its backend, otherwise ignores it with the library's reason.</summary>
    public static Device Require(string name)
    {
        if (Device.TryGet(name, out Device? device) && device is not null)
            return device;

        DeviceKind kind = name.StartsWith("cuda", StringComparison.Ordinal) ? DeviceKind.Cuda
            : name.StartsWith("opencl", StringComparison.Ordinal) ? DeviceKind.OpenCL
            : DeviceKind.Cpu;
        (bool available, string reason) = Device.BackendInfo(kind);
        string why = available
            ? $"the {kind} backend has devices, but none named '{name}' (found: {string.Join(", ", Device.All.Select(d => d.Name))})"
            : reason;

        if (IsRequired(kind))
            Assert.Fail($"the run requires a {KindWord(kind)} device but none was found: {why}");
        Assert.Ignore($"no {KindWord(kind)} device '{name}': {why}");
        throw new InvalidOperationException("unreachable: Assert.Ignore throws");
    }

    /// <summary>Whether the environment says this backend must be present
    /// (KERNELS_REQUIRE_CUDA=1 / KERNELS_REQUIRE_OPENCL=1).</summary>
    public static bool IsRequired(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => Environment.GetEnvironmentVariable("KERNELS_REQUIRE_CUDA") == "1",
        DeviceKind.OpenCL => Environment.GetEnvironmentVariable("KERNELS_REQUIRE_OPENCL") == "1",
        _ => false,
    };

    public static string RequirementVariable(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => "KERNELS_REQUIRE_CUDA",
        DeviceKind.OpenCL => "KERNELS_REQUIRE_OPENCL",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "the CPU backend is always present"),
    };

    public static string KindWord(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => "CUDA",
        DeviceKind.OpenCL => "OpenCL",
        _ => "CPU",
    };
}

/// <summary>Base of the per-device fixtures: resolves the fixture's device once, before its tests
/// (an absent device ignores or fails the whole fixture, see <see cref="BackendDevices.Require"/>).</summary>
public abstract class DeviceFixture
{
    protected DeviceFixture(string deviceName) => DeviceName = deviceName;

    protected string DeviceName { get; }

    private Device? _device;

    protected Device Device => _device ?? throw new InvalidOperationException("the fixture's device is resolved in OneTimeSetUp");

    [OneTimeSetUp]
    public void ResolveDevice() => _device = BackendDevices.Require(DeviceName);
}
