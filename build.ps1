# build.ps1: the Windows counterpart of build.sh (MSVC, CMake, optional CUDA toolkit, .NET 10 SDK).
#   ./build.ps1 [check|build|demo|test] [arguments for dotnet test...]
#     check  only the prerequisites and the bindings check (kernels.h against the generated C#)
#     build  the native library, the bindings check, the managed code (the default)
#     demo   build, then run samples/Demo (devices + a checked matmul on each)
#     test   build, then the native self-test and both NUnit suites; the remaining arguments go to
#            dotnet test (e.g. --filter "FullyQualifiedName~Gemm"; a filter that selects nothing in one
#            suite fails it with exit code 8 unless --ignore-exit-code 8 is added)
# Installs nothing: missing prerequisites are named. Run from a "Developer PowerShell for VS" so cl.exe
# is on PATH; CUDA is built when nvcc is found, OpenCL when the OpenCL headers are found (CL/cl.h,
# e.g. from the Khronos OpenCL-SDK via vcpkg); set KN_WITH_CUDA / KN_WITH_OPENCL to ON/OFF to force.
# PowerShell 7 (pwsh) on Linux or macOS runs the same steps with the host's C++ compiler instead of
# MSVC: that is how CI exercises this script (scripts/ci-windows.sh), everything but MSVC itself.
param(
    [ValidateSet("check", "build", "demo", "test")][string]$Action = "build",
    [Parameter(ValueFromRemainingArguments = $true)][string[]]$TestArguments = @()
)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$root = (Get-Location).Path
$buildDir = if ($env:BUILD_DIR) { $env:BUILD_DIR } else { "build/native" }
$configuration = if ($env:CONFIGURATION) { $env:CONFIGURATION } else { "Release" }
# Windows PowerShell 5.1 (Desktop edition) runs only on Windows and has no $IsWindows.
$onWindows = ($PSVersionTable.PSEdition -eq "Desktop") -or $IsWindows
$library = if ($onWindows) { "kernels.dll" } elseif ($IsMacOS) { "libkernels.dylib" } else { "libkernels.so" }
$selftestName = if ($onWindows) { "kernels_selftest.exe" } else { "kernels_selftest" }

function Require($commands, $what) {
    $found = @($commands) | Where-Object { Get-Command $_ -ErrorAction SilentlyContinue } | Select-Object -First 1
    if (-not $found) { throw "build.ps1: missing prerequisite: $what ($(@($commands) -join ' or ') not on PATH)" }
    return $found
}
Require cmake "CMake 3.24+" | Out-Null
Require dotnet ".NET 10 SDK" | Out-Null
if ($onWindows) { Require cl "MSVC (run from a Developer PowerShell for Visual Studio)" | Out-Null }
else { Require @("c++", "g++", "clang++") "a C++17 compiler" | Out-Null }
# Debian names it clang-14; the LLVM installer on Windows puts clang.exe on PATH.
$clang = Require @("clang", "clang-14") "clang (LLVM), which parses kernels.h for the bindings check"

function Check-Bindings {
    Write-Host "`n== bindings check"
    dotnet run --project tools/BindingsGen -c $configuration -- --check --clang $clang
    if ($LASTEXITCODE) { throw "the generated bindings differ from kernels.h: regenerate with dotnet run --project tools/BindingsGen" }
}
if ($Action -eq "check") {
    Check-Bindings
    Write-Host "build.ps1: prerequisites present, bindings match kernels.h"
    exit 0
}

Write-Host "`n== native library ($buildDir)"
$withCuda = if ($env:KN_WITH_CUDA) { $env:KN_WITH_CUDA } else { "AUTO" }
$withOpenCl = if ($env:KN_WITH_OPENCL) { $env:KN_WITH_OPENCL } else { "AUTO" }
cmake -S native -B $buildDir -DKN_WITH_CUDA=$withCuda -DKN_WITH_OPENCL=$withOpenCl
if ($LASTEXITCODE) { throw "cmake configure failed" }
# An explicit job count: a bare --parallel means an unlimited make -j with the Makefile generator.
cmake --build $buildDir --config Release --parallel ([Environment]::ProcessorCount)
if ($LASTEXITCODE) { throw "native build failed" }
# Multi-config generators (Visual Studio) put the library under Release/; the managed build looks for it here.
$nativeDir = if (Test-Path "$buildDir/Release/$library") { "$root/$buildDir/Release/" } else { "$root/$buildDir/" }
if (-not (Test-Path "$nativeDir$library")) { throw "the native build produced no $library in $nativeDir" }

Check-Bindings
Write-Host "`n== managed code"
dotnet build Kernels.sln -c $configuration "-p:KernelsNativeDir=$nativeDir" -nologo -v quiet
if ($LASTEXITCODE) { throw "managed build failed" }

switch ($Action) {
    "demo" { dotnet run --project samples/Demo -c $configuration --no-build; exit $LASTEXITCODE }
    "test" {
        $selftest = Get-ChildItem -Recurse -Path $buildDir -Filter $selftestName | Select-Object -First 1
        if (-not $selftest) { throw "no $selftestName under $buildDir (configured with KN_BUILD_TESTS=OFF?)" }
        & $selftest.FullName
        $failures = [int]($LASTEXITCODE -ne 0)
        # --project: global.json selects Microsoft.Testing.Platform, whose dotnet test takes no positional project.
        foreach ($project in "tests/Kernels.Tests", "tests/Kernels.Nn.Tests") {
            dotnet test --project $project -c $configuration --no-build @TestArguments
            if ($LASTEXITCODE) { $failures++ }
        }
        if ($failures) { exit 1 }
    }
}
