"""Live progress on the terminal with rich: connected viewers, events/s, buys/s,
sold/left, errors, and the phase the run is in. Off when not on a terminal
(or with --quiet), so logs and CI output stay clean."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


class Progress:
    def __init__(self, enabled: bool, title: str) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.title = title
        self.live: Live | None = None
        self.state: dict[str, Any] = {"phase": "starting"}

    def __enter__(self) -> Progress:
        if self.enabled:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4,
                             transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(kind, exc, tb)
            self.live = None

    def update(self, **values: Any) -> None:
        self.state.update(values)
        if self.live is not None:
            self.live.update(self._render())

    def note(self, text: str) -> None:
        """A line above the live table (or on stderr when the table is off)."""
        self.console.print(text, highlight=False)

    def _render(self) -> Table:
        s = self.state
        table = Table(title=f"livesell-loadtest: {self.title}", show_header=False,
                      title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        rows = [
            ("phase", s.get("phase", "")),
            ("viewers connected", f"{s.get('connected', 0)} / {s.get('viewers', 0)}"),
            ("events/s delivered", f"{s.get('events_per_s', 0):,.0f}"),
            ("buys/s", f"{s.get('buys_per_s', 0):,.0f}"),
            ("sold / held / left", f"{s.get('sold', '-')} / {s.get('held', '-')} / "
                                   f"{s.get('left', '-')}"),
            ("orders told placed", f"{s.get('orders', 0)}"),
            ("errors", f"{s.get('errors', 0)}"),
            ("server CPU", f"{s.get('server_cpu', 0):.0%}"),
            ("elapsed", f"{s.get('elapsed', 0):.1f}s"),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        return table
