"""`alignkit label` on the console: the stats (counts, speed, agreement, position bias), the web server's
URLs and summary, and what `label aggregate` wrote."""

from __future__ import annotations

from typing import Any

from alignkit import console


def show_label_stats(path: str, stats: dict[str, Any]) -> None:
    """The `label_stats` of the label file ``path`` as tables on stderr (--json prints ``stats`` itself)."""
    bias = stats["position_bias"]
    rate = bias.get("first_position_rate", bias.get("first_shown_best_rate"))
    console.key_values(
        f"labels: {path}",
        [
            ("mode", stats["mode"]),
            ("rows", stats["rows"]),
            ("labels", stats["labels"]),
            ("ties", stats["ties"]),
            ("skips", stats["skips"]),
            ("undone", stats["undone"]),
            ("items", stats["items"]),
            (
                "first shown chosen" if stats["mode"] == "pair" else "first shown ranked best",
                "-"
                if rate is None
                else f"{rate:.3f} (chance {bias.get('expected', 0):.3f}, n={bias['decisions']})",
            ),
            (
                "swap consistency",
                "-" if stats["swap_consistency"] is None else f"{stats['swap_consistency']:.3f}",
            ),
            ("can't judge", stats.get("cant_judge", 0)),
            ("agreement", _num(stats["agreement_overall"])),
            ("Krippendorff's alpha", _num(stats.get("krippendorff_alpha"))),
        ],
    )
    swap = any(c.get("swap_consistency") is not None for c in stats["annotators"].values())
    rows = []
    for who, c in stats["annotators"].items():
        r = c.get("first_position_rate", c.get("first_shown_best_rate"))
        seconds = c.get("seconds_median")
        row = [
            who,
            c["labels"],
            c["ties"],
            c["skips"],
            c.get("cant_judge", 0),
            "-" if seconds is None else f"{seconds:.1f}",
            _num(r),
            _num(c.get("majority_agreement")),
        ]
        rows.append(row + ([_num(c.get("swap_consistency"))] if swap else []))
    columns = ["annotator", "labels", "ties", "skips", "can't judge", "median s", "first shown", "majority"]
    console.table("annotators", columns + (["swap consistency"] if swap else []), rows)
    if stats["agreement"]:
        console.table(
            "agreement where items overlap",
            ["annotators", "items", "agreement", "Cohen's kappa"],
            [
                [
                    " / ".join(a["annotators"]),
                    a["overlap"],
                    f"{a['agreement']:.3f}",
                    _num(a.get("cohen_kappa")),
                ]
                for a in stats["agreement"]
            ],
        )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def show_web_start(info: dict[str, Any]) -> None:
    """`label --web` is serving: a warning for a public interface, then one URL per annotator (each on a line
    of its own, never wrapped, so it can be copied)."""
    if info["public"]:
        console.warn(
            f"listening on {info['host']}, not only on this machine: anyone who can reach port {info['port']} "
            "can try the page; the tokens in the URLs are its only guard, and the traffic is plain HTTP "
            "(not encrypted): use it on a network you trust, or put it behind HTTPS"
        )
    console.info(
        f"serving {info['items']} items ({info['mode']} mode, each to {info['overlap']} annotator"
        f"{'s' if info['overlap'] > 1 else ''}) into {info['output']}; tokens kept in {info['tokens_file']}"
    )
    for who, a in info["annotators"].items():
        console.info(f"  {who} ({a['done']}/{a['total']} done): {a['url']}")
    console.info("Ctrl-C stops the server; every judgement a page confirmed is already on disk")


def show_web_stopped(summary: dict[str, Any]) -> None:
    done = ", ".join(f"{who} {a['done']}/{a['total']}" for who, a in summary["annotators"].items())
    console.info(
        f"stopped: {summary['saved_this_session']} judgements saved this session to {summary['output']} ({done}); "
        "run the same command to go on"
    )


def show_aggregate(summary: dict[str, Any]) -> None:
    """What `label aggregate` wrote and what it dropped."""
    console.key_values(
        f"majority vote: {summary['labels']} -> {summary['output']}",
        [
            ("preference pairs written", summary["written"]),
            ("comparisons voted on", summary["comparisons"]),
            ("dropped: the vote was a tie", summary["dropped_tie"]),
            ("dropped: the vote split evenly", summary["dropped_split"]),
            ("dropped: fewer than --min-votes", summary["dropped_few_votes"]),
            ("can't judge (not votes)", summary["cant_judge"]),
            ("skips (not votes)", summary["skips"]),
            ("items with no vote", summary["items_without_vote"]),
        ],
    )
