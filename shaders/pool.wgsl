// pool kernels: placeholder until the family is written.
