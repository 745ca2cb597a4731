"""Method modules: each subfolder with a method.py registers one method (folder name = method name).

A folder whose method.py fails to import is reported on stderr and skipped, so one broken method does
not take the CLI down; tests/test_contract.py imports every folder strictly.
"""
import importlib
import pkgutil
import sys

BROKEN: dict[str, str] = {}

for _m in pkgutil.iter_modules(__path__):
    if _m.ispkg:
        try:
            importlib.import_module(f"{__name__}.{_m.name}.method")
        except Exception as e:  # noqa: BLE001
            BROKEN[_m.name] = f"{type(e).__name__}: {e}"
            print(f"effbench: warning: method {_m.name!r} failed to import: {BROKEN[_m.name]}", file=sys.stderr)
