// elementwise kernels: placeholder until the family is written.
