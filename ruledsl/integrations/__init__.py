"""Where ruledsl meets a training run: the Trainer callback, trackers (W&B, MLflow,
TensorBoard), console output, the files it writes, and the fault guard that keeps a
failing part from ever stopping training.
"""
