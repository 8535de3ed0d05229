"""Video input pipeline: sources, frame sampling, augmentation, grain loaders and the synthetic dataset.

Data flows one way: `labels` (lists, class CSVs, protocols) -> `decode` (PyAV / decord) -> `sampling`
(frame indices) -> `transforms` (uint8 crops, flips, jitter on the host) -> `sources` (files, TFDS,
ArrayRecord, synthetic) -> `pipeline` (grain datasets, host sharding, global batches). `device_ops` holds
the jax-side normalisation and mixup/cutmix. Import the submodules directly; this package imports nothing.
"""
