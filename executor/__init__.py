"""Real split execution of VLA models: models cut at every block, wire format, profiler, cost model, networking.

Heavy modules (torch, transformers) are imported lazily by the submodules that need them; importing
``executor`` itself is cheap.
"""
