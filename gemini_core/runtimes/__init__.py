"""Execution backends and runtimes.

- ``registry.py``: the execution backends a ``CompressionConfig`` names (dense, sparse), declared by
  name and implemented in ``torch_kernels.py``.
- ``base.py`` + ``catalog.py``: runtimes a model can be converted to and run on (torch eager, ONNX
  Runtime, OpenVINO): ``catalog.build("onnxruntime", model, example_inputs, calibration, "int8")`` ->
  a ``RuntimeModel`` called with the input dict; ``catalog.available_runtimes()`` says which can run
  here and why not; ``auto.choose_fastest`` times candidates on this machine; ``cpu.cpu_record`` the
  CPU model and instruction-set flags. Heavy packages are imported only when a runtime is built.
"""
