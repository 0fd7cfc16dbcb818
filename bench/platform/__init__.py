"""The machine a cell runs on: device and precisions, accelerator peaks, machine state, environment, the CPU
allocator, memory."""
