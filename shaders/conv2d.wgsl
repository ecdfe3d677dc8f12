// conv2d kernels: placeholder until the family is written.
