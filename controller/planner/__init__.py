"""The planner: whether a profile fits the GPU, the engine's memory model and GPU capabilities. Pure arithmetic."""
