using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>The devices the backend-parametrised tests run on.</summary>
internal static class TestDevices
{
    /// <summary>(name, kind, requirement variable) of every backend, for [TestCaseSource]; the case is named after the backend.</summary>
    public static IEnumerable<TestCaseData> All()
    {
        yield return new TestCaseData("cpu", DeviceKind.Cpu, "").SetArgDisplayNames("cpu");
        yield return new TestCaseData("opencl:0", DeviceKind.OpenCL, "KERNELS_REQUIRE_OPENCL").SetArgDisplayNames("opencl");
        yield return new TestCaseData("cuda:0", DeviceKind.Cuda, "KERNELS_REQUIRE_CUDA").SetArgDisplayNames("cuda");
    }

    /// <summary>
    /// The device named <paramref name="name"/>. One that is absent skips the test with the backend's
    /// reason, or fails it when <paramref name="requireVariable"/> (KERNELS_REQUIRE_CUDA,
    /// KERNELS_REQUIRE_OPENCL; empty for the CPU) is set to 1.
    /// </summary>
    public static Device Require(string name, DeviceKind kind, string requireVariable)
    {
        if (Device.TryGet(name, out var device)) return device;
        var (_, reason) = Device.BackendInfo(kind);
        string message = $"{name} is not available: {reason}";
        if (requireVariable.Length > 0 && Environment.GetEnvironmentVariable(requireVariable) == "1")
            Assert.Fail($"{message} ({requireVariable}=1 says it must be)");
        Assert.Ignore(message);
        return null!;
    }
}
