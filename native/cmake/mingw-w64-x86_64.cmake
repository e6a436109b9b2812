# Cross-compiles kernels.dll (win-x64) on Linux with Debian's mingw-w64 (scripts/ci-windows.sh):
#   cmake -S native -B build/win-x64 -DCMAKE_TOOLCHAIN_FILE=native/cmake/mingw-w64-x86_64.cmake
# The -posix compilers: std::thread and std::mutex (the thread pool) need the winpthreads threading
# model; the -win32 ones lack them in GCC 12. native/CMakeLists.txt links libgcc, libstdc++ and
# winpthread statically into the DLL (MINGW branch), so it needs only Windows' own DLLs.
# CUDA on Windows needs MSVC as nvcc's host compiler: not built here (build.ps1 on Windows builds it).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(KN_MINGW_PREFIX x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${KN_MINGW_PREFIX}-gcc-posix)
set(CMAKE_CXX_COMPILER ${KN_MINGW_PREFIX}-g++-posix)
set(CMAKE_RC_COMPILER ${KN_MINGW_PREFIX}-windres)
# Libraries and headers from the mingw-w64 root only, programs (cmake's own helpers) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${KN_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The self-test runs under wine when CTest is used from Linux.
find_program(KN_WINE NAMES wine64 wine PATHS /usr/lib/wine)
if(KN_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${KN_WINE})
endif()
set(KN_WITH_CUDA OFF CACHE STRING "CUDA on Windows needs MSVC (build.ps1); not cross-compiled" FORCE)
