"""tinygpt.trainer: fine-tune a model on the exact token ids the runtime recorded (SFT: LoRA, DoRA, full).

`sft.run` is the whole job; `loop.train` is the one training loop, into which a loss and a batch source plug
(distillation and pretraining add theirs, they do not fork the loop). Data: `data.load_data` reads traces→data
rows, chat / completions / text JSONL (rendered per turn with the model's own template), and `.atraj` traces.
Checkpoints (`checkpoint.py`) hold weights, optimizer state, step, data cursor and RNG so `--resume` is exact.
Imports here stay light: `config` is standard library only, so `tinygpt train --help` loads no MLX.
"""
