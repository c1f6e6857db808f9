"""Loading models and what runs on them; the only place that loads tokenizers and models.

Trainers, the sampler, the judge and evaluation go through this package. Its modules:

* ``registry``: model names → checkpoints (resolution, hub checks), run/adapter metadata
  (``alignkit_model.json``), ``load_tokenizer`` and ``load_model``;
* ``default``: the embedded default model (SmolLM2-135M-Instruct GGUF → cached checkpoint), alignkit's cache
  dir, the GGUF tokenizer, and the list of models loadable without network;
* ``tokenizer``: tokenizer fixes (a pad token that is not EOS, the padding side);
* ``device``: where models run and in which precision (device, dtype ``auto``, ``Precision``);
* ``lora``: several named LoRA adapters on one frozen base model (PEFT);
* ``heads``: scalar reward/value heads, and export as a sequence classifier;
* ``merge``: merging a run's LoRA adapter into its base as a standalone checkpoint;
* ``ops``: inference operators in the ``alignkit`` torch namespace, defined for low call overhead;
* ``packed_linear``: bf16 linear layers with weights packed once for oneDNN on a CPU (sampling);
* ``compile``: compiling decoder layers for training (``torch.compile``, dynamic shapes);
* ``cpu_attention``: training attention for bf16 on a CPU (two matmuls and a softmax);
* ``shared_prompt``: shared-prompt packing, several answers to one prompt in one row.
"""
