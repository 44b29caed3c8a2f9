"""tinygpt.trainer: datasets from stored token ids, losses, LoRA/DoRA/full, distillation. Not built yet."""
