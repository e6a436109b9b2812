global using Kernels;
global using Kernels.Nn;
