// The CPU emulator's stand-in for the CUDA runtime API header (see ../emulator.cpp): the kernels'
// host-side launchers include <cuda_runtime_api.h>, which resolves here when building for the emulator.
#pragma once
#include "cuda_runtime.h"
