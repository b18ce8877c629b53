"""``trainlint server``: a language server (LSP over stdio) for editors.

The protocol layer (``protocol.py``) is built on pygls, installed with
``pip install "trainlint[server]"``; the checking itself (``workspace.py``) knows no LSP.
"""

from __future__ import annotations

import click


@click.command("server")
@click.option("--debounce", type=click.FloatRange(min=0), default=0.25, show_default=True,
              help="Seconds to wait after an edit before checking the document again.")
def server_command(debounce: float) -> None:
    """Run the language server on stdin/stdout (for editors)."""
    try:
        from trainlint.server.protocol import serve
    except ImportError as exc:
        raise click.ClickException(
            f"`trainlint server` needs pygls ({exc}): pip install \"trainlint[server]\""
        ) from None
    serve(debounce)
