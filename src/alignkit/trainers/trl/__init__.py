"""What alignkit's TRL-backed trainers (`trainers.dpo`, `trainers.kto`, `trainers.sft`) share.

The algorithms are TRL 1.16's (`DPOTrainer`, `KTOTrainer`, `SFTTrainer`); this package only connects them
to alignkit's plumbing (data in, TRL configured, run dir out), one module per job, each importing only the
ones listed before it:

- `data`: our loaders -> `Record`s fitted to ``--max-length`` -> a `datasets.Dataset` in TRL's format;
- `policy`: the model from our registry, LoRA as a PEFT config, a separate ``--ref-model``;
- `setup`: processes, precision, data, policy and reference, prepared before the run dir is opened;
- `callback`: TRL's logs -> our ``metrics.jsonl`` and console progress, HF checkpoints -> ours;
- `report`: the shared fields of report.json and trends of the logged series;
- `run`: TRL's config and trainer, training (``--resume``), the saved model, the written report.

A command reads: `setup.prepare`, `setup.open_run`, `run.training_args`, `callback.RunCallback`,
`run.build_trainer`, `run.train`, `run.conclude`.
"""
