"""Mini-world model zoo. `load("ddpm_digits")` builds on first use; `effbench zoo build|list`."""
from .core import ZOO, ZooContext, build, build_many, home, is_built, list_models, load, manifest, model_id, path, register_zoo

__all__ = ["ZOO", "ZooContext", "build", "build_many", "home", "is_built", "list_models", "load", "manifest", "model_id", "path", "register_zoo"]
