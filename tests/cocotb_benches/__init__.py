"""cocotb test modules, run inside Icarus Verilog or Verilator by ``tests/cocotb_support.run_cocotb``.

Not collected by pytest (no ``test_*.py`` names): they import ``cocotb`` and only work inside a
simulator. ``streams`` holds the reusable valid/ready driver, sink and protocol checker.
"""
