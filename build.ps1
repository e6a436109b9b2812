# build.ps1: the Windows counterpart of build.sh (MSVC, CMake, optional CUDA toolkit, .NET 10 SDK).
#   ./build.ps1 [build|demo|test]
# Installs nothing: missing prerequisites are named. Run from a "Developer PowerShell for VS" so cl.exe
# is on PATH; CUDA is built when nvcc is found, OpenCL when the OpenCL headers are found (CL/cl.h,
# e.g. from the Khronos OpenCL-SDK via vcpkg); set KN_WITH_CUDA / KN_WITH_OPENCL to ON/OFF to force.
param([ValidateSet("build", "demo", "test")][string]$Action = "build")
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$root = (Get-Location).Path
$buildDir = if ($env:BUILD_DIR) { $env:BUILD_DIR } else { "build/native" }
$configuration = if ($env:CONFIGURATION) { $env:CONFIGURATION } else { "Release" }

function Require($command, $what) {
    if (-not (Get-Command $command -ErrorAction SilentlyContinue)) { throw "build.ps1: missing prerequisite: $what ($command not on PATH)" }
}
Require cmake "CMake 3.24+"
Require dotnet ".NET 10 SDK"
Require cl "MSVC (run from a Developer PowerShell for Visual Studio)"
Require clang "clang (LLVM), which parses kernels.h for the bindings check"

Write-Host "`n== native library ($buildDir)"
$withCuda = if ($env:KN_WITH_CUDA) { $env:KN_WITH_CUDA } else { "AUTO" }
$withOpenCl = if ($env:KN_WITH_OPENCL) { $env:KN_WITH_OPENCL } else { "AUTO" }
cmake -S native -B $buildDir -DKN_WITH_CUDA=$withCuda -DKN_WITH_OPENCL=$withOpenCl
if ($LASTEXITCODE) { throw "cmake configure failed" }
cmake --build $buildDir --config Release --parallel
if ($LASTEXITCODE) { throw "native build failed" }
# Multi-config generators put the DLL under Release/; the managed build looks for it here.
$nativeDir = if (Test-Path "$buildDir/Release/kernels.dll") { "$root/$buildDir/Release/" } else { "$root/$buildDir/" }

Write-Host "`n== bindings check"
dotnet run --project tools/BindingsGen -c $configuration -- --check --clang clang
if ($LASTEXITCODE) { throw "the generated bindings differ from kernels.h: regenerate with dotnet run --project tools/BindingsGen" }
Write-Host "`n== managed code"
dotnet build Kernels.sln -c $configuration "-p:KernelsNativeDir=$nativeDir" -nologo -v quiet
if ($LASTEXITCODE) { throw "managed build failed" }

switch ($Action) {
    "demo" { dotnet run --project samples/Demo -c $configuration --no-build; exit $LASTEXITCODE }
    "test" {
        $selftest = Get-ChildItem -Recurse -Path $buildDir -Filter kernels_selftest.exe | Select-Object -First 1
        & $selftest.FullName
        $nativeRc = $LASTEXITCODE
        dotnet test tests/Kernels.Tests -c $configuration --no-build "-p:KernelsNativeDir=$nativeDir"
        $managedRc = $LASTEXITCODE
        if ($nativeRc -or $managedRc) { exit 1 }
    }
}
