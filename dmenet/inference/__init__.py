"""Running a method on photos: tiled DMENet prediction, bf16/fp32 precision, and batch runs with their outputs.

Modules: ``tiling`` (B over windows of any photo size), ``precision`` (bf16 detection and dtype
policies), ``batch`` (many photos → σ maps, pictures, masks, summary.json).
"""
