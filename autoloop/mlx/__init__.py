"""MLX model layer: the bundled SmolLM2 converted offline, batched generation, fusing, the fast BLAS.

Importing this package is cheap on purpose (the engine imports it to build its CLI): MLX and mlx-lm are
imported inside the submodules' functions, never here.

    from autoloop.mlx.models import resolve_model      # "smollm2" -> converted mlx-lm folder
    from autoloop.mlx.generation import load_model, generate_batch
    from autoloop.mlx.blas import blas_env, check       # LD_PRELOAD for a child on Linux; run-start BLAS check
    from autoloop.mlx.fuse import fuse
"""
