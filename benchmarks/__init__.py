"""Speed and scale benchmarks: ``python -m benchmarks [--quick]``.

Every row is a ratio of two timings taken side by side in one process run, on the same data, model
and machine, so that a loaded or slow machine changes both sides alike. The table is printed and
written to ``benchmarks/results/<machine>.md`` with the machine's description. Sections:

- ``text``: text-system training epoch over cached text-encoder vectors vs recomputing the frozen
  encoder on every batch (:mod:`benchmarks.cpu`);
- ``pipeline``: a training epoch through the real Brain and dataloader vs forward+backward+update
  over the same batches loaded beforehand;
- ``batching``: padded-frame fraction and epoch time of SpeechBrain's DynamicBatchSampler vs
  fixed-size batches;
- ``inference``: real-time factor, audio file to topic posteriors, per system;
- ``gpu`` (only with CUDA): bf16/fp16 vs fp32 step time and the largest batch that fits, for the
  CRDNN and a wav2vec2 of XLS-R 300M's size (:mod:`benchmarks.gpu`).

The tests never run these; the timings are for people.
"""
