"""Options of `alignkit label` and `alignkit judge` (one dataclass each; the docstrings are the CLI help)."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field

from alignkit.config import DEFAULT_MODEL
from alignkit.errors import ConfigError

MODES = ("pair", "rank")
ON_DISAGREE = ("tie", "drop")


def require_paths(data: str | None, output: str | None, hint: str = "") -> None:
    """Both files are needed to run (a recipe may leave them out: they are checked here, not in validate)."""
    if not data or not output:
        raise ConfigError(f"--data CANDIDATES and --output LABELS.jsonl are required{hint}")


def default_annotator() -> str:
    try:
        return getpass.getuser() or "anonymous"
    except Exception:  # no user name in this environment  # noqa: BLE001
        return "anonymous"


@dataclass
class LabelConfig:
    """`alignkit label`."""

    data: str | None = None
    """Candidates: `alignkit sample` output, or any preference/ranking file the loaders read."""
    format: str | None = None
    """Read --data with the loaders as this format instead of detecting it, e.g. trl-preference, hh-rlhf, ranking (an unknown name lists them all)."""
    output: str | None = None
    """Label file (JSONL) to append to; running again with the same file resumes."""
    mode: str = "pair"
    """pair: choose the better of two answers; rank: order all answers (type e.g. `3 1 2 4`)."""
    annotator: str | None = None
    """Your name in the label file (default: your login name)."""
    seed: int = 0
    """Seed of the per-item answer shuffle (the shown order is recorded)."""
    append: bool = False
    """Allow adding to a label file that holds labels of another candidates file."""
    revisit_skipped: bool = False
    """Show items you skipped before again."""
    skip_invalid: bool = False
    """Skip invalid candidate records instead of stopping at the first."""
    stats: str | None = None
    """Instead of labelling: report counts, ties, agreement and position bias of this label file (the same as `alignkit label stats LABELS`)."""
    json: bool = False
    """Print one JSON object on stdout (the stats, or a summary after labelling)."""
    web: bool = False
    """Serve a labelling page for a team (--annotators) in the browser instead of the terminal UI."""
    annotators: str | None = None
    """--web: the annotators' names, comma-separated (alice,bob,carol); each gets a URL with a secret token."""
    overlap: int = 1
    """--web: how many annotators judge each item (2 or more measures agreement; at most the number of annotators)."""
    host: str = "127.0.0.1"
    """--web: the interface to listen on; any other than 127.0.0.1/localhost/::1 lets other machines in (a warning says so)."""
    port: int = 8765
    """--web: the port to listen on (0: any free one)."""

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.annotator is not None and not self.annotator.strip():
            raise ConfigError("--annotator must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.stats is not None or not self.web:
            if self.annotators is not None and self.stats is None:
                raise ConfigError("--annotators is for --web; the terminal UI takes one --annotator NAME")
            return
        if self.annotator is not None:
            raise ConfigError(
                "--web takes --annotators NAME,NAME,... (each gets a URL); --annotator is for the terminal"
            )
        names = self.annotator_names()
        if not 1 <= self.overlap <= len(names):
            raise ConfigError(
                f"--overlap must be between 1 and the number of annotators ({len(names)}), got {self.overlap}"
            )
        if not self.host.strip():
            raise ConfigError("--host must not be empty (127.0.0.1 serves this machine only)")

    def annotator_names(self) -> list[str]:
        """The --annotators names (checked: at least one, distinct, printable, at most 64 characters)."""
        if not self.annotators or not self.annotators.strip():
            raise ConfigError("--web needs --annotators NAME,NAME,... (one URL is printed for each)")
        names = [n.strip() for n in self.annotators.split(",")]
        for name in names:
            if not name or len(name) > 64 or not name.isprintable():
                raise ConfigError(
                    f"--annotators: {name!r} is not a name (1 to 64 printable characters, separated by commas)"
                )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"--annotators names each person once; repeated: {', '.join(repeated)}")
        return names


@dataclass
class LabelStatsConfig:
    """`alignkit label stats`."""

    labels: str = field(default="", metadata={"metavar": "LABELS"})
    """The label file (written by `alignkit label`, `label --web` or `judge`)."""
    json: bool = False
    """Print the stats as one JSON object on stdout instead of tables."""


@dataclass
class LabelAggregateConfig:
    """`alignkit label aggregate`."""

    labels: str = field(default="", metadata={"metavar": "LABELS"})
    """The label file (written by `alignkit label`, `label --web` or `judge`)."""
    output: str | None = None
    """Preference file (JSONL, prompt/chosen/rejected) to write; `alignkit rm`, `dpo` and `kto` read it as it is."""
    min_votes: int = 1
    """Keep an item only when at least this many annotators judged it (ties and can't-judge count as votes)."""
    json: bool = False
    """Print the summary as one JSON object on stdout."""

    def validate(self) -> None:
        if not self.output:
            raise ConfigError("--output PREFERENCES.jsonl is required (the preference file to write)")
        if self.min_votes < 1:
            raise ConfigError(f"--min-votes must be at least 1, got {self.min_votes}")


@dataclass
class JudgeConfig:
    """`alignkit judge`."""

    data: str | None = None
    """Candidates: `alignkit sample` output, or any preference/ranking file the loaders read."""
    format: str | None = None
    """Read --data with the loaders as this format instead of detecting it, e.g. trl-preference, hh-rlhf, ranking (an unknown name lists them all)."""
    output: str | None = None
    """Label file (JSONL) to append to; running again with the same file resumes."""
    judge: str = DEFAULT_MODEL
    """Judge: a causal LM the registry loads (local path, hub id, the embedded default), an OpenAI-compatible URL http(s)://host:port/v1, or `simulated` (the demo's documented rule, no model)."""
    judge_model: str | None = None
    """Model name sent to an HTTP judge (required with a URL). The key comes from ALIGNKIT_JUDGE_API_KEY, else OPENAI_API_KEY."""
    template: str = "helpful"
    """Principle: helpful, harmless, honest, or a text file with {prompt}, {answer_a}, {answer_b}."""
    swap: bool = False
    """Judge each pair in both orders; pairs whose verdicts disagree follow --on-disagree."""
    on_disagree: str = "tie"
    """With --swap: what an order-dependent verdict becomes: tie (recorded, not trained on) or drop."""
    choices: str = "A,B"
    """The two answer names the judge picks between, comma-separated (A,B or 1,2)."""
    tie_margin: float = 0.0
    """Simulated judge: scores closer than this are a tie, as a person calls near-equal answers "about the
    same" (0: only equal scores tie)."""
    annotator: str | None = None
    """Name in the label file (default: judge:<model>)."""
    seed: int = 0
    """Seed of the per-item answer shuffle (which answer is shown first)."""
    limit: int = 0
    """Judge at most this many items in this run (0: every item not judged yet)."""
    append: bool = False
    """Allow adding to a label file that holds labels of another candidates file."""
    skip_invalid: bool = False
    """Skip invalid candidate records instead of stopping at the first."""
    json: bool = False
    """Print a one-object JSON summary on stdout at the end."""
    batch_size: int = 8
    """Local judge: judge prompts per forward pass (left-padded)."""
    max_length: int = 2048
    """Local judge: longest judge prompt in tokens; longer prompts and answers are cut (and marked)."""
    dtype: str = "auto"
    """Local judge: precision (auto, bf16, fp16, fp32)."""
    device: str | None = None
    """Local judge: cpu, cuda, cuda:1, ... (default: cuda when available)."""
    trust_remote_code: bool = False
    """Local judge: allow the model repository to run its own code."""
    timeout: float = 60.0
    """HTTP judge: seconds to wait for one response."""
    retries: int = 5
    """HTTP judge: retries after a 429, a 5xx, a bad response or a connection error (then stop, exit 1)."""
    retry_wait: float = 1.0
    """HTTP judge: first wait in seconds before a retry; it doubles each time (a Retry-After header wins)."""
    rate: float = 0.0
    """HTTP judge: at most this many requests per second (0: no limit)."""
    workers: int = 1
    """HTTP judge: requests in flight at once."""
    max_tokens: int = 1
    """HTTP judge: tokens the endpoint may generate (1: the answer name only)."""
    http_logprobs: bool = True
    """HTTP judge: ask for log-probabilities and decide from them when the endpoint returns them."""

    def validate(self) -> None:
        if self.on_disagree not in ON_DISAGREE:
            raise ConfigError(
                f"--on-disagree must be one of {', '.join(ON_DISAGREE)}, got {self.on_disagree!r}"
            )
        labels = self.choice_names()
        if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
            raise ConfigError(
                f"--choices must be two different names separated by a comma, got {self.choices!r}"
            )
        for name, value, low in (
            ("batch_size", self.batch_size, 1),
            ("max_length", self.max_length, 16),
            ("retries", self.retries, 0),
            ("workers", self.workers, 1),
            ("max_tokens", self.max_tokens, 1),
            ("limit", self.limit, 0),
        ):
            if value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
        for name, value in (
            ("timeout", self.timeout),
            ("retry_wait", self.retry_wait),
            ("rate", self.rate),
            ("tie_margin", self.tie_margin),
        ):
            if value < 0 or value != value:
                raise ConfigError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
        if self.tie_margin > 0 and self.judge.strip().lower() != "simulated":
            raise ConfigError("--tie-margin is for --judge simulated (a model judge says a tie itself)")
        if "://" in self.judge and not self.is_http():
            raise ConfigError(f"--judge {self.judge!r}: only http:// and https:// endpoints are supported")
        if self.is_http():
            from alignkit.feedback.judges.http import endpoint_url

            endpoint_url(self.judge)  # a bad URL fails here, before any file is touched
            if not self.judge_model:
                raise ConfigError("an HTTP judge needs --judge-model NAME (the model the endpoint serves)")

    def is_http(self) -> bool:
        return self.judge.strip().lower().startswith(("http://", "https://"))

    def choice_names(self) -> list[str]:
        return [c.strip() for c in self.choices.split(",")]
