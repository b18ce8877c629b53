"""The language server, end to end: a real LSP client (pygls) talks to `trainlint server`
over stdio: initialize, didOpen, diagnostics, codeAction, hover, didChange (also of an
imported file), notebook documents, shutdown."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("pygls")

from lsprotocol import types  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

MODEL = """\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)
"""

TRAIN = """\
import torch
import torch.nn as nn
from model import Net

model = Net()
criterion = nn.CrossEntropyLoss()
ctx = torch.cuda.amp.autocast()
for x, y in loader:
    loss = criterion(model(x), y)
"""


class Session:
    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.diagnostics: dict[str, list[types.Diagnostic]] = {}
        self.updates: asyncio.Queue[str] = asyncio.Queue()
        self.registrations: list[types.Registration] = []

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str) -> str:
        uri = self.uri(name)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text))
        )
        return uri

    def change(self, uri: str, text: str, version: int) -> None:
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=version, uri=uri),
                [types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    async def published(self, uri: str, predicate=lambda diagnostics: True) -> list[types.Diagnostic]:
        """The next diagnostics published for ``uri`` that satisfy ``predicate``."""
        async def wait() -> list[types.Diagnostic]:
            while True:
                got = await self.updates.get()
                if got == uri and predicate(self.diagnostics[uri]):
                    return self.diagnostics[uri]
        return await asyncio.wait_for(wait(), timeout=20)

    async def actions(self, uri: str, diagnostic: types.Diagnostic) -> list[types.CodeAction]:
        params = types.CodeActionParams(
            types.TextDocumentIdentifier(uri), diagnostic.range, types.CodeActionContext([diagnostic])
        )
        result = await self.client.text_document_code_action_async(params)
        return [action for action in result or [] if isinstance(action, types.CodeAction)]


@asynccontextmanager
async def session(root: Path) -> AsyncIterator[Session]:
    client = LanguageClient("trainlint-test", "1")
    state = Session(client, root)

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        state.diagnostics[params.uri] = params.diagnostics
        state.updates.put_nowait(params.uri)

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def on_register(params: types.RegistrationParams) -> None:
        state.registrations.extend(params.registrations)

    await client.start_io(sys.executable, "-m", "trainlint", "server", "--debounce", "0.05", cwd=str(root))
    try:
        capabilities = types.ClientCapabilities(
            notebook_document=types.NotebookDocumentClientCapabilities(
                synchronization=types.NotebookDocumentSyncClientCapabilities()
            ),
            workspace=types.WorkspaceClientCapabilities(
                did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True)
            ),
        )
        result = await asyncio.wait_for(
            client.initialize_async(types.InitializeParams(capabilities=capabilities, root_uri=root.as_uri())), 20
        )
        assert result.server_info is not None and result.server_info.name == "trainlint"
        assert result.capabilities.notebook_document_sync is not None
        client.initialized(types.InitializedParams())
        yield state
    finally:
        await asyncio.wait_for(client.shutdown_async(None), 10)
        client.exit(None)
        await asyncio.wait_for(client.stop(), 10)


def test_language_server_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "model.py").write_text(MODEL)
    asyncio.run(_scenario(tmp_path))


async def _scenario(root: Path) -> None:
    async with session(root) as lsp:
        train = lsp.open("train.py", TRAIN)
        found = await lsp.published(train)
        assert [d.code for d in found] == ["TL505"]
        (tl505,) = found
        assert tl505.source == "trainlint" and tl505.range.start == types.Position(6, 6)
        assert tl505.code_description is not None and tl505.code_description.href.endswith("TL505-deprecated-cuda-amp.md")

        # Code actions: the safe fix (preferred), and a noqa comment.
        actions = await lsp.actions(train, tl505)
        titles = [action.title for action in actions]
        assert titles[0].startswith("trainlint: fix TL505") and actions[0].is_preferred
        (edit,) = actions[0].edit.changes[train]
        assert edit.new_text.startswith("torch.amp.autocast(") or "amp" in edit.new_text
        noqa = next(action for action in actions if "noqa" in action.title)
        (comment,) = noqa.edit.changes[train]
        assert comment.new_text.endswith("  # noqa: TL505") and comment.range.start.line == 6

        # Hover on the finding shows the rule's page.
        hover = await lsp.client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(train), types.Position(6, 12))
        )
        assert hover is not None and "# TL505 deprecated-cuda-amp" in hover.contents.value

        # An edit to the imported model (open, unsaved) re-checks train.py: the model now
        # returns probabilities, so TL101 appears there.
        model = lsp.open("model.py", MODEL)
        await lsp.published(model)
        softmax = MODEL.replace("return self.fc(x)", "return F.softmax(self.fc(x), dim=1)")
        lsp.change(model, softmax, 2)
        after = await lsp.published(train, lambda ds: "TL101" in [d.code for d in ds])
        assert sorted(d.code for d in after) == ["TL101", "TL505"]

        # Fixing train.py clears its findings.
        fixed = TRAIN.replace("torch.cuda.amp.autocast()", 'torch.amp.autocast("cuda")')
        fixed = fixed.replace("criterion(model(x), y)", "criterion(model(x), y)  # noqa: TL101")
        lsp.change(train, fixed, 2)
        assert not await lsp.published(train, lambda ds: not ds)

        # A notebook document: findings land on the cell that holds them.
        notebook_uri = lsp.uri("explore.ipynb")
        cells = [("markdown", "# Explore"), ("python", "import torch\n\nscaler = torch.cuda.amp.GradScaler()\n")]
        cell_uris = [f"{notebook_uri}#cell{index}" for index in range(len(cells))]
        lsp.client.notebook_document_did_open(
            types.DidOpenNotebookDocumentParams(
                types.NotebookDocument(
                    uri=notebook_uri,
                    notebook_type="jupyter-notebook",
                    version=1,
                    cells=[
                        types.NotebookCell(
                            kind=types.NotebookCellKind.Markup if language == "markdown" else types.NotebookCellKind.Code,
                            document=uri,
                        )
                        for (language, _), uri in zip(cells, cell_uris)
                    ],
                ),
                [types.TextDocumentItem(uri, language, 1, text) for (language, text), uri in zip(cells, cell_uris)],
            )
        )
        in_cell = await lsp.published(cell_uris[1], lambda ds: bool(ds))
        assert [d.code for d in in_cell] == ["TL505"] and in_cell[0].range.start.line == 2

        # A module changed on disk, outside the editor (the server asked to watch .py files),
        # re-checks the open file that imports it.
        assert any(r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES for r in lsp.registrations)
        (lsp.root / "net2.py").write_text(MODEL)
        user = lsp.open("train2.py", TRAIN.replace("from model import", "from net2 import").replace(
            "ctx = torch.cuda.amp.autocast()\n", ""))
        assert not await lsp.published(user)
        (lsp.root / "net2.py").write_text(softmax)
        lsp.client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams([types.FileEvent(lsp.uri("net2.py"), types.FileChangeType.Changed)])
        )
        assert [d.code for d in await lsp.published(user, lambda ds: bool(ds))] == ["TL101"]
