# sysroot-bullseye.cmake: builds libkernels against Debian 11 "bullseye" (glibc 2.31), the Linux floor
# of the released package (Ubuntu 20.04, RHEL 9, Debian 11 and later; packaging/check-package.cs
# --max-glibc 2.31 enforces it). The host's compilers are used (g++ compiles, clang-14 links and is
# nvcc's host compiler); only the C library, the headers and the static C++ runtime come from the sysroot:
#   cmake -S native -B build/native -DCMAKE_TOOLCHAIN_FILE=native/cmake/sysroot-bullseye.cmake -DKN_SYSROOT=DIR
# where DIR is the root scripts/bullseye-root.sh makes (build.sh selects this file when that root exists).
# Why a sysroot: the symbols above GLIBC_2.31 in a host build (Debian 12) are not our code's, they come
# from the statically linked C++ runtime and unwinder of GCC 12 and from glibc 2.36's headers
# (arc4random@2.36 in random_device, _dl_find_object@2.35 in the unwinder, pthread_*/dlopen@2.34,
# fstat64@2.33, __libc_single_threaded@2.32). Linking bullseye's libc.so and GCC 10's libstdc++.a and
# libgcc_eh.a, with bullseye's headers, binds every symbol to a version glibc 2.31 has.
# The code generation stays GCC 12's, as on the host (tests, benchmarks and scripts/check-vectorised.sh
# all measure it); the library's self-test gives the same results case by case.
if(NOT KN_SYSROOT AND DEFINED ENV{KN_SYSROOT})
  set(KN_SYSROOT "$ENV{KN_SYSROOT}")
endif()
if(NOT KN_SYSROOT OR NOT EXISTS "${KN_SYSROOT}/usr/include/c++/10")
  message(FATAL_ERROR "sysroot-bullseye.cmake: KN_SYSROOT='${KN_SYSROOT}' is not a bullseye root with GCC 10's "
                      "C++ headers; make one with scripts/bullseye-root.sh (it prints its path)")
endif()
# try_compile projects (compiler checks) and check_language's own cmake run read this file again:
# hand the path on to both.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES KN_SYSROOT)
set(ENV{KN_SYSROOT} "${KN_SYSROOT}")

# --sysroot for compiling and linking. Not CMAKE_SYSROOT itself: CMake then looks for Debian's CUDA
# toolkit (/usr/lib/cuda) inside the sysroot too, and bullseye's root has none.
set(CMAKE_SYSROOT_COMPILE "${KN_SYSROOT}")
set(CMAKE_SYSROOT_LINK "${KN_SYSROOT}")
# Compiled by the host's GCC (the code generation every kernel was tuned and measured with: clang-14
# made sum/cpu/16M 65% and relu/cpu/16M 12-25% slower in scripts/ci-bench.sh's A/B), against the
# sysroot's glibc headers and GCC 10's C++ headers instead of its own.
set(CMAKE_C_COMPILER gcc)
set(CMAKE_CXX_COMPILER g++)
set(_kn_cxx10 "-nostdinc++ -isystem ${KN_SYSROOT}/usr/include/c++/10 -isystem ${KN_SYSROOT}/usr/include/x86_64-linux-gnu/c++/10 -isystem ${KN_SYSROOT}/usr/include/c++/10/backward")
set(CMAKE_CXX_FLAGS_INIT "${_kn_cxx10}")
# Linked by clang-14: with --sysroot it takes the C library, crt files and GCC 10's static C++ runtime
# and unwinder from the sysroot alone. GCC 12 would not: its library search path keeps the host's
# /usr/lib/x86_64-linux-gnu (relative to its own folder, so --sysroot does not move it), which links
# the host's libc.so and GLIBC_2.34 symbols back in.
set(CMAKE_C_CREATE_SHARED_LIBRARY
    "clang-14 --sysroot=${KN_SYSROOT} <CMAKE_SHARED_LIBRARY_C_FLAGS> <LINK_FLAGS> <CMAKE_SHARED_LIBRARY_CREATE_C_FLAGS> <SONAME_FLAG><TARGET_SONAME> -o <TARGET> <OBJECTS> <LINK_LIBRARIES>")
set(CMAKE_C_LINK_EXECUTABLE "clang-14 --sysroot=${KN_SYSROOT} <CMAKE_C_LINK_FLAGS> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
set(CMAKE_CXX_CREATE_SHARED_LIBRARY
    "clang++-14 --sysroot=${KN_SYSROOT} <CMAKE_SHARED_LIBRARY_CXX_FLAGS> <LINK_FLAGS> <CMAKE_SHARED_LIBRARY_CREATE_CXX_FLAGS> <SONAME_FLAG><TARGET_SONAME> -o <TARGET> <OBJECTS> <LINK_LIBRARIES>")
set(CMAKE_CXX_LINK_EXECUTABLE "clang++-14 --sysroot=${KN_SYSROOT} <CMAKE_CXX_LINK_FLAGS> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
# find_path/find_library look in the sysroot first (CL/cl.h: bullseye's opencl-c-headers), then on the
# host (the CUDA toolkit); programs (nvcc) on the host only.
set(CMAKE_FIND_ROOT_PATH "${KN_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# nvcc's host compiler goes through the same sysroot, and is clang++-14 (nvcc 11.8 refuses GCC 12, and
# clang finds the sysroot's GCC 10 C++ headers by itself): pass -DCMAKE_CUDA_HOST_COMPILER=clang++-14, as build.sh does. (Not set here: with it set
# in a toolchain file, CMake 3.25 went looking for nvcc outside PATH and found /bin/nvcc when PATH hid
# it, which tests/scripts/toolchain_change.sh caught.) Debian's nvcc keeps the CUDA headers in the host's
# /usr/include, which the sysroot hides: -idirafter searches it only after the sysroot's own include
# folders, so cuda_runtime.h is found there but every C library header still comes from bullseye.
set(CMAKE_CUDA_FLAGS_INIT "-Xcompiler=--sysroot=${KN_SYSROOT},-idirafter,/usr/include")
