"""The closing report of ``tweetmill run``: where every input record went."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from tweetmill.schemas.manifest import Manifest


def funnel_table(manifest: Manifest) -> Table:
    """read → each drop reason → errors → kept, with the balance shown."""
    counts = manifest.counts
    table = Table(title="Accounting", show_header=True, header_style="bold")
    table.add_column("records", justify="left")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")

    def share(n: int) -> str:
        return f"{100 * n / counts.read:.1f}%" if counts.read else "-"

    table.add_row("read", f"{counts.read:,}", share(counts.read))
    for reason, n in sorted(counts.dropped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  dropped: {reason}", f"{n:,}", share(n))
    table.add_row("  errors (dead letters)", f"{counts.errors:,}", share(counts.errors))
    table.add_row("[bold]kept[/bold]", f"[bold]{counts.kept:,}[/bold]", share(counts.kept))
    return table


def balance_line(manifest: Manifest) -> str:
    counts = manifest.counts
    verdict = "[green]balanced[/green]" if counts.balanced else "[red]NOT balanced[/red]"
    return (
        f"read {counts.read:,} = kept {counts.kept:,} + dropped {sum(counts.dropped.values()):,} "
        f"+ errors {counts.errors:,}: {verdict}"
    )


def print_run_report(console: Console, manifest: Manifest, output: str, seconds: float) -> None:
    console.print(funnel_table(manifest))
    console.print(balance_line(manifest))
    rows, tokens = manifest.total_rows, manifest.total_tokens
    rate = manifest.counts.read / seconds if seconds > 0 else 0.0
    console.print(
        f"{len(manifest.shards)} shard(s), {rows:,} tweets, {tokens:,} tokens → {output}  "
        f"({seconds:.1f} s, {rate:,.0f} records/s)"
    )
    if manifest.counts.errors:
        console.print(f"dead letters: {', '.join(manifest.error_files)} (in {output})")
