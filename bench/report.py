"""Turn a results dictionary into the printed table, a Markdown table and the PNG plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from bench.variants import BY_NAME


def _fmt(stat: Optional[dict[str, Any]], digits: int = 2, suffix: str = "") -> str:
    if not stat or stat.get("median") is None:
        return "-"
    return f"{stat['median']:.{digits}f}{suffix} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"


def rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per measured variant: the figures of every section, medians with (min–max)."""
    check = results.get("check", {}).get("variants", {})
    asgi = results.get("asgi", {})
    server = results.get("server", {}).get("variants", {})
    commands = results.get("commands", {})
    table = []
    for name in results["variants"]:
        served = server.get(name, {})
        latency = "-"
        if served:
            latency = f"{served['p50_ms']['median']:.1f} / {served['p99_ms']['median']:.1f}"
        table.append(
            [
                BY_NAME[name].label,
                _fmt(check.get(name, {}).get("authx_us")),
                _fmt(check.get(name, {}).get("callback_us")),
                _fmt(check.get(name, {}).get("verify_token_us")),
                _fmt(asgi.get(name, {}).get("sequential_ratio")),
                _fmt(asgi.get(name, {}).get("concurrent_ratio")),
                _fmt(served.get("ratio")),
                f"{served['rps']['median']:.0f}" if served else "-",
                latency,
                f"{commands[name]['commands_per_check']:.2f}" if name in commands else "-",
            ]
        )
    return table


HEADERS = [
    "variant",
    "µs per check via AuthX",
    "µs callback alone",
    "µs verify_token",
    "ASGI sequential ×floor",
    "ASGI 32 concurrent ×floor",
    "uvicorn ×floor",
    "uvicorn req/s",
    "p50 / p99 ms",
    "Redis cmds sent/check",
]


def text_table(results: dict[str, Any]) -> str:
    """The main table as aligned plain text, followed by references, storage and notes."""
    body = [HEADERS, *rows(results)]
    widths = [max(len(row[col]) for row in body) for col in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in body]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += ["", *extras(results)]
    return "\n".join(lines)


def markdown_table(results: dict[str, Any]) -> str:
    """The main table in Markdown, followed by references, storage and notes."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    lines += ["", *[f"- {line}" for line in extras(results)]]
    return "\n".join(lines)


def extras(results: dict[str, Any]) -> list[str]:
    """References, storage figures, skipped variants and notes, one line each."""
    lines = []
    for name, stat in results.get("check", {}).get("references", {}).items():
        lines.append(f"reference {name}: {_fmt(stat)} µs")
    storage = results.get("storage")
    if storage:
        head = storage["headline"]
        seed, epoch = head["seed"], head["epoch"]
        lines.append(
            f"storage, {head['users']:,} users × {head['tokens_per_user']} tokens, 10% logged out everywhere: "
            f"seed {seed['bytes'] / 1e6:.1f} MB ({seed['bytes_per_user']:.0f} B/user), "
            f"authx-epoch {epoch['bytes'] / 1e6:.1f} MB ({epoch['bytes_per_user']:.0f} B/user), "
            f"{seed['bytes'] / max(epoch['bytes'], 1):.0f}× less"
        )
        for row in storage["growth"]:
            lines.append(
                f"storage growth, {row['users']:,} users × {row['tokens_per_user']} tokens: "
                f"seed {row['seed']['bytes_per_user']:.0f} B/user, "
                f"authx-epoch {row['epoch']['bytes_per_user']:.0f} B/user"
            )
    shape = results.get("spread")
    if shape:
        spec = shape["spread"]
        lines.append(
            f"local cache, {spec['tokens']:,} tokens of {spec['users']:,} users (Zipf {spec['skew']}), "
            f"{spec['rate']:,.0f} checks/s on {spec['processes']} processes, staleness {spec['staleness']} s: "
            f"{shape['hit_rate']:.1%} answered from memory ({shape['store_reads']:,} store reads for "
            f"{shape['checks']:,} checks: {shape.get('user_reads', 0):,} reads of a user, "
            f"{shape.get('confirmations', 0):,} confirmations); ideal per token {shape['ideal_per_token']:.1%}, "
            f"ideal per user {shape['ideal_per_user']:.1%}"
        )
        if "bumps_behind" in shape:
            lines.append(
                f"  {shape['bumps_behind']} bumps behind the caches' back: a bumped user's token accepted "
                f"{shape['accepted_after_bump']} times after its bump, at most "
                f"{shape['longest_acceptance_after_bump']:.2f} s after it; "
                f"{shape['accepted_past_staleness']} acceptances past the {spec['staleness']} s bound"
            )
    for name, counts in results.get("commands", {}).items():
        lines.append(
            f"commands of {name} over {counts['checks']} checks: sent {counts['sent']}, "
            f"executed by the server (scripts' inner calls included) {counts['by_command']}"
        )
        concurrent = counts.get("concurrent")
        if concurrent:
            lines.append(
                f"round trips of {name} with {concurrent['in_flight']} checks in flight: "
                f"{concurrent['checks_per_round_trip']:.1f} checks per read of the socket, counted by the server "
                f"({concurrent['checks']:,} checks, {concurrent['reads']:,} reads)"
            )
    for name, reason in results.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    lines += [f"note: {note}" for note in results.get("notes", [])]
    return lines


def plot(results: dict[str, Any], path: Path) -> Optional[str]:
    """Render the figures as a PNG at ``path``; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'authx-epoch[bench]'): no plot"
    names = list(results["variants"])
    labels = [BY_NAME[name].label.replace("authx-epoch, ", "epoch ") for name in names]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(18, 6))

    check = results.get("check", {})
    values = [check.get("variants", {}).get(name, {}).get("authx_us", {}).get("median") or 0 for name in names]
    left.barh(labels, values, color="tab:blue")
    for name, style in (("pyjwt_hs256_verify", "--"), ("pyjwt_unverified_decode", ":")):
        reference = check.get("references", {}).get(name, {}).get("median")
        if reference:
            left.axvline(reference, linestyle=style, color="tab:red", label=f"{name} {reference:.1f} µs")
    left.set_xscale("log")
    left.set_xlabel("µs per check through auth.is_token_in_blocklist (log)")
    left.invert_yaxis()
    left.legend(loc="lower right", fontsize=8)

    series: list[tuple[str, Callable[[str], Optional[dict[str, Any]]]]] = [
        ("ASGI sequential", lambda n: results.get("asgi", {}).get(n, {}).get("sequential_ratio")),
        ("ASGI 32 concurrent", lambda n: results.get("asgi", {}).get(n, {}).get("concurrent_ratio")),
        ("uvicorn + load generator", lambda n: results.get("server", {}).get("variants", {}).get(n, {}).get("ratio")),
    ]
    height = 0.8 / len(series)
    for index, (label, getter) in enumerate(series):
        stats = [getter(name) or {} for name in names]
        medians = [stat.get("median") or 0 for stat in stats]
        low = [max(0.0, (stat.get("median") or 0) - (stat.get("min") or 0)) for stat in stats]
        high = [max(0.0, (stat.get("max") or 0) - (stat.get("median") or 0)) for stat in stats]
        positions = [row + index * height for row in range(len(names))]
        middle.barh(positions, medians, height=height, xerr=[low, high], label=label)
    middle.axvline(1.0, color="black", linewidth=0.8)
    middle.axvline(0.97, color="tab:green", linestyle="--", linewidth=0.8, label="0.97 of the floor")
    middle.set_yticks([row + height for row in range(len(names))], labels)
    middle.set_xlim(0.5, 1.1)
    middle.invert_yaxis()
    middle.set_xlabel("throughput ÷ floor (median, min–max)")
    middle.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)

    storage = results.get("storage")
    if storage:
        growth = storage["growth"]
        counts = [row["tokens_per_user"] for row in growth]
        right.plot(
            counts, [row["seed"]["bytes_per_user"] for row in growth], "o-", label="seed: USER_TOKENS + blocklist"
        )
        right.plot(counts, [row["epoch"]["bytes_per_user"] for row in growth], "o-", label="authx-epoch")
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel("tokens per user")
        right.set_ylabel("bytes in Redis per user (10% logged out everywhere)")
        right.legend(fontsize=8)
    figure.suptitle(f"authx-epoch benchmarks ({results['machine']['summary']})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return None
